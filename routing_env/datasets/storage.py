"""Where dataset files live, the error raised when they are missing, and shared helpers.

Every file-backed builder (:func:`~routing_env.datasets.mnist_mtl`,
:func:`~routing_env.datasets.cifar_mtl`, :func:`~routing_env.datasets.min_mtl`) takes a
``root`` folder, resolved by :func:`resolve_root`:

1. the ``root`` argument when given;
2. else the ``ROUTING_ENV_DATA`` environment variable when set and non-empty;
3. else a per-user cache folder, ``$XDG_CACHE_HOME/routing_env`` or
   ``~/.cache/routing_env``.

Nothing is written anywhere unless a builder is called with ``download=True``, and then
only under the root (torchvision creates the dataset's folder there).

Missing, unreadable or corrupt files raise :class:`DatasetNotFoundError`, a
:class:`FileNotFoundError` whose message names the files expected, where, and how to
get them.

Shape legend: ``N`` images, ``C`` channels, ``H`` x ``W`` pixels.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_ENV_VAR",
    "DatasetNotFoundError",
    "channel_mean_std",
    "check_per_class",
    "check_md5sums",
    "check_per_class_or_all",
    "check_seed",
    "default_root",
    "resolve_root",
]

DATA_ENV_VAR = "ROUTING_ENV_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing, unreadable or corrupt.

    The message names the dataset, the files expected and the folder they were looked
    for in, what was wrong, and how to get them (``download=True`` where the dataset can
    be downloaded, or ``ROUTING_ENV_DATA`` pointing at a folder that holds them).

    Attributes:
        summary: The first line of the message: the dataset, the folder and what is wrong.
        folder: The folder under the data root that should hold the files (e.g. ``"MNIST/raw"``).
        downloadable: Whether ``download=True`` (a script's ``--download``) can fetch them.
    """

    def __init__(self, message: str, *, folder: str = "", downloadable: bool = False) -> None:
        super().__init__(message)
        self.summary = message.splitlines()[0] if message else ""
        self.folder = folder
        self.downloadable = downloadable


#: Checked files, by (path, size, modification time): each file's MD5 is computed once per process.
_md5_checked: dict[tuple[str, int, int], str] = {}


def check_md5sums(root: Path, files: Sequence[str]) -> None:
    """Check ``files`` (relative to ``root``) against ``root/MD5SUMS`` where the data root has one.

    A staged data folder may carry ``md5sum -c``'s list; the files it names are checked
    once per process (again only when a file's size or modification time changes). Files
    it does not list, and roots without the list, are not checked.

    Raises:
        DatasetNotFoundError: Naming the file whose MD5 differs from the list's.
    """
    listing = root / "MD5SUMS"
    if not listing.is_file():
        return
    expected: dict[str, str] = {}
    for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2:
            expected[parts[1].lstrip("*")] = parts[0].lower()
    for name in files:
        want = expected.get(name)
        path = root / name
        if want is None or not path.is_file():
            continue
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _md5_checked:
            digest = hashlib.md5(usedforsecurity=False)
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            _md5_checked[key] = digest.hexdigest()
        if _md5_checked[key] != want:
            raise DatasetNotFoundError(
                f"{path}: its MD5 is {_md5_checked[key]}, but {listing} lists {want}: the file was altered or "
                "damaged after it was staged. Restore it from the source"
            )


def default_root() -> Path:
    """The per-user cache folder used when neither ``root`` nor ``ROUTING_ENV_DATA`` is given."""
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache) if cache else Path.home() / ".cache"
    return base / "routing_env"


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """Resolve the data root: ``root``, else ``$ROUTING_ENV_DATA``, else :func:`default_root`.

    Creates nothing.

    Raises:
        TypeError: If ``root`` is not ``None``, a string or a path.
    """
    if root is None:
        root = os.environ.get(DATA_ENV_VAR) or default_root()
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike) or None, got {type(root).__name__}")
    return Path(root).expanduser()


def check_seed(seed: int) -> int:
    """Return ``seed`` if it is a non-negative int.

    Raises:
        TypeError: If ``seed`` is not an int.
        ValueError: If ``seed`` is negative.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return int(seed)


def check_per_class(per_class: Sequence[int], *, name: str = "per_class") -> tuple[int, int]:
    """Return ``per_class`` as ``(train, test)`` if it is a pair of positive ints.

    Raises:
        ValueError: Otherwise.
    """
    try:
        n_train, n_test = per_class
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (train, test) of positive ints, got {per_class!r}") from None
    for n in (n_train, n_test):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"{name} must be a pair (train, test) of positive ints, got {per_class!r}")
    return int(n_train), int(n_test)


def check_per_class_or_all(
    per_class: Sequence[int | None], *, name: str = "per_class"
) -> tuple[int, int | None]:
    """Return ``per_class`` as ``(train, test)``: a positive int, and a positive int or None.

    None for the test count means "every test image" (see
    :func:`~routing_env.datasets.fashion_mtl`).

    Raises:
        ValueError: Otherwise.
    """
    expected = (
        f"{name} must be a pair (train, test): a positive int, and a positive int or None (every test image)"
    )
    try:
        n_train, n_test = per_class
    except (TypeError, ValueError):
        raise ValueError(f"{expected}; got {per_class!r}") from None
    counts = (n_train,) if n_test is None else (n_train, n_test)
    bad = [n for n in counts if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1]
    if n_train is None or bad:
        raise ValueError(f"{expected}; got {per_class!r}")
    return int(n_train), None if n_test is None else int(n_test)


def channel_mean_std(images_NCHW: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and standard deviation of ``uint8`` images scaled to ``[0, 1]``.

    Counts the 256 gray levels of each channel (in blocks of images, so memory stays
    small), then takes the moments of the histogram: exact, and about as fast as one
    pass over the bytes.

    Args:
        images_NCHW: ``uint8`` array.

    Returns:
        ``(mean, std)``, one float per channel (population standard deviation; 1.0 for
        a channel that is constant, which the dataset would otherwise refuse).
    """
    if images_NCHW.dtype != np.uint8 or images_NCHW.ndim != 4:
        raise ValueError(f"expected a uint8 N x C x H x W array, got {images_NCHW.dtype} {images_NCHW.shape}")
    n, c = images_NCHW.shape[:2]
    counts_C256 = np.zeros((c, 256), dtype=np.int64)
    block = 4096
    for start in range(0, n, block):
        chunk = images_NCHW[start : start + block]
        for ch in range(c):
            counts_C256[ch] += np.bincount(chunk[:, ch].reshape(-1), minlength=256)
    levels = np.arange(256, dtype=np.float64) / 255.0
    total = counts_C256.sum(axis=1).astype(np.float64)
    mean = (counts_C256 @ levels) / total
    var = (counts_C256 @ levels**2) / total - mean**2
    std = np.sqrt(np.maximum(var, 0.0))
    std = np.where(std > 0.0, std, 1.0)  # a constant channel normalizes to 0, not to 0/0 = NaN
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
