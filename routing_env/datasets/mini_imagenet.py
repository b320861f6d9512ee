"""MIN-MTL (paper section 4): 10 five-way tasks from 50 random mini-ImageNet classes.

mini-ImageNet (Vinyals et al., 2016; the class split of Ravi & Larochelle, 2017) cannot
be downloaded automatically: put it under ``<root>/mini-imagenet/`` in one of these
layouts (looked for in this order; the first one found is used):

1. ``pickle``: ``mini-imagenet-cache-{train,val,test}.pkl``, each a pickled dict with
   ``'image_data'`` (N x 84 x 84 x 3 ``uint8``) and ``'class_dict'``
   (``{class_name: [indices into image_data]}``);
2. ``csv``: Ravi & Larochelle's ``images/*.jpg`` plus ``{train,val,test}.csv`` with a
   ``filename,label`` header;
3. ``folders``: ``{train,val,test}/<class_name>/*.jpg`` (also ``.jpeg``/``.png``).

Any subset of the three splits may be present; classes are drawn from all classes
found. Images that are not 84x84 are resized to 84x84 (Lanczos), as Ravi & Larochelle
did. Pickles are unpickled: only use files from a source you trust.

Shape legend: ``N`` images, ``C`` channels, ``H`` x ``W`` pixels.
"""

from __future__ import annotations

import csv
import hashlib
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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

__all__ = ["MIN_FOLDER", "min_mtl"]

#: Folder under the root that holds mini-ImageNet.
MIN_FOLDER = "mini-imagenet"

_SPLITS = ("train", "val", "test")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_SIDE = 84
_NUM_TASKS, _LABELS_PER_TASK = 10, 5


