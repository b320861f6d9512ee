"""Build a dataset by name: ``load_dataset("mnist-mtl", root=...)``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal, get_args

from routing_env.datasets.base import MultiTaskDataset
from routing_env.datasets.cifar import cifar_mtl
from routing_env.datasets.digits import digits_mtl
from routing_env.datasets.fashion import fashion_mtl
from routing_env.datasets.mini_imagenet import min_mtl
from routing_env.datasets.mnist import mnist_mtl
from routing_env.datasets.source import DatasetSource

__all__ = ["DATASET_NAMES", "DatasetName", "load_dataset"]

DatasetName = Literal["digits-mtl", "mnist-mtl", "fashion-mtl", "cifar-mtl", "min-mtl"]
"""The names :func:`load_dataset` accepts, as a type (the scripts' ``--dataset`` choices).

``fashion-mtl`` (:func:`routing_env.datasets.fashion_mtl`) is not a dataset of the paper.
"""


def _digits(*, root: Any, seed: int, download: bool, **options: Any) -> MultiTaskDataset:
    return digits_mtl(seed=seed, **options)  # bundled with scikit-learn: no root, no download


def _mnist(*, root: Any, seed: int, download: bool, **options: Any) -> MultiTaskDataset:
    return mnist_mtl(root=root, seed=seed, download=download, **options)


def _fashion(*, root: Any, seed: int, download: bool, **options: Any) -> MultiTaskDataset:
    return fashion_mtl(root=root, seed=seed, download=download, **options)


def _cifar(*, root: Any, seed: int, download: bool, **options: Any) -> MultiTaskDataset:
    return cifar_mtl(root=root, seed=seed, download=download, **options)


def _min(*, root: Any, seed: int, download: bool, **options: Any) -> MultiTaskDataset:
    return min_mtl(root=root, seed=seed, **options)  # user-supplied: cannot be downloaded


_BUILDERS: dict[str, Callable[..., MultiTaskDataset]] = {
    "digits-mtl": _digits,
    "mnist-mtl": _mnist,
    "fashion-mtl": _fashion,
    "cifar-mtl": _cifar,
    "min-mtl": _min,
}

#: Names :func:`load_dataset` accepts: the members of :data:`DatasetName`, in its order.
DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
if set(DATASET_NAMES) != set(_BUILDERS):  # pragma: no cover - a name added to one list only
    raise RuntimeError(f"DatasetName {DATASET_NAMES} and the builders {tuple(_BUILDERS)} differ")


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    download: bool = False,
    **options: Any,
) -> MultiTaskDataset:
    """Build the multi-task dataset called ``name``.

    Args:
        name: One of :data:`DATASET_NAMES`: ``"digits-mtl"``
            (:func:`~routing_env.datasets.digits_mtl`), ``"mnist-mtl"``
            (:func:`~routing_env.datasets.mnist_mtl`), ``"fashion-mtl"``
            (:func:`~routing_env.datasets.fashion_mtl`), ``"cifar-mtl"``
            (:func:`~routing_env.datasets.cifar_mtl`) or ``"min-mtl"``
            (:func:`~routing_env.datasets.min_mtl`).
        root: Data root, passed to the builder (digits-MTL needs none).
        seed: Seed passed to the builder.
        download: Download missing files where the dataset allows it (MNIST, Fashion-MNIST, CIFAR-100);
            ignored by digits-MTL (bundled) and MIN-MTL (user-supplied; its
            "not found" error says how to get it).
        **options: Further keyword arguments of the builder, e.g. ``per_class``.

    Returns:
        The dataset, with its :attr:`~routing_env.datasets.MultiTaskDataset.source` set: it
        pickles as these arguments (and a fingerprint of the data), not as its tensors.

    Raises:
        ValueError: If ``name`` is not one of :data:`DATASET_NAMES`.
        DatasetNotFoundError: If the dataset's files are missing or corrupt.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    dataset = _BUILDERS[name](root=root, seed=seed, download=download, **options)
    source = DatasetSource.of_load(name, root=root, seed=seed, options=options)
    if source is not None:
        object.__setattr__(dataset, "source", source)
    return dataset
