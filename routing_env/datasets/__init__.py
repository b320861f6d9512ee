"""Multi-task datasets (paper section 4) as in-memory data objects."""

from routing_env.datasets.base import MultiTaskDataset, TaskSplit
from routing_env.datasets.cifar import cifar_mtl
from routing_env.datasets.digits import digits_mtl
from routing_env.datasets.fashion import fashion_mtl
from routing_env.datasets.mini_imagenet import min_mtl
from routing_env.datasets.mnist import mnist_mtl
from routing_env.datasets.registry import DATASET_NAMES, DatasetName, load_dataset
from routing_env.datasets.storage import DatasetNotFoundError
from routing_env.datasets.subsample import split_validation, subsample

__all__ = [
    "DATASET_NAMES",
    "DatasetName",
    "DatasetNotFoundError",
    "MultiTaskDataset",
    "TaskSplit",
    "cifar_mtl",
    "digits_mtl",
    "fashion_mtl",
    "load_dataset",
    "min_mtl",
    "mnist_mtl",
    "split_validation",
    "subsample",
]