def min_mtl(
    *,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    per_class: Sequence[int] = (800, 50),
) -> MultiTaskDataset:
    """Build MIN-MTL: 10 tasks of 5 labels each over 50 random mini-ImageNet classes.

    Following the paper, 50 classes are drawn at random, split into 10 disjoint tasks
    of 5 classes, and each class contributes ``per_class[0]`` (800) training and
    ``per_class[1]`` (50) test images: 4,000 train and 250 test samples per task,
    40,000 and 2,500 in total (Table 1), in task-major order.

    Randomness, all from ``seed``: each class name gets a pseudo-random key derived
    from ``(seed, name)``; the 50 classes with the smallest keys are drawn, in key order
    the first 5 form task 0, the next 5 task 1, and so on; within a task the label of a
    class is its rank in name order (``class_names[t]``). Each drawn class's images
    (pickle index order, or sorted file names) are permuted by a generator seeded from
    ``(seed, name)``: the first ``per_class[0]`` train, the next ``per_class[1]`` test.
    So the draw depends only on the seed and the set of classes present, not on the
    file order or layout.

    Note: the standard mini-ImageNet has 600 images per class, fewer than the 850 the
    paper's 800/50 split needs (the paper does not say where the rest came from); with
    the standard files pass e.g. ``per_class=(550, 50)``. Every class present must
    have at least ``sum(per_class)`` images.

    Inputs are ``uint8`` 3x84x84 images, held in memory (about 0.9 GB with the
    defaults). Normalization: exact per-channel mean and standard deviation of the
    training images scaled to ``[0, 1]``.

    Args:
        root: Folder holding ``mini-imagenet/`` (see :mod:`routing_env.datasets.storage`
            for the default).
        seed: Seed of the class and image draws.
        per_class: ``(train, test)`` images per class; the paper's ``(800, 50)`` by
            default. Smaller values serve the standard files and small test fixtures.

    Raises:
        DatasetNotFoundError: If no layout is found under ``root/mini-imagenet``, or a
            file is unreadable or malformed (a :class:`FileNotFoundError`; the message
            lists the layouts expected).
        ValueError: If fewer than 50 classes are present, a class has fewer than
            ``sum(per_class)`` images, or ``seed``/``per_class`` are invalid.
    """
    seed = check_seed(seed)
    n_train, n_test = check_per_class(per_class)
    n_needed = n_train + n_test
    num_classes = _NUM_TASKS * _LABELS_PER_TASK
    folder = resolve_root(root) / MIN_FOLDER

    # Stream the class groups (one per pickle file, or all classes of an image layout),
    # keeping only the drawn images of the classes with the smallest keys seen so far:
    # memory stays near one pickle plus the drawn images.
    chosen: dict[str, tuple[int, np.ndarray]] = {}  # name -> (key, drawn images NHWC)
    seen: set[str] = set()
    for group in _class_groups(folder):
        for name, count in group.counts.items():
            if name in seen:
                raise _error(folder, f"class {name!r} occurs in more than one split")
            if count < n_needed:
                raise ValueError(
                    f"min-mtl: class {name!r} has {count} images; per_class={tuple(per_class)} needs "
                    f"{n_needed}. The standard mini-ImageNet has 600 images per class: pass e.g. "
                    "per_class=(550, 50)"
                )
            seen.add(name)
        keys = {name: _class_key(seed, name) for name in group.counts}
        ranked = sorted(
            [(key, name) for name, (key, _) in chosen.items()] + [(k, n) for n, k in keys.items()]
        )
        keep = {name for _, name in ranked[:num_classes]}
        chosen = {name: v for name, v in chosen.items() if name in keep}
        new = sorted(name for name in keys if name in keep)
        for name in new:
            order = _class_rng(seed, name).permutation(group.counts[name])[:n_needed]
            chosen[name] = (keys[name], group.load(name, order))
    if len(seen) < num_classes:
        raise ValueError(
            f"min-mtl: found {len(seen)} classes under {folder}; MIN-MTL draws {num_classes} "
            "(mini-ImageNet has 100: 64 train, 16 val, 20 test)"
        )

    by_key = sorted(chosen, key=lambda name: chosen[name][0])
    tasks = [sorted(by_key[t * _LABELS_PER_TASK : (t + 1) * _LABELS_PER_TASK]) for t in range(_NUM_TASKS)]

    def split(first: int, n: int, *, release: bool) -> TaskSplit:
        x_NCHW = np.empty((num_classes * n, 3, _SIDE, _SIDE), dtype=np.uint8)
        for i, name in enumerate(name for task in tasks for name in task):
            x_NCHW[i * n : (i + 1) * n] = chosen[name][1][first : first + n].transpose(0, 3, 1, 2)
            if release:  # np.empty commits memory as it is filled: peak stays near one copy
                del chosen[name]
        labels = np.tile(np.arange(_LABELS_PER_TASK, dtype=np.int64), _NUM_TASKS)
        return TaskSplit(
            inputs_NCHW=torch.from_numpy(x_NCHW),
            tasks_N=torch.from_numpy(np.repeat(np.arange(_NUM_TASKS, dtype=np.int64), _LABELS_PER_TASK * n)),
            targets_N=torch.from_numpy(np.repeat(labels, n)),
        )

    test = split(n_train, n_test, release=False)
    train = split(0, n_train, release=True)
    mean, std = channel_mean_std(train.inputs_NCHW.numpy())
    return MultiTaskDataset(
        name="min-mtl",
        train=train,
        test=test,
        num_classes=(_LABELS_PER_TASK,) * _NUM_TASKS,
        mean=mean,
        std=std,
        task_names=tuple(f"task_{t}" for t in range(_NUM_TASKS)),
        class_names=tuple(tuple(task) for task in tasks),
    )


def _class_key(seed: int, name: str) -> int:
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _class_rng(seed: int, name: str) -> np.random.Generator:
    name_id = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng([seed, name_id])


@dataclass(frozen=True)
class _ClassGroup:
    """Classes whose images are loaded together: their image counts and a loader.

    ``load(name, order)`` returns the class's images at positions ``order`` (in pickle
    index order or sorted file-name order) as a K x 84 x 84 x 3 ``uint8`` array.
    """

    counts: dict[str, int]
    load: Callable[[str, np.ndarray], np.ndarray]


def _class_groups(folder: Path) -> Iterator[_ClassGroup]:
    pickles = [folder / f"mini-imagenet-cache-{s}.pkl" for s in _SPLITS]
    csvs = [folder / f"{s}.csv" for s in _SPLITS]
    dirs = [folder / s for s in _SPLITS]
    if any(p.is_file() for p in pickles):
        for path in pickles:
            if path.is_file():
                yield _pickle_group(folder, path)
    elif any(p.is_file() for p in csvs):
        files: dict[str, list[Path]] = {}
        for path in csvs:
            if path.is_file():
                for filename, label in _read_csv(folder, path):
                    files.setdefault(label, []).append(folder / "images" / filename)
        yield _image_group(folder, files)
    elif any(d.is_dir() for d in dirs):
        files = {}
        for d in dirs:
            if d.is_dir():
                for class_dir in sorted(p for p in d.iterdir() if p.is_dir()):
                    images = [p for p in class_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES]
                    if class_dir.name in files:
                        raise _error(folder, f"class {class_dir.name!r} occurs in more than one split")
                    files[class_dir.name] = images
        yield _image_group(folder, files)
    else:
        raise _error(folder, "no mini-ImageNet files found" if folder.is_dir() else f"no folder {folder}")


