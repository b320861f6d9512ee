"""One-vs-rest multi-task datasets built from MNIST-format files (MNIST, Fashion-MNIST).

The paper's MNIST-MTL construction (section 4), shared by
:func:`~routing_env.datasets.mnist_mtl` and :func:`~routing_env.datasets.fashion_mtl`:
images of each of the 10 classes are drawn once per split, and every drawn image
appears in each of the 10 tasks, labelled 1 in its own class's task and 0 in the 9
others.

Both datasets are read in torchvision's on-disk layout, ``<root>/<Folder>/raw/`` holding
the four decompressed idx files, through the torchvision dataset class of that name
(:class:`torchvision.datasets.MNIST`, :class:`torchvision.datasets.FashionMNIST`), which
also downloads them with ``download=True``.

Shape legend: ``N`` images (or samples), ``C`` channels, ``H`` x ``W`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from routing_env.datasets.base import MultiTaskDataset, TaskSplit
from routing_env.datasets.storage import DatasetNotFoundError, channel_mean_std, check_md5sums

__all__ = ["IdxSource", "build_one_vs_rest", "idx_files"]

_NUM_CLASSES = 10


def idx_files(folder: str) -> tuple[str, ...]:
    """The four idx files torchvision reads for dataset ``folder``, relative to the root."""
    return tuple(
        f"{folder}/raw/{name}"
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    )


@dataclass(frozen=True)
class IdxSource:
    """What differs between the MNIST-format datasets, for messages and loading.

    Attributes:
        dataset: Name of the multi-task dataset, e.g. ``"mnist-mtl"``.
        builder: Name of its builder function, e.g. ``"mnist_mtl"`` (for messages).
        folder: torchvision's class name and folder, ``"MNIST"`` or ``"FashionMNIST"``.
        label: How messages name the source data, e.g. ``"Fashion-MNIST"``.
        unit: What a class is called in messages: ``"digit"`` or ``"class"``.
        class_labels: Human name of each of the 10 classes, e.g. ``"Ankle boot"``.
    """

    dataset: str
    builder: str
    folder: str
    label: str
    unit: str
    class_labels: tuple[str, ...]

    @property
    def files(self) -> tuple[str, ...]:
        return idx_files(self.folder)

    def describe(self, c: int) -> str:
        """``"digit 3"`` or ``"class 3 (Dress)"``."""
        name = self.class_labels[c]
        return f"{self.unit} {c}" if name == str(c) else f"{self.unit} {c} ({name})"


def build_one_vs_rest(
    source: IdxSource,
    *,
    root: Path,
    seed: int,
    download: bool,
    n_train: int,
    n_test: int | None,
    task_names: tuple[str, ...],
    class_names: tuple[tuple[str, ...], ...],
) -> MultiTaskDataset:
    """Read ``source`` under ``root`` and build its 10 one-vs-rest tasks.

    ``n_train`` training images of each class are drawn without replacement with the
    seed; ``n_test`` test images of each class likewise, or, when ``n_test`` is None,
    every test image of the files is taken (no draw). Samples are in task-major order;
    within a task, images are in file order. Normalization: the exact mean and standard
    deviation of the drawn training images scaled to ``[0, 1]``.

    The seed's stream is split in two (train draw, test draw) whether or not the test
    split is drawn, so the training split of a seed is the same for any ``n_test``.

    Raises:
        DatasetNotFoundError: If a file is missing, unreadable or malformed, or the test
            files hold no image of some class when every test image is asked for.
        ValueError: If ``n_train``/``n_test`` ask for more images of a class than the files have.
    """
    train_images, train_classes = _read_idx(source, root, train=True, download=download)
    test_images, test_classes = _read_idx(source, root, train=False, download=False)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise _error(
            source,
            root,
            f"train images are {tuple(train_images.shape[1:])} but test images are "
            f"{tuple(test_images.shape[1:])}",
        )

    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train_idx = _draw_per_class(source, train_classes, n_train, train_rng, split="train")
    if n_test is None:
        absent = [c for c in range(_NUM_CLASSES) if not bool((test_classes == c).any())]
        if absent:
            raise _error(
                source, root, f"t10k labels: no test image of {', '.join(map(source.describe, absent))}"
            )
        test_drawn, test_drawn_classes = test_images[:, None], test_classes  # every image, file order
    else:
        test_idx = _draw_per_class(source, test_classes, n_test, test_rng, split="test")
        test_drawn, test_drawn_classes = test_images[test_idx][:, None], test_classes[test_idx]

    train_drawn = train_images[train_idx][:, None]  # N x 1 x H x W
    mean, std = channel_mean_std(train_drawn)
    return MultiTaskDataset(
        name=source.dataset,
        train=_one_vs_rest(train_drawn, train_classes[train_idx]),
        test=_one_vs_rest(test_drawn, test_drawn_classes),
        num_classes=(2,) * _NUM_CLASSES,
        mean=mean,
        std=std,
        task_names=task_names,
        class_names=class_names,
    )


def _one_vs_rest(images_NCHW: np.ndarray, classes_N: np.ndarray) -> TaskSplit:
    """Every image once per task, task-major; label 1 where the image's class is the task's.

    The images are copied once per task (``np.tile``): a :class:`TaskSplit` holds one
    contiguous ``N x C x H x W`` tensor, and a view repeating the images could not be
    reshaped to one without that copy. In ``uint8`` this is 10 x 784 bytes per 28x28 image.
    """
    n = len(classes_N)
    tasks = np.repeat(np.arange(_NUM_CLASSES, dtype=np.int64), n)
    return TaskSplit(
        inputs_NCHW=torch.from_numpy(np.tile(images_NCHW, (_NUM_CLASSES, 1, 1, 1))),
        tasks_N=torch.from_numpy(tasks),
        targets_N=torch.from_numpy((np.tile(classes_N, _NUM_CLASSES) == tasks).astype(np.int64)),
    )


def _draw_per_class(
    source: IdxSource, classes: np.ndarray, n: int, rng: np.random.Generator, *, split: str
) -> np.ndarray:
    """Indices of ``n`` images of each class drawn without replacement, in file order."""
    idx = []
    for c in range(_NUM_CLASSES):
        pool = np.flatnonzero(classes == c)
        if len(pool) < n:
            raise ValueError(
                f"{source.dataset}: the {source.label} {split} files hold {len(pool)} images of "
                f"{source.describe(c)}, fewer than the {n} per {source.unit} asked for by per_class"
            )
        idx.append(rng.choice(pool, size=n, replace=False))
    return np.sort(np.concatenate(idx))


def _read_idx(source: IdxSource, root: Path, *, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x H x W uint8) and classes (N int64) of one split, checked."""
    import torchvision.datasets

    missing = [f for f in source.files if not (root / f).is_file()]
    # torchvision still reads the processed/*.pt files older versions of it wrote
    legacy = all((root / source.folder / "processed" / f).is_file() for f in ("training.pt", "test.pt"))
    if missing and not download and not legacy:
        raise _error(source, root, f"missing: {', '.join(missing)}")
    check_md5sums(root, source.files)
    split = "train" if train else "t10k"
    files = f"{source.folder}/raw/{split}-images-idx3-ubyte and {source.folder}/raw/{split}-labels-idx1-ubyte"
    dataset_class = getattr(torchvision.datasets, source.folder)
    try:
        data = dataset_class(root, train=train, download=download)
    except (AssertionError, ValueError, TypeError, IndexError, RuntimeError, OSError) as err:
        # malformed idx files fail torchvision's asserts or reshapes; failed downloads
        # raise RuntimeError or URLError (an OSError)
        detail = f"{type(err).__name__}: {err}" if str(err) else f"{type(err).__name__} (bad idx header?)"
        raise _error(source, root, f"cannot load {files}: {detail}") from err
    images, classes = data.data, data.targets
    if images.dim() != 3 or images.dtype != torch.uint8:
        raise _error(
            source,
            root,
            f"{split} images: expected N x H x W uint8, got {images.dtype} {tuple(images.shape)}",
        )
    if classes.dim() != 1 or len(classes) != len(images):
        raise _error(
            source, root, f"{split}: {len(images)} images but labels of shape {tuple(classes.shape)}"
        )
    if len(classes) == 0 or int(classes.min()) < 0 or int(classes.max()) >= _NUM_CLASSES:
        raise _error(
            source, root, f"{split} labels: expected {source.unit} labels 0..9 for at least one image"
        )
    return images.numpy(), classes.numpy().astype(np.int64)


def _error(source: IdxSource, root: Path, problem: str) -> DatasetNotFoundError:
    expected = "\n".join(f"  {root / f}" for f in source.files)
    return DatasetNotFoundError(
        f"{source.dataset}: {source.label} not found or corrupt under {root} ({problem}).\n"
        f"Expected the decompressed idx files (torchvision's layout):\n{expected}\n"
        f"Get them with {source.builder}(download=True) (torchvision downloads into root), or set "
        f"ROUTING_ENV_DATA (or pass root=) to a folder that holds {source.folder}/raw/.",
        folder=f"{source.folder}/raw",
        downloadable=True,
    )
