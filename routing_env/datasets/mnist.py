"""MNIST-MTL (paper section 4): 10 binary one-vs-rest tasks on MNIST.

Reads MNIST in torchvision's on-disk layout, ``<root>/MNIST/raw/`` holding the four
decompressed idx files, through :class:`torchvision.datasets.MNIST` (which also
downloads them with ``download=True``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from routing_env.datasets.base import MultiTaskDataset, TaskSplit
from routing_env.datasets.storage import (
    DatasetNotFoundError,
    channel_mean_std,
    check_per_class,
    check_seed,
    resolve_root,
)

__all__ = ["MNIST_FILES", "mnist_mtl"]

#: The files :func:`mnist_mtl` reads, relative to the root.
MNIST_FILES = tuple(
    f"MNIST/raw/{name}"
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
)


def mnist_mtl(
    *,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    download: bool = False,
    per_class: Sequence[int] = (1000, 20),
) -> MultiTaskDataset:
    """Build MNIST-MTL: 10 binary one-vs-rest tasks (paper section 4, Table 1).

    Task ``c`` asks "is this digit ``c``?" (label 1) or one of the 9 others (label 0).
    The paper uses, per task, 1k images of ``c`` and 1k of each of the 9 other digits
    for training (10k per task, 100k in total) and tests on 200 samples per task (2k).

    Construction: ``per_class[0]`` (1,000) training images of each digit are drawn
    without replacement from the 60k MNIST training images, and ``per_class[1]`` (20)
    test images of each digit from the 10k MNIST test images. Every drawn image appears
    once in every task, labelled 1 in its own digit's task and 0 in the 9 others, which
    is the interference the paper describes ("the same instance can appear with
    different labels in different tasks"). Each task therefore has 1,000 positives and
    9,000 negatives for training and **20 positives and 180 negatives for test**: the
    test set is imbalanced like the training set, so always answering "not ``c``"
    scores 90%, the paper's "random baseline is 90%". (The paper does not say how its
    200 test samples per task are composed; a balanced test set would make that
    baseline 50%.)

    Sizes with the defaults: 10,000 train and 200 test images, i.e. 100,000 train and
    2,000 test samples; samples are in task-major order.

    Inputs are ``uint8`` 1x28x28 images. Normalization: mean and standard deviation of
    the drawn training images (scaled to ``[0, 1]``), computed exactly, close to the
    usual MNIST constants (0.1307, 0.3081).

    Args:
        root: Folder holding ``MNIST/raw/`` (see :mod:`routing_env.datasets.storage`
            for the default).
        seed: Seed of the draw of training and test images; the same seed gives
            identical tensors.
        download: Download MNIST into ``root`` with torchvision if files are missing.
        per_class: ``(train, test)`` images drawn per digit; the paper's ``(1000, 20)``
            by default. Smaller values serve tests on small fixture files.

    Raises:
        DatasetNotFoundError: If an MNIST file is missing, unreadable or malformed (a
            :class:`FileNotFoundError`; the message lists the files expected).
        ValueError: If ``per_class`` asks for more images of a digit than MNIST has, or
            ``seed``/``per_class`` are invalid.
    """
    seed = check_seed(seed)
    n_train, n_test = check_per_class(per_class)
    root = resolve_root(root)
    train_images, train_digits = _read_mnist(root, train=True, download=download)
    test_images, test_digits = _read_mnist(root, train=False, download=False)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise _error(
            root,
            f"train images are {tuple(train_images.shape[1:])} but test images are "
            f"{tuple(test_images.shape[1:])}",
        )

    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train_idx = _draw_per_digit(train_digits, n_train, train_rng, split="train")
    test_idx = _draw_per_digit(test_digits, n_test, test_rng, split="test")

    train_drawn = train_images[train_idx][:, None]  # N x 1 x H x W
    mean, std = channel_mean_std(train_drawn)
    return MultiTaskDataset(
        name="mnist-mtl",
        train=_one_vs_rest(train_drawn, train_digits[train_idx]),
        test=_one_vs_rest(test_images[test_idx][:, None], test_digits[test_idx]),
        num_classes=(2,) * 10,
        mean=mean,
        std=std,
        task_names=tuple(f"{c}-vs-rest" for c in range(10)),
        class_names=tuple((f"not-{c}", f"{c}") for c in range(10)),
    )


def _one_vs_rest(images_NCHW: np.ndarray, digits_N: np.ndarray) -> TaskSplit:
    """Every image once per task, task-major; label 1 where the digit is the task's."""
    n = len(digits_N)
    tasks = np.repeat(np.arange(10, dtype=np.int64), n)
    return TaskSplit(
        inputs_NCHW=torch.from_numpy(np.tile(images_NCHW, (10, 1, 1, 1))),
        tasks_N=torch.from_numpy(tasks),
        targets_N=torch.from_numpy((np.tile(digits_N, 10) == tasks).astype(np.int64)),
    )


