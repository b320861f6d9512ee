"""MNIST-MTL (paper section 4): 10 binary one-vs-rest tasks on MNIST.

Reads MNIST in torchvision's on-disk layout, ``<root>/MNIST/raw/`` holding the four
decompressed idx files, through :class:`torchvision.datasets.MNIST` (which also
downloads them with ``download=True``). The construction is shared with Fashion-MTL
(:mod:`routing_env.datasets.one_vs_rest`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from routing_env.datasets.base import MultiTaskDataset
from routing_env.datasets.one_vs_rest import IdxSource, build_one_vs_rest, idx_files
from routing_env.datasets.storage import check_per_class, check_seed, resolve_root

__all__ = ["MNIST_FILES", "mnist_mtl"]

#: The files :func:`mnist_mtl` reads, relative to the root.
MNIST_FILES = idx_files("MNIST")

_MNIST = IdxSource(
    dataset="mnist-mtl",
    builder="mnist_mtl",
    folder="MNIST",
    label="MNIST",
    unit="digit",
    class_labels=tuple(str(c) for c in range(10)),
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
    return build_one_vs_rest(
        _MNIST,
        root=resolve_root(root),
        seed=seed,
        download=download,
        n_train=n_train,
        n_test=n_test,
        task_names=tuple(f"{c}-vs-rest" for c in range(10)),
        class_names=tuple((f"not-{c}", f"{c}") for c in range(10)),
    )
