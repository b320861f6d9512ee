"""Per-task stratified subsets of a dataset: a smaller one for quick runs, and a validation split."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from routing_env.datasets.base import MultiTaskDataset, TaskSplit

__all__ = ["split_validation", "subsample"]


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


def split_validation(dataset: MultiTaskDataset, fraction: float, *, seed: int = 0) -> MultiTaskDataset:
    """A copy of ``dataset`` whose :attr:`~MultiTaskDataset.validation` split is carved from its training split.

    Hyper-parameters are chosen on the validation split, never on the test split. The
    carve is by input: samples with the same input bytes (MNIST-MTL and Fashion-MTL hold
    each image once per task) go to the same side, so no validation image is trained on
    under another task. It is stratified: inputs are grouped by the ``(task, label)``
    pairs they carry (for one-vs-rest data, the image's class; regression: the tasks),
    and about ``fraction`` of each group's inputs are drawn with ``seed``: the groups of
    inputs that carry the same tasks set aside ``round(fraction * n)`` of their ``n``
    inputs together, shared out over the groups by largest remainder, so that a small
    task still gets its share.
    Both splits keep the training split's order; the normalization statistics are
    unchanged (computed on the full training split by the builder).

    Args:
        dataset: A dataset without a validation split.
        fraction: The share of training inputs set aside, in ``(0, 0.5]``.
        seed: Seed of the draw (the data seed: the split does not change with the run seed).

    Raises:
        ValueError: On a fraction outside ``(0, 0.5]``, a dataset that already has a
            validation split, or a fraction that leaves a task with no validation sample
            (or no training sample), naming the task and its size.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 0.5:
        raise ValueError(f"the validation fraction must be in (0, 0.5], got {fraction!r}")
    if dataset.validation is not None:
        raise ValueError(f"dataset {dataset.name!r} already has a validation split")
    split = dataset.train
    n = len(split)
    first = split.first_occurrence_N
    group_N = np.arange(n) if first is None else first  # an input's group: its first occurrence
    tasks = split.tasks_N.numpy()
    targets = split.targets_N.numpy()
    # what each input carries: its (task, label) pairs, or its tasks for regression
    carried: dict[int, list[tuple[int, ...]]] = {}
    for i in range(n):
        pair = (int(tasks[i]),) if dataset.is_regression else (int(tasks[i]), int(targets[i]))
        carried.setdefault(int(group_N[i]), []).append(pair)
    strata: dict[tuple[tuple[int, ...], ...], list[int]] = {}
    for group, pairs in carried.items():  # groups in order of first occurrence
        strata.setdefault(tuple(sorted(pairs)), []).append(group)
    counts = _stratum_counts(strata, fraction, np.random.default_rng([seed, 1]))
    rng = np.random.default_rng(seed)
    held_out: list[int] = []
    for key in sorted(strata):
        groups = strata[key]
        held_out.extend(int(g) for g in rng.permutation(np.asarray(groups, dtype=np.int64))[: counts[key]])
    to_validation = np.isin(group_N, np.asarray(held_out, dtype=np.int64))
    for t in range(dataset.num_tasks):
        of_task = tasks == t
        n_val = int((of_task & to_validation).sum())
        n_train = int((of_task & ~to_validation).sum())
        if n_val == 0 or n_train == 0:
            side, fix = ("validation", "a larger") if n_val == 0 else ("training", "a smaller")
            raise ValueError(
                f"the validation fraction {fraction} leaves task {t} ({dataset.task_names[t]}) of dataset "
                f"{dataset.name!r} with no {side} sample (it has {int(of_task.sum())} training samples); "
                f"pass {fix} fraction"
            )

    def take(mask: np.ndarray) -> TaskSplit:
        idx = torch.from_numpy(np.flatnonzero(mask))
        return TaskSplit(
            inputs_NCHW=split.inputs_NCHW[idx], tasks_N=split.tasks_N[idx], targets_N=split.targets_N[idx]
        )

    carved = dataclasses.replace(dataset, train=take(~to_validation), validation=take(to_validation))
    if dataset.source is not None:
        object.__setattr__(carved, "source", dataset.source.with_validation(fraction, seed))
    return carved


def _stratum_counts(
    strata: dict[tuple[tuple[int, ...], ...], list[int]], fraction: float, rng: np.random.Generator
) -> dict[tuple[tuple[int, ...], ...], int]:
    """How many inputs of each stratum go to validation: ``round(fraction * n)`` of the ``n``
    inputs that carry the same tasks, shared out over their strata by largest remainder
    (ties in a random order from ``rng``). A stratum whose share is whole gets exactly it."""
    by_tasks: dict[tuple[int, ...], list[tuple[tuple[int, ...], ...]]] = {}
    for key in sorted(strata):
        by_tasks.setdefault(tuple(sorted({pair[0] for pair in key})), []).append(key)
    counts: dict[tuple[tuple[int, ...], ...], int] = {}
    for keys in by_tasks.values():
        exact = np.array([fraction * len(strata[k]) for k in keys])
        floor = np.floor(exact + 1e-9).astype(np.int64)
        left = int(round(float(exact.sum()))) - int(floor.sum())
        order = sorted(range(len(keys)), key=lambda i: (-(exact[i] - floor[i]), rng.random()))
        for i in order[: max(left, 0)]:
            floor[i] += 1
        counts.update(zip(keys, floor.tolist(), strict=True))
    return counts
