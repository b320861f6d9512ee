"""Fixtures for the dataset tests: small files in the datasets' real on-disk formats.

Each writer stamps the true class of an image into its first pixels, so a test can
check that every loaded image carries the label it should.
"""

from __future__ import annotations

import csv
import os
import pickle
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def real_root() -> Path:
    """The real data folder from ``ROUTING_ENV_DATA``; skips the test when it is unset."""
    root = os.environ.get("ROUTING_ENV_DATA")
    if not root:
        pytest.skip("real-data test: set ROUTING_ENV_DATA to a folder holding the real datasets")
    return Path(root)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the idx format of MNIST (big-endian header)."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _write_idx_dataset(
    root: Path, folder: str, train_per_class: int, test_per_class: int | Sequence[int], *, seed: int
) -> Path:
    """Write ``root/<folder>/raw/`` in MNIST's idx format, the class stamped into each image.

    ``test_per_class`` is a count for every class, or one count per class.
    """
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        counts = [per_class] * 10 if isinstance(per_class, int) else list(per_class)
        classes = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), counts))
        images = rng.integers(0, 256, size=(len(classes), 28, 28), dtype=np.uint8)
        index = np.arange(len(classes))
        images[:, 0, 0] = classes
        images[:, 0, 1] = index % 256
        images[:, 0, 2] = index // 256
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", classes)
    return root


@pytest.fixture
def write_mnist() -> Callable[..., Path]:
    """``write_mnist(root, train_per_digit, test_per_digit)`` writes ``root/MNIST/raw/``.

    Image ``i`` of a file has its digit in pixel (0, 0) and ``i % 256``, ``i // 256``
    in pixels (0, 1) and (0, 2); the rest is random.
    """

    def write(root: Path, train_per_digit: int = 8, test_per_digit: int = 3, *, seed: int = 0) -> Path:
        return _write_idx_dataset(root, "MNIST", train_per_digit, test_per_digit, seed=seed)

    return write


@pytest.fixture
def write_fashion_mnist() -> Callable[..., Path]:
    """``write_fashion_mnist(root, train_per_class, test_per_class)`` writes ``root/FashionMNIST/raw/``.

    Stamped like :func:`write_mnist`'s files: the class in pixel (0, 0), the image's
    index in the file in pixels (0, 1) and (0, 2). ``test_per_class`` may be one count
    per class, so the test files can be unbalanced.
    """

    def write(
        root: Path, train_per_class: int = 8, test_per_class: int | Sequence[int] = 3, *, seed: int = 0
    ) -> Path:
        return _write_idx_dataset(root, "FashionMNIST", train_per_class, test_per_class, seed=seed)

    return write


@pytest.fixture
def write_cifar100() -> Callable[..., np.ndarray]:
    """``write_cifar100(root, train_per_fine, test_per_fine)`` writes ``root/cifar-100-python/``.

    The 100 fine classes are shared out among the 20 superclasses at random (as in the
    real data, a superclass's fine ids are not consecutive). Row ``i`` of ``data`` holds
    its fine label, coarse label, ``i % 256`` and ``i // 256`` in its first 4 bytes.
    Returns the fine-to-coarse map (100 ints).
    """

    def write(root: Path, train_per_fine: int = 3, test_per_fine: int = 1, *, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        fine_to_coarse = np.empty(100, dtype=np.int64)
        fine_to_coarse[rng.permutation(100)] = np.repeat(np.arange(20), 5)
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        for name, per_fine in (("train", train_per_fine), ("test", test_per_fine)):
            fine = rng.permutation(np.repeat(np.arange(100), per_fine))
            data = rng.integers(0, 256, size=(len(fine), 3072), dtype=np.uint8)
            index = np.arange(len(fine))
            data[:, 0], data[:, 1] = fine, fine_to_coarse[fine]
            data[:, 2], data[:, 3] = index % 256, index // 256
            entry = {
                "filenames": [f"img_{i}.png" for i in index],
                "batch_label": f"{name} batch",
                "fine_labels": fine.tolist(),
                "coarse_labels": fine_to_coarse[fine].tolist(),
                "data": data,
            }
            with open(folder / name, "wb") as f:
                pickle.dump(entry, f)
        meta = {
            "fine_label_names": [f"fine_{i}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i}" for i in range(20)],
        }
        with open(folder / "meta", "wb") as f:
            pickle.dump(meta, f)
        return fine_to_coarse

    return write


def min_class_names(num_classes: int) -> list[str]:
    """Class ``i`` is called ``n{1000 + i:08d}`` (wnid-like); tests invert it with ``int(name[1:]) - 1000``."""
    return [f"n{1000 + i:08d}" for i in range(num_classes)]


def _min_image(class_idx: int, image_idx: int, side: int = 84) -> np.ndarray:
    """A flat image whose red level encodes the class (JPEG keeps flat colours nearly exact)."""
    image = np.empty((side, side, 3), dtype=np.uint8)
    image[..., 0] = 4 * class_idx
    image[..., 1] = 3 * image_idx
    image[..., 2] = 128
    return image


@pytest.fixture
def write_min() -> Callable[..., Path]:
    """``write_min(root, layout, num_classes=55, per_class=4, side=84)`` writes ``root/mini-imagenet/``.

    ``layout`` is ``"pickle"``, ``"csv"`` or ``"folders"``; classes are spread over the
    train, val and test splits. Every image is flat: red = 4 x class index (in the order
    of :func:`min_class_names`), green = 3 x image index within the class.
    """

    def write(root: Path, layout: str, *, num_classes: int = 55, per_class: int = 4, side: int = 84) -> Path:
        folder = root / "mini-imagenet"
        folder.mkdir(parents=True, exist_ok=True)
        names = min_class_names(num_classes)
        split_of = {name: ("train", "val", "test")[i % 3] for i, name in enumerate(names)}
        for split in ("train", "val", "test"):
            members = [(i, n) for i, n in enumerate(names) if split_of[n] == split]
            if layout == "pickle":
                rng = np.random.default_rng(len(members))
                # images of a class scattered over the array, as in the real pickles
                slots = rng.permutation(len(members) * per_class)
                data = np.empty((len(slots), side, side, 3), dtype=np.uint8)
                class_dict = {}
                for k, (i, name) in enumerate(members):
                    idx = slots[k * per_class : (k + 1) * per_class]
                    for j, slot in enumerate(idx):
                        data[slot] = _min_image(i, j, side)
                    class_dict[name] = idx.tolist()
                with open(folder / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
                    pickle.dump({"image_data": data, "class_dict": class_dict}, f)
            elif layout == "csv":
                from PIL import Image

                (folder / "images").mkdir(exist_ok=True)
                with open(folder / f"{split}.csv", "w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(["filename", "label"])
                    for i, name in members:
                        for j in range(per_class):
                            filename = f"{name}{j + 1:08d}.jpg"
                            Image.fromarray(_min_image(i, j, side)).save(
                                folder / "images" / filename, quality=95
                            )
                            writer.writerow([filename, name])
            elif layout == "folders":
                from PIL import Image

                for i, name in members:
                    class_dir = folder / split / name
                    class_dir.mkdir(parents=True, exist_ok=True)
                    for j in range(per_class):
                        Image.fromarray(_min_image(i, j, side)).save(
                            class_dir / f"{name}_{j:04d}.jpg", quality=95
                        )
            else:
                raise ValueError(f"unknown layout {layout!r}")
        return root

    return write