def _draw_per_digit(digits: np.ndarray, n: int, rng: np.random.Generator, *, split: str) -> np.ndarray:
    """Indices of ``n`` images of each digit drawn without replacement, in file order."""
    idx = []
    for c in range(10):
        pool = np.flatnonzero(digits == c)
        if len(pool) < n:
            raise ValueError(
                f"mnist-mtl: the MNIST {split} files hold {len(pool)} images of digit {c}, "
                f"fewer than the {n} per digit asked for by per_class"
            )
        idx.append(rng.choice(pool, size=n, replace=False))
    return np.sort(np.concatenate(idx))


def _read_mnist(root: Path, *, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x H x W uint8) and digits (N int64) of one MNIST split, checked."""
    from torchvision.datasets import MNIST

    missing = [f for f in MNIST_FILES if not (root / f).is_file()]
    # torchvision still reads the processed/*.pt files older versions of it wrote
    legacy = all((root / "MNIST" / "processed" / f).is_file() for f in ("training.pt", "test.pt"))
    if missing and not download and not legacy:
        raise _error(root, f"missing: {', '.join(missing)}")
    split = "train" if train else "t10k"
    files = f"MNIST/raw/{split}-images-idx3-ubyte and MNIST/raw/{split}-labels-idx1-ubyte"
    try:
        mnist = MNIST(root, train=train, download=download)
    except (AssertionError, ValueError, TypeError, IndexError, RuntimeError, OSError) as err:
        # malformed idx files fail torchvision's asserts or reshapes; failed downloads
        # raise RuntimeError or URLError (an OSError)
        detail = f"{type(err).__name__}: {err}" if str(err) else f"{type(err).__name__} (bad idx header?)"
        raise _error(root, f"cannot load {files}: {detail}") from err
    images, digits = mnist.data, mnist.targets
    if images.dim() != 3 or images.dtype != torch.uint8:
        raise _error(
            root, f"{split} images: expected N x H x W uint8, got {images.dtype} {tuple(images.shape)}"
        )
    if digits.dim() != 1 or len(digits) != len(images):
        raise _error(root, f"{split}: {len(images)} images but labels of shape {tuple(digits.shape)}")
    if len(digits) == 0 or int(digits.min()) < 0 or int(digits.max()) > 9:
        raise _error(root, f"{split} labels: expected digits 0..9 for at least one image")
    return images.numpy(), digits.numpy().astype(np.int64)


def _error(root: Path, problem: str) -> DatasetNotFoundError:
    expected = "\n".join(f"  {root / f}" for f in MNIST_FILES)
    return DatasetNotFoundError(
        f"mnist-mtl: MNIST not found or corrupt under {root} ({problem}).\n"
        f"Expected the decompressed idx files (torchvision's layout):\n{expected}\n"
        "Get them with mnist_mtl(download=True) (torchvision downloads into root), or set "
        "ROUTING_ENV_DATA (or pass root=) to a folder that holds MNIST/raw/."
    )
