"""A per-task stratified subset of a dataset, for quick runs and tests."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from routing_env.datasets.base import MultiTaskDataset, TaskSplit

__all__ = ["subsample"]


def _subset_indices(split: TaskSplit, limit: int, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
    """``limit`` indices taken round-robin over the tasks, each task's in a random order."""
    tasks = split.tasks_N.numpy()
    queues = [rng.permutation(np.flatnonzero(tasks == t)) for t in range(num_tasks)]
    picked: list[int] = []
    depth = 0
    while len(picked) < limit:
        for queue in queues:
            if depth < len(queue) and len(picked) < limit:
                picked.append(int(queue[depth]))
        depth += 1
    return np.sort(np.asarray(picked, dtype=np.int64))


def subsample(
    dataset: MultiTaskDataset,
    *,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> MultiTaskDataset:
    """A copy of ``dataset`` with at most ``max_train`` / ``max_test`` samples per split.

    Samples are drawn per task in turn (each task's in a random order from ``seed``),
    so every task keeps about the same share and none is left empty; the original order
    of the kept samples is preserved. A split already within its limit is kept as is, and
    normalization statistics are unchanged. A subset of a dataset from
    :func:`~routing_env.datasets.load_dataset` records this call in its ``source`` (it
    pickles as the recipe, not the data).

    Raises:
        ValueError: When a limit is smaller than the number of tasks.
    """
    rng = np.random.default_rng(seed)

    def cut(split: TaskSplit, limit: int | None, name: str) -> TaskSplit:
        if limit is None or limit >= len(split):
            return split
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < dataset.num_tasks:
            raise ValueError(
                f"max_{name} must be an int >= the number of tasks ({dataset.num_tasks}) so that every "
                f"task keeps a sample, got {limit!r}"
            )
        idx = torch.from_numpy(_subset_indices(split, limit, dataset.num_tasks, rng))
        return TaskSplit(
            inputs_NCHW=split.inputs_NCHW[idx], tasks_N=split.tasks_N[idx], targets_N=split.targets_N[idx]
        )

    train = cut(dataset.train, max_train, "train")
    test = cut(dataset.test, max_test, "test")
    if train is dataset.train and test is dataset.test:
        return dataset
    subset = dataclasses.replace(dataset, train=train, test=test)
    if dataset.source is not None:
        object.__setattr__(subset, "source", dataset.source.with_subset(max_train, max_test, seed))
    return subset