def _pickle_group(folder: Path, path: Path) -> _ClassGroup:
    rel = path.name
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")  # also reads Python 2 pickles
    except OSError as err:
        raise _error(folder, f"cannot read {rel}: {err}") from err
    except Exception as err:  # truncated or foreign files raise any of many unpickling errors
        raise _error(folder, f"{rel} is not a readable pickle: {type(err).__name__}: {err}") from err
    if not isinstance(entry, dict) or "image_data" not in entry or "class_dict" not in entry:
        raise _error(folder, f"{rel}: expected a dict with 'image_data' and 'class_dict'")
    images = entry["image_data"]
    class_dict = entry["class_dict"]
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.shape[1:] != (_SIDE, _SIDE, 3)
    ):
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise _error(folder, f"{rel}: 'image_data' is {got}; expected N x 84 x 84 x 3 uint8")
    if not isinstance(class_dict, dict) or not class_dict:
        raise _error(folder, f"{rel}: 'class_dict' must be a non-empty dict {{class_name: [indices]}}")
    indices: dict[str, np.ndarray] = {}
    for name, idx in class_dict.items():
        try:
            idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise _error(folder, f"{rel}: indices of class {name!r} are not ints") from err
        if len(idx) and (idx.min() < 0 or idx.max() >= len(images)):
            raise _error(folder, f"{rel}: indices of class {name!r} exceed the {len(images)} images")
        indices[str(name)] = idx
    return _ClassGroup(
        counts={name: len(idx) for name, idx in indices.items()},
        load=lambda name, order: images[indices[name][order]],
    )


def _read_csv(folder: Path, path: Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise _error(folder, f"cannot read {path.name}: {err}") from err
    if not rows or [c.strip().lower() for c in rows[0]] != ["filename", "label"]:
        raise _error(folder, f"{path.name}: expected a 'filename,label' header")
    body = [r for r in rows[1:] if r]
    if any(len(r) != 2 for r in body):
        raise _error(folder, f"{path.name}: expected two columns, filename and label, on every row")
    return [(r[0].strip(), r[1].strip()) for r in body]


def _image_group(folder: Path, files: dict[str, list[Path]]) -> _ClassGroup:
    files = {name: sorted(paths) for name, paths in files.items()}
    return _ClassGroup(
        counts={name: len(paths) for name, paths in files.items()},
        load=lambda name, order: _decode([files[name][i] for i in order], folder),
    )


def _decode(paths: list[Path], folder: Path) -> np.ndarray:
    """Decode images to K x 84 x 84 x 3 ``uint8`` in threads (PIL releases the GIL)."""
    from PIL import Image

    def one(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (_SIDE, _SIDE):
                    im = im.resize((_SIDE, _SIDE), resample=Image.Resampling.LANCZOS)
                return np.asarray(im, dtype=np.uint8)
        except OSError as err:  # missing files and undecodable images alike
            raise _error(folder, f"cannot decode {path}: {err}") from err

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return np.stack(list(pool.map(one, paths)))


def _error(folder: Path, problem: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"min-mtl: mini-ImageNet not found or corrupt under {folder} ({problem}).\n"
        "Expected one of these layouts there:\n"
        f"  {folder}/mini-imagenet-cache-{{train,val,test}}.pkl  (pickled 'image_data' N x 84 x 84 x 3 "
        "uint8 and 'class_dict')\n"
        f"  {folder}/images/*.jpg with {folder}/{{train,val,test}}.csv  (filename,label; Ravi & Larochelle)\n"
        f"  {folder}/{{train,val,test}}/<class_name>/*.jpg\n"
        "mini-ImageNet cannot be downloaded automatically: obtain it (e.g. with Ravi & Larochelle's "
        "scripts) and put it there, or set ROUTING_ENV_DATA (or pass root=) to the folder that holds "
        f"{MIN_FOLDER}/.",
        folder=MIN_FOLDER,
    )
