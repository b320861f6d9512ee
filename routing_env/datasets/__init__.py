"""Multi-task datasets (paper section 4) as in-memory data objects."""

from routing_env.datasets.base import MultiTaskDataset, TaskSplit
from routing_env.datasets.digits import digits_mtl

__all__ = ["MultiTaskDataset", "TaskSplit", "digits_mtl"]
