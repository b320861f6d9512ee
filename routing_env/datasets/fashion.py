"""Fashion-MTL: MNIST-MTL's 10 one-vs-rest tasks on Fashion-MNIST, tested on every test image.

Reads Fashion-MNIST in torchvision's on-disk layout, ``<root>/FashionMNIST/raw/`` holding
the four decompressed idx files, through :class:`torchvision.datasets.FashionMNIST`
(which also downloads them with ``download=True``). The construction is MNIST-MTL's
(:mod:`routing_env.datasets.one_vs_rest`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from routing_env.datasets.base import MultiTaskDataset
from routing_env.datasets.one_vs_rest import IdxSource, build_one_vs_rest, idx_files
from routing_env.datasets.storage import check_per_class_or_all, check_seed, resolve_root

__all__ = ["FASHION_CLASSES", "FASHION_MNIST_FILES", "fashion_mtl"]

#: The files :func:`fashion_mtl` reads, relative to the root.
FASHION_MNIST_FILES = idx_files("FashionMNIST")

#: The Fashion-MNIST class names, label 0 to 9 (as torchvision's ``FashionMNIST.classes``).
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Short names of the classes for task and class names: ``"t-shirt-vs-rest"``.
_SLUGS = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)

_FASHION = IdxSource(
    dataset="fashion-mtl",
    builder="fashion_mtl",
    folder="FashionMNIST",
    label="Fashion-MNIST",
    unit="class",
    class_labels=FASHION_CLASSES,
)


def fashion_mtl(
    *,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    download: bool = False,
    per_class: Sequence[int | None] = (1000, None),
) -> MultiTaskDataset:
    """Build Fashion-MTL: 10 binary one-vs-rest tasks on Fashion-MNIST.

    Not a dataset of the paper: MNIST-MTL (:func:`~routing_env.datasets.mnist_mtl`)
    saturates (every model ends within a few test samples of 100%), while Fashion-MNIST's
    upper-body garments (T-shirt/top, Pullover, Coat, Shirt) are confused by small
    networks, so models separate. Task ``c`` asks "is this item of class ``c``?" (label
    1) or of one of the 9 others (label 0); tasks are named ``"t-shirt-vs-rest"``,
    ``"trouser-vs-rest"``, ..., ``"ankle-boot-vs-rest"``, and the labels of task ``c``
    ``("not-<c>", "<c>")``, e.g. ``("not-coat", "coat")``.

    Construction (MNIST-MTL's): ``per_class[0]`` (1,000) training images of each class
    are drawn without replacement with the seed from the 60k Fashion-MNIST training
    images, and every drawn image appears once in every task, labelled 1 in its own
    class's task and 0 in the 9 others. The test split differs from MNIST-MTL's: by
    default (``per_class[1]`` None) it holds **every** Fashion-MNIST test image in every
    task, in file order, with no draw. Each task thus has 1,000 positives and 9,000
    negatives for training, and 1,000 positives and 9,000 negatives for test: always
    answering "not ``c``" scores 90% in both splits (the majority-class rate, the
    paper's "random baseline" of MNIST-MTL).

    Sizes with the defaults: 10,000 train and 10,000 test images, i.e. 100,000 train and
    **100,000 test samples**; samples are in task-major order. The test split is large
    so that differences between models can be measured: one test sample is 0.001
    percentage points of test accuracy (0.01 of one task's), where MNIST-MTL's 2,000
    test samples make it 0.05; a binomial standard error at 95% accuracy is then about
    0.07 points instead of 0.5 (treating samples as independent, which the 10 samples of
    one image are not quite).

    Inputs are ``uint8`` 1x28x28 images. Each split's images are stored once per task
    (a split is one contiguous tensor): 10 x 10,000 x 784 bytes = 78 MB per split, about
    160 MB for the dataset with its labels. Normalization: mean and standard deviation of
    the drawn training images (scaled to ``[0, 1]``), computed exactly, close to the usual
    Fashion-MNIST constants (0.2860, 0.3530).

    Args:
        root: Folder holding ``FashionMNIST/raw/`` (see :mod:`routing_env.datasets.storage`
            for the default).
        seed: Seed of the draw of training images (and of test images when
            ``per_class[1]`` is an int); the same seed gives identical tensors.
        download: Download Fashion-MNIST into ``root`` with torchvision if files are missing.
        per_class: ``(train, test)`` images per class: training images drawn per class
            (1,000 by default), and test images drawn per class, or None (the default)
            for every test image. Smaller values serve tests on small fixture files.

    Raises:
        DatasetNotFoundError: If a Fashion-MNIST file is missing, unreadable or malformed
            (a :class:`FileNotFoundError`; the message lists the files expected).
        ValueError: If ``per_class`` asks for more images of a class than Fashion-MNIST
            has, or ``seed``/``per_class`` are invalid.
    """
    seed = check_seed(seed)
    n_train, n_test = check_per_class_or_all(per_class)
    return build_one_vs_rest(
        _FASHION,
        root=resolve_root(root),
        seed=seed,
        download=download,
        n_train=n_train,
        n_test=n_test,
        task_names=tuple(f"{slug}-vs-rest" for slug in _SLUGS),
        class_names=tuple((f"not-{slug}", slug) for slug in _SLUGS),
    )
