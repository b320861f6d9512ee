"""Multi-task data objects consumed by the routing environment.

A multi-task dataset is a pair of splits of ``(input, task, target)`` triples held as
tensors in memory. The environment never reads files: builders such as
:func:`routing_env.datasets.digits_mtl` return a :class:`MultiTaskDataset`.

Shape legend: ``N`` samples, ``C`` channels, ``H`` x ``W`` pixels.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, SupportsIndex

import numpy as np
import torch

if TYPE_CHECKING:
    from routing_env.datasets.source import DatasetSource

__all__ = ["MultiTaskDataset", "TaskSplit"]


@dataclass(frozen=True)
class TaskSplit:
    """One split (train or test) of a multi-task dataset.

    Attributes:
        inputs_NCHW: Images, ``uint8`` in ``[0, 255]`` (saves memory; scaled to
            ``[0, 1]`` then normalized per channel by the env) or ``float32``
            (already scaled to ``[0, 1]``, then normalized the same way).
        tasks_N: Task id of each sample, ``int64`` in ``[0, num_tasks)``.
        targets_N: Class label within the sample's task (``int64`` in
            ``[0, num_classes[task])``), or a ``float32`` regression target.
    """

    inputs_NCHW: torch.Tensor
    tasks_N: torch.Tensor
    targets_N: torch.Tensor

    def __len__(self) -> int:
        return int(self.tasks_N.shape[0])

    @cached_property
    def first_occurrence_N(self) -> np.ndarray | None:
        """For each sample, the index of the first sample of the split whose input has the
        same bytes (``int64``); None when all inputs differ.

        One-vs-rest splits (MNIST-MTL, Fashion-MTL, digits-MTL) hold each image once per
        task; evaluation runs the shared trunk once per distinct image with this map.
        Computed on first use (one sort of the inputs' bytes) and kept.
        """
        inputs = self.inputs_NCHW.detach().cpu().contiguous()
        flat = inputs.reshape(len(inputs), -1).numpy()
        if len(flat) < 2 or flat.shape[1] == 0:
            return None
        rows = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).reshape(-1)
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        if len(first) == len(flat):
            return None
        return first.astype(np.int64)[inverse.reshape(-1)]


@dataclass(frozen=True)
class MultiTaskDataset:
    """A multi-task dataset: train and test splits plus what the network needs to know.

    Attributes:
        name: Short name, e.g. ``"digits-mtl"``.
        train: The training split.
        test: The test split.
        num_classes: Number of classes of each task; ``0`` marks a regression task.
        mean: Per-channel mean used to normalize inputs scaled to ``[0, 1]``.
        std: Per-channel standard deviation for the same normalization.
        task_names: Human-readable name of each task.
        class_names: Optional name of each class of each task (``class_names[t][k]``
            names label ``k`` of task ``t``); empty when the builder gives none.
        validation: An optional validation split carved from the training data
            (:func:`~routing_env.datasets.split_validation`), on which hyper-parameters
            are chosen; None when there is none.
        source: How :func:`~routing_env.datasets.load_dataset` built it (name, data
            root, seed, options, then subsets), or None for a dataset built otherwise
            (not a constructor argument; ``dataclasses.replace`` drops it).

    Pickling: a dataset with a ``source`` pickles as that source plus its
    :meth:`fingerprint`, not its tensors, and unpickling rebuilds it (once per process,
    shared by every copy there) and checks the fingerprint, raising
    :class:`~routing_env.datasets.source.DatasetMismatchError` when the data on disk
    changed; see :mod:`routing_env.datasets.source`. A dataset without a source pickles
    with its tensors. The tensors are read-only: nothing here or in the env writes to them.

    Raises:
        ValueError: When the splits or the statistics are malformed (see :meth:`validate`),
            raised by the constructor so a malformed dataset never reaches the env.
        TypeError: When ``num_classes``, ``mean`` or ``std`` hold something other than numbers.
    """

    name: str
    train: TaskSplit
    test: TaskSplit
    num_classes: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    task_names: tuple[str, ...] = ()
    class_names: tuple[tuple[str, ...], ...] = ()
    validation: TaskSplit | None = None
    source: DatasetSource | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.task_names and isinstance(self.num_classes, Sequence):  # else validate() says why
            object.__setattr__(self, "task_names", tuple(f"task_{t}" for t in range(len(self.num_classes))))
        self.validate()

    @property
    def num_tasks(self) -> int:
        return len(self.num_classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one input."""
        c, h, w = self.train.inputs_NCHW.shape[1:]
        return int(c), int(h), int(w)

    @property
    def is_regression(self) -> bool:
        return all(k == 0 for k in self.num_classes)

    def validate(self) -> None:
        """Check shapes, dtypes, values and label ranges, and that no task is empty.

        Besides the shapes, it refuses what would fail later deep inside torch, or not
        at all: ``num_classes`` entries that are not ints; a ``mean`` or ``std`` that is
        not a number per channel, not finite, or (``std``) not positive; ``float32``
        inputs holding NaN or inf or lying outside ``[0, 1]`` (pixels in ``0..255``
        must be divided by 255, or passed as ``uint8``); non-finite regression targets;
        class labels outside ``[0, num_classes[task])``. The value checks are one pass
        of torch reductions over each float split (``uint8`` inputs need none).

        Raises:
            ValueError: Naming the dataset, the split, the field and what was expected.
            TypeError: When ``num_classes``, ``mean`` or ``std`` hold something other
                than numbers (e.g. ``num_classes=(2.5, 2)`` or ``mean=("0.5",)``).
        """
        name = f"dataset {self.name!r}"
        if isinstance(self.num_classes, (str, bytes)) or not isinstance(self.num_classes, Sequence):
            raise TypeError(
                f"{name}: num_classes must be a tuple of ints (classes per task, 0 for regression), "
                f"got {self.num_classes!r}"
            )
        not_int = [k for k in self.num_classes if isinstance(k, bool) or not isinstance(k, numbers.Integral)]
        if not_int:
            raise TypeError(
                f"{name}: num_classes={tuple(self.num_classes)!r}; expected an int per task (classes of the "
                f"task, 0 for regression), got {not_int[0]!r} ({type(not_int[0]).__name__})"
            )
        for field, values in (("mean", self.mean), ("std", self.std)):
            _check_channel_stats(name, field, values)
        if any(float(v) <= 0 for v in self.std):
            raise ValueError(
                f"{name}: std={tuple(self.std)!r}; expected a standard deviation > 0 per channel "
                "(inputs are divided by it; pass 1.0 for a channel that is constant)"
            )
        if not self.num_classes:
            raise ValueError(f"dataset {self.name!r}: num_classes is empty; expected one entry per task")
        if any(k < 0 for k in self.num_classes) or (
            any(k == 0 for k in self.num_classes) and not all(k == 0 for k in self.num_classes)
        ):
            raise ValueError(
                f"dataset {self.name!r}: num_classes={self.num_classes}; expected all >= 1 "
                "(classification) or all 0 (regression)"
            )
        if len(self.task_names) != self.num_tasks:
            raise ValueError(
                f"dataset {self.name!r}: {len(self.task_names)} task_names for {self.num_tasks} tasks"
            )
        if self.class_names and (
            len(self.class_names) != self.num_tasks
            or any(len(names) != k for names, k in zip(self.class_names, self.num_classes, strict=False))
        ):
            raise ValueError(
                f"dataset {self.name!r}: class_names has {[len(n) for n in self.class_names]} names per task; "
                f"expected one tuple per task with num_classes={self.num_classes} entries, or ()"
            )
        shapes = set()
        for split_name, split in self.splits().items():
            x, t, y = split.inputs_NCHW, split.tasks_N, split.targets_N
            where = f"dataset {self.name!r}, {split_name} split"
            if not isinstance(x, torch.Tensor) or x.dim() != 4:
                raise ValueError(
                    f"{where}: inputs must be a 4-d tensor N x C x H x W, "
                    f"got {type(x).__name__} with shape {tuple(getattr(x, 'shape', ()))}"
                )
            if x.dtype not in (torch.uint8, torch.float32):
                raise ValueError(f"{where}: inputs dtype {x.dtype}; expected torch.uint8 or torch.float32")
            if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.dtype != torch.int64:
                raise ValueError(
                    f"{where}: tasks must be a 1-d int64 tensor, got {getattr(t, 'dtype', type(t))}"
                )
            if not isinstance(y, torch.Tensor) or y.dim() != 1:
                raise ValueError(f"{where}: targets must be a 1-d tensor")
            if not (x.shape[0] == t.shape[0] == y.shape[0]):
                raise ValueError(
                    f"{where}: {x.shape[0]} inputs, {t.shape[0]} tasks and {y.shape[0]} targets; "
                    "expected the same number of each"
                )
            if x.shape[0] == 0:
                raise ValueError(f"{where}: no samples")
            if x.shape[1] != len(self.mean) or len(self.mean) != len(self.std):
                raise ValueError(
                    f"{where}: {x.shape[1]} channels but mean/std have "
                    f"{len(self.mean)}/{len(self.std)} entries"
                )
            if x.dtype == torch.float32:
                _check_float_inputs(where, x)
            if t.min() < 0 or t.max() >= self.num_tasks:
                raise ValueError(
                    f"{where}: task ids span [{int(t.min())}, {int(t.max())}]; expected [0, {self.num_tasks})"
                )
            counts = torch.bincount(t, minlength=self.num_tasks)
            empty = [self.task_names[i] for i in range(self.num_tasks) if counts[i] == 0]
            if empty:
                raise ValueError(f"{where}: tasks with no samples: {empty}")
            if self.is_regression:
                if not y.is_floating_point():
                    raise ValueError(f"{where}: regression targets must be floating point, got {y.dtype}")
                finite = torch.isfinite(y)
                if not bool(finite.all()):
                    i = int((~finite).nonzero()[0, 0])
                    raise ValueError(
                        f"{where}: {int((~finite).sum())} regression targets are not finite (NaN or inf), "
                        f"the first in sample {i} (task {int(t[i])}): {float(y[i])}; expected finite numbers"
                    )
            else:
                if y.dtype != torch.int64:
                    raise ValueError(f"{where}: class targets must be int64, got {y.dtype}")
                limit = torch.tensor(self.num_classes, dtype=torch.int64)[t]
                bad = (y < 0) | (y >= limit)
                if bool(bad.any()):
                    i = int(bad.nonzero()[0, 0])
                    raise ValueError(
                        f"{where}: sample {i} of task {int(t[i])} has label {int(y[i])}; "
                        f"expected [0, {self.num_classes[int(t[i])]})"
                    )
            shapes.add(tuple(x.shape[1:]))
        if len(shapes) != 1:
            raise ValueError(f"dataset {self.name!r}: the splits' input shapes differ: {sorted(shapes)}")

    def splits(self) -> dict[str, TaskSplit]:
        """The splits by name: ``train``, ``test`` and, when there is one, ``validation``."""
        out = {"train": self.train, "test": self.test}
        if self.validation is not None:
            out["validation"] = self.validation
        return out

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data: the metadata, and per tensor its shape, dtype and SHA-256.

        One hashing pass over the tensors (about 0.1 s for MNIST-MTL's 80 MB).
        """
        out: dict[str, Any] = {
            "name": self.name,
            "num_classes": tuple(self.num_classes),
            "mean": tuple(self.mean),
            "std": tuple(self.std),
            "task_names": tuple(self.task_names),
            "class_names": tuple(self.class_names),
        }
        for split_name, split in self.splits().items():
            for part in ("inputs_NCHW", "tasks_N", "targets_N"):
                t = getattr(split, part)
                array = np.ascontiguousarray(t.detach().cpu().numpy())
                digest = hashlib.sha256(array.view(np.uint8).data).hexdigest()[:32]
                out[f"{split_name}.{part}"] = (tuple(t.shape), str(t.dtype), digest)
        return out

    def self_contained(self) -> MultiTaskDataset:
        """This dataset (the same tensors) without its :attr:`source`: it pickles with its data.

        For a process that cannot read the dataset's files.
        """
        if self.source is None:
            return self
        clone = self.__copy__()
        object.__setattr__(clone, "source", None)
        return clone

    def __copy__(self) -> MultiTaskDataset:
        # field by field: copy.copy would otherwise go through __reduce_ex__
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        if self.source is None:
            return super().__reduce_ex__(protocol)
        from routing_env.datasets.source import rebuild_dataset, share

        fingerprint = self.fingerprint()
        share(self.source, fingerprint, self)  # a load in this process gets this very object
        return rebuild_dataset, (self.source, fingerprint)

    def __deepcopy__(self, memo: dict[int, Any]) -> MultiTaskDataset:
        # field by field (the tensors copied, the source kept): deepcopy would otherwise go
        # through __reduce_ex__ and return the shared dataset
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            object.__setattr__(clone, name, copy.deepcopy(value, memo))
        return clone

    def normalize(self, inputs_NCHW: torch.Tensor) -> torch.Tensor:
        """Scale a batch to ``[0, 1]`` (uint8 inputs) and normalize per channel, as float32."""
        x = inputs_NCHW.float()
        if inputs_NCHW.dtype == torch.uint8:
            x = x / 255.0
        mean_1C11, std_1C11 = self._normalization
        return (x - mean_1C11) / std_1C11

    @cached_property
    def _normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return mean, std


def _check_channel_stats(name: str, field: str, values: Any) -> None:
    """``mean`` / ``std``: a sequence of finite real numbers."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name}: {field} must be a tuple of floats, one per channel, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(
                f"{name}: {field}={tuple(values)!r}; expected a float per channel, "
                f"got {v!r} ({type(v).__name__})"
            )
        if not math.isfinite(float(v)):
            raise ValueError(f"{name}: {field}={tuple(values)!r}; expected finite numbers, got {v!r}")


def _check_float_inputs(where: str, x_NCHW: torch.Tensor) -> None:
    """``float32`` inputs: finite and scaled to ``[0, 1]`` (one ``aminmax`` pass; NaN propagates)."""
    if x_NCHW.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(x_NCHW))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad_N = ~torch.isfinite(x_NCHW).flatten(1).all(dim=1)
        i = int(bad_N.nonzero()[0, 0])
        kinds = " and ".join(
            k for k, test in (("NaN", torch.isnan), ("inf", torch.isinf)) if bool(test(x_NCHW[i]).any())
        )
        raise ValueError(
            f"{where}: {int(bad_N.sum())} input images hold non-finite pixels, the first is sample {i} "
            f"({kinds}); expected finite float32 pixels in [0, 1] (a NaN pixel would be scored as a prediction)"
        )
    if lo < 0.0 or hi > 1.0 + 1e-6:
        if lo >= 0.0 and hi <= 255.0:
            hint = ": they look like 0..255 pixels; divide them by 255, or pass them as torch.uint8"
        else:  # e.g. already standardized
            hint = " (unnormalized: the env normalizes them with the dataset's mean and std)"
        raise ValueError(
            f"{where}: float32 inputs span [{lo:.6g}, {hi:.6g}]; expected pixels scaled to [0, 1]{hint}"
        )
