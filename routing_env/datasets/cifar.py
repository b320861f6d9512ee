"""CIFAR-MTL (paper section 4): the 20 CIFAR-100 superclasses as 20 five-way tasks.

Reads CIFAR-100 in torchvision's on-disk layout, ``<root>/cifar-100-python/{train,test,meta}``
(the pickles of the official ``cifar-100-python.tar.gz``). torchvision's
:class:`~torchvision.datasets.CIFAR100` exposes only the fine labels, so the pickles are
read here directly for their ``coarse_labels``; torchvision's download helper and
checksums are used for ``download=True``.

The pickles are unpickled: only point ``root`` at files from a source you trust.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from routing_env.datasets.base import MultiTaskDataset, TaskSplit
from routing_env.datasets.storage import DatasetNotFoundError, channel_mean_std, check_seed, resolve_root

__all__ = ["CIFAR100_FILES", "cifar_mtl"]

#: The files :func:`cifar_mtl` reads, relative to the root.
CIFAR100_FILES = ("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta")

_NUM_COARSE, _NUM_FINE, _FINE_PER_COARSE = 20, 100, 5


def cifar_mtl(
    *,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    download: bool = False,
) -> MultiTaskDataset:
    """Build CIFAR-MTL: one 5-way task per CIFAR-100 superclass (paper section 4, Table 1).

    Task ``t`` is coarse label ``t`` of CIFAR-100 (e.g. ``aquatic_mammals``); its samples
    are all images of the 5 fine classes of that superclass, and the label of an image
    is the rank of its fine class among the sorted fine-class ids of its superclass
    (so ``class_names[t]`` lists the superclass's fine classes in id order). Fine ids of
    a superclass are not consecutive, so ``fine_label % 5`` would merge classes; the
    rank does not.

    All of CIFAR-100 is used with its official train/test split: 2,500 train and 500
    test images per task, 50,000 and 10,000 in total, in task-major order (file order
    within a task). The split has no randomness: ``seed`` is accepted so every builder
    has the same signature and has no effect.

    Inputs are ``uint8`` 3x32x32 images. Normalization: exact per-channel mean and
    standard deviation of the training images scaled to ``[0, 1]`` (on the real data
    about (0.5071, 0.4865, 0.4409) and (0.2673, 0.2564, 0.2762), the usual CIFAR-100
    constants).

    The files are checked for structure (keys, shapes, label ranges, 5 fine classes per
    superclass) on every load; their MD5 checksums are checked by torchvision when
    ``download=True``.

    Args:
        root: Folder holding ``cifar-100-python/`` (see
            :mod:`routing_env.datasets.storage` for the default).
        seed: Unused (see above); must be a non-negative int.
        download: Download and extract ``cifar-100-python.tar.gz`` into ``root`` with
            torchvision unless the files there match their checksums.

    Raises:
        DatasetNotFoundError: If a CIFAR-100 file is missing, unreadable or malformed (a
            :class:`FileNotFoundError`; the message lists the files expected).
    """
    check_seed(seed)
    root = resolve_root(root)
    if download:
        _download(root)
    missing = [f for f in CIFAR100_FILES if not (root / f).is_file()]
    if missing:
        raise _error(root, f"missing: {', '.join(missing)}")

    meta = _load_pickle(root, "cifar-100-python/meta")
    coarse_names = _names(root, meta, "coarse_label_names", _NUM_COARSE)
    fine_names = _names(root, meta, "fine_label_names", _NUM_FINE)
    train_x, train_fine, train_coarse = _read_split(root, "train")
    test_x, test_fine, test_coarse = _read_split(root, "test")

    # the superclass of each fine class, from the training labels; test must agree
    fine_to_coarse = np.full(_NUM_FINE, -1, dtype=np.int64)
    fine_to_coarse[train_fine] = train_coarse
    if not np.array_equal(fine_to_coarse[train_fine], train_coarse) or (fine_to_coarse < 0).any():
        raise _error(
            root, "cifar-100-python/train: every fine class must occur and belong to exactly one superclass"
        )
    if not np.array_equal(fine_to_coarse[test_fine], test_coarse):
        raise _error(root, "cifar-100-python/test: fine and coarse labels disagree with the train file")
    fine_per_task = [np.flatnonzero(fine_to_coarse == t) for t in range(_NUM_COARSE)]  # sorted ids
    if any(len(f) != _FINE_PER_COARSE for f in fine_per_task):
        raise _error(
            root,
            "cifar-100-python/train: expected 5 fine classes per superclass, got "
            f"{[len(f) for f in fine_per_task]}",
        )
    rank_of_fine = np.empty(_NUM_FINE, dtype=np.int64)
    for fine_ids in fine_per_task:
        rank_of_fine[fine_ids] = np.arange(_FINE_PER_COARSE)

    def split(x_NCHW: np.ndarray, fine: np.ndarray, coarse: np.ndarray) -> TaskSplit:
        order = np.argsort(coarse, kind="stable")  # task-major, file order within a task
        return TaskSplit(
            inputs_NCHW=torch.from_numpy(x_NCHW[order]),
            tasks_N=torch.from_numpy(coarse[order]),
            targets_N=torch.from_numpy(rank_of_fine[fine[order]]),
        )

    mean, std = channel_mean_std(train_x)
    return MultiTaskDataset(
        name="cifar-mtl",
        train=split(train_x, train_fine, train_coarse),
        test=split(test_x, test_fine, test_coarse),
        num_classes=(_FINE_PER_COARSE,) * _NUM_COARSE,
        mean=mean,
        std=std,
        task_names=coarse_names,
        class_names=tuple(tuple(fine_names[i] for i in fine_ids) for fine_ids in fine_per_task),
    )


def _read_split(root: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N x 3 x 32 x 32 uint8), fine and coarse labels (int64) of one pickle, checked."""
    rel = f"cifar-100-python/{name}"
    entry = _load_pickle(root, rel)
    for key in ("data", "fine_labels", "coarse_labels"):
        if key not in entry:
            raise _error(root, f"{rel}: no {key!r} entry")
    data = np.asarray(entry["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) == 0:
        raise _error(root, f"{rel}: 'data' is {data.dtype} {data.shape}; expected N x 3072 uint8")
    labels = []
    for key, limit in (("fine_labels", _NUM_FINE), ("coarse_labels", _NUM_COARSE)):
        try:
            y = np.asarray(entry[key], dtype=np.int64)
        except (TypeError, ValueError) as err:
            raise _error(root, f"{rel}: {key!r} is not a list of ints ({err})") from err
        if y.shape != (len(data),) or y.min() < 0 or y.max() >= limit:
            raise _error(root, f"{rel}: {key!r} must hold {len(data)} ints in [0, {limit})")
        labels.append(y)
    # rows are channel-major (1024 red, 1024 green, 1024 blue values, each row-major)
    return data.reshape(-1, 3, 32, 32), labels[0], labels[1]


def _names(root: Path, meta: dict[str, Any], key: str, n: int) -> tuple[str, ...]:
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or len(names) != n:
        raise _error(root, f"cifar-100-python/meta: expected {key!r} with {n} names")
    return tuple(str(s) for s in names)


def _load_pickle(root: Path, rel: str) -> dict[str, Any]:
    try:
        with open(root / rel, "rb") as f:
            # latin1: the official pickles were written by Python 2
            entry = pickle.load(f, encoding="latin1")
    except OSError as err:
        raise _error(root, f"cannot read {rel}: {err}") from err
    except Exception as err:  # truncated or foreign files raise any of many unpickling errors
        raise _error(root, f"{rel} is not a readable pickle: {type(err).__name__}: {err}") from err
    if not isinstance(entry, dict):
        raise _error(root, f"{rel}: expected a pickled dict, got {type(entry).__name__}")
    return entry


def _download(root: Path) -> None:
    from torchvision.datasets import CIFAR100
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    checksums = [*CIFAR100.train_list, *CIFAR100.test_list, [CIFAR100.meta["filename"], CIFAR100.meta["md5"]]]
    if all(check_integrity(root / CIFAR100.base_folder / f, md5) for f, md5 in checksums):
        return
    try:
        download_and_extract_archive(CIFAR100.url, root, filename=CIFAR100.filename, md5=CIFAR100.tgz_md5)
    except (OSError, RuntimeError) as err:
        raise _error(root, f"download failed: {type(err).__name__}: {err}") from err


def _error(root: Path, problem: str) -> DatasetNotFoundError:
    expected = "\n".join(f"  {root / f}" for f in CIFAR100_FILES)
    return DatasetNotFoundError(
        f"cifar-mtl: CIFAR-100 not found or corrupt under {root} ({problem}).\n"
        f"Expected the pickles of cifar-100-python.tar.gz (torchvision's layout):\n{expected}\n"
        "Get them with cifar_mtl(download=True) (torchvision downloads into root), or set "
        "ROUTING_ENV_DATA (or pass root=) to a folder that holds cifar-100-python/.",
        folder="cifar-100-python",
        downloadable=True,
    )
