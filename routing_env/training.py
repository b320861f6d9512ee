"""What the example training scripts share: a typed CLI, run folders, metrics, checkpoints.

Nothing here trains anything; ``examples/train_wpl.py`` and
``examples/train_baseline.py`` hold the training loops and import these pieces:

- :func:`parse_args`: an ``argparse`` command line generated from a dataclass, with
  each field's docstring as its ``--help`` (CleanRL's ``Args`` style, no dependency).
- :func:`subsample`: a per-task stratified subset of a dataset, for quick runs.
- :func:`create_run_dir`, :func:`write_config`, :func:`read_config`,
  :func:`resume_args`: a run folder holding the config that produced it.
- :class:`MetricsCSV` and :func:`metrics_row`: one row of per-task train and test
  accuracy per epoch, in one format for routing runs and baselines.
- :func:`save_checkpoint` / :func:`load_checkpoint`: atomic (temp file +
  ``os.replace``), loadable with ``torch.load(..., weights_only=True)``; numpy arrays
  (e.g. tabular policies, generator states) are stored as tensors and restored.
- :func:`global_rng_state` / :func:`set_global_rng_state` / :func:`seed_everything`.
- :class:`Progress`, :func:`summary_table`, :func:`tensorboard_writer`.
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import inspect
import json
import math
import os
import random
import sys
import tempfile
import textwrap
import time
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal, TypeVar, get_args, get_origin

import numpy as np
import torch

from routing_env.datasets.base import MultiTaskDataset, TaskSplit
from routing_env.datasets.registry import load_dataset

DatasetName = Literal["digits-mtl", "mnist-mtl", "cifar-mtl", "min-mtl"]
"""The datasets the training scripts can load (:func:`routing_env.datasets.load_dataset`)."""

__all__ = [
    "DatasetName",
    "DatasetOptions",
    "MetricsCSV",
    "Progress",
    "create_run_dir",
    "field_docs",
    "global_rng_state",
    "load_checkpoint",
    "metric_columns",
    "metrics_row",
    "parse_args",
    "parse_per_class",
    "read_config",
    "resume_args",
    "save_checkpoint",
    "seed_everything",
    "set_global_rng_state",
    "subsample",
    "summary_table",
    "tensorboard_writer",
    "write_config",
    "write_summary",
]

T = TypeVar("T")

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "summary.json"


# ============================================================== command line
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (``x: int = 1`` then ``\"\"\"doc\"\"\"``).

    Python keeps no attribute docstrings at runtime, so they are read from the class's
    source; a class without source (defined in a REPL) gets no help texts.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0]
        if not isinstance(body, ast.ClassDef):
            continue
        statements = body.body
        for node, after in zip(statements, statements[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1 and len(members) < len(get_args(tp)):
            return members[0], True
    return tp, False


def _converter(tp: Any, optional: bool, name: str) -> Any:
    def convert(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        try:
            return tp(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} expects {tp.__name__}, got {text!r}") from None

    convert.__name__ = tp.__name__  # argparse names the type in its error messages
    return convert


def build_parser(cls: type, *, description: str | None = None) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one ``--option`` per field of the dataclass ``cls``.

    Field ``num_epochs: int = 3`` becomes ``--num-epochs N``; ``bool`` fields become
    ``--flag`` / ``--no-flag``; ``Literal[...]`` fields get ``choices``; ``X | None``
    fields also accept ``none``. The help of each option is the field's docstring.

    Raises:
        TypeError: When ``cls`` is not a dataclass or a field's type is not supported.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"build_parser needs a dataclass type, got {cls!r}")
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    parser = argparse.ArgumentParser(
        description=description if description is not None else inspect.getdoc(cls),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp, optional = _unwrap_optional(hints[f.name])
        help_text = docs.get(f.name, "")
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text}
        if f.default is not dataclasses.MISSING:
            kwargs["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kwargs["default"] = f.default_factory()
        else:
            kwargs["required"] = True
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(tp) is Literal:
            choices = list(get_args(tp))
            kinds = {type(c) for c in choices}
            if len(kinds) != 1:
                raise TypeError(f"field {f.name!r}: Literal choices must share one type, got {choices}")
            kind = kinds.pop()
            kwargs["type"] = _converter(kind, optional, f.name)
            kwargs["choices"] = choices + ([None] if optional else [])
            kwargs["metavar"] = "{" + ",".join(map(str, choices)) + (",none" if optional else "") + "}"
        elif tp in (int, float, str):
            kwargs["type"] = _converter(tp, optional, f.name)
            kwargs["metavar"] = f.name.upper() if tp is str else tp.__name__.upper()
        else:
            raise TypeError(
                f"field {f.name!r} has type {hints[f.name]!r}; supported: bool, int, float, str, Literal, X | None"
            )
        parser.add_argument(flag, **kwargs)
    return parser


def parse_args(cls: type[T], argv: Sequence[str] | None = None, *, description: str | None = None) -> T:
    """Parse ``argv`` (default ``sys.argv[1:]``) into an instance of the dataclass ``cls``.

    Errors in the values (wrong type, a choice not offered, a ``ValueError`` raised by
    the dataclass's ``__post_init__``) exit with argparse's usage message.
    """
    parser = build_parser(cls, description=description)
    namespace = parser.parse_args(argv)
    try:
        return cls(**vars(namespace))
    except ValueError as err:
        parser.error(str(err))
        raise  # unreachable: parser.error exits


# ============================================================== datasets
def _subset_indices(split: TaskSplit, limit: int, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
    """``limit`` indices taken round-robin over the tasks, each task's in a random order."""
    tasks = split.tasks_N.numpy()
    queues = [rng.permutation(np.flatnonzero(tasks == t)) for t in range(num_tasks)]
    picked: list[int] = []
    depth = 0
    while len(picked) < limit:
        for queue in queues:
            if depth < len(queue) and len(picked) < limit:
                picked.append(int(queue[depth]))
        depth += 1
    return np.sort(np.asarray(picked, dtype=np.int64))


def subsample(
    dataset: MultiTaskDataset,
    *,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> MultiTaskDataset:
    """A copy of ``dataset`` with at most ``max_train`` / ``max_test`` samples per split.

    Samples are drawn per task in turn (each task's in a random order from ``seed``),
    so every task keeps about the same share and none is left empty; the original order
    of the kept samples is preserved. A split already within its limit is kept as is, and
    normalization statistics are unchanged.

    Raises:
        ValueError: When a limit is smaller than the number of tasks.
    """
    rng = np.random.default_rng(seed)

    def cut(split: TaskSplit, limit: int | None, name: str) -> TaskSplit:
        if limit is None or limit >= len(split):
            return split
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < dataset.num_tasks:
            raise ValueError(
                f"max_{name} must be an int >= the number of tasks ({dataset.num_tasks}) so that every "
                f"task keeps a sample, got {limit!r}"
            )
        idx = torch.from_numpy(_subset_indices(split, limit, dataset.num_tasks, rng))
        return TaskSplit(
            inputs_NCHW=split.inputs_NCHW[idx], tasks_N=split.tasks_N[idx], targets_N=split.targets_N[idx]
        )

    train = cut(dataset.train, max_train, "train")
    test = cut(dataset.test, max_test, "test")
    if train is dataset.train and test is dataset.test:
        return dataset
    return dataclasses.replace(dataset, train=train, test=test)


# ============================================================== run folders
def create_run_dir(output_dir: str | os.PathLike[str], name: str | None, *, prefix: str) -> Path:
    """Create ``output_dir/name`` (default name: ``<prefix>-<YYYYmmdd-HHMMSS>``).

    Raises:
        FileExistsError: When the folder exists and is not empty (pass ``--resume`` to
            continue a run, or another name).
    """
    if name is None:
        name = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not name or os.sep in name or name in (".", ".."):
        raise ValueError(f"run name must be a plain folder name, got {name!r}")
    run_dir = Path(output_dir) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(
            f"run folder {run_dir} exists and is not empty; pass --resume {run_dir} to continue it "
            "or choose another --run-name"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _temp_file(path: Path) -> tuple[int, str]:
    """A temp file next to ``path`` (same file system, so ``os.replace`` is atomic), with the
    permissions a plain ``open`` would give (``mkstemp`` makes it private)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_config(
    run_dir: str | os.PathLike[str], config: Any, *, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``config`` (a dataclass instance or a mapping) as ``run_dir/config.json``."""
    is_instance = dataclasses.is_dataclass(config) and not isinstance(config, type)
    data = dataclasses.asdict(config) if is_instance else dict(config)
    payload = {"config": data, **(dict(extra) if extra else {})}
    path = Path(run_dir) / CONFIG_FILE
    _atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def write_summary(run_dir: str | os.PathLike[str], summary: Mapping[str, Any]) -> Path:
    """Write ``summary`` (final metrics of a run) as ``run_dir/summary.json``."""
    path = Path(run_dir) / SUMMARY_FILE
    _atomic_write_text(path, json.dumps(dict(summary), indent=2) + "\n")
    return path


def read_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config`` mapping of ``run_dir/config.json``.

    Raises:
        FileNotFoundError: When the folder holds no config (it is not a run folder).
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a run folder written by this script")
    return dict(json.loads(path.read_text(encoding="utf-8"))["config"])


RESUMABLE_OPTIONS = frozenset(
    {
        "epochs",
        "resume",
        "output_dir",
        "run_name",
        "data_root",
        "download",
        "progress",
        "tensorboard",
        "device",
        "torch_threads",
        "checkpoint",
    }
)
"""Options of the training scripts that may differ when a run is resumed (the rest must
match its ``config.json``)."""


def parse_per_class(text: str) -> tuple[int, int]:
    """``"550,50"`` as ``(550, 50)``: MIN-MTL's training and test images per class.

    Raises:
        ValueError: When ``text`` is not two positive ints separated by a comma.
    """
    try:
        train, test = (int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"expected 'TRAIN,TEST' images per class, e.g. '550,50', got {text!r}") from None
    if train < 1 or test < 1:
        raise ValueError(f"images per class must be positive, got {text!r}")
    return train, test


@dataclasses.dataclass
class DatasetOptions:
    """The dataset options every training script takes; :func:`load_run_dataset` reads them.

    A script's ``Args`` dataclass subclasses this (and may redefine a field to change its
    default or help text), so the options have the same names, types and defaults everywhere.
    """

    dataset: DatasetName = "digits-mtl"
    """multi-task dataset; digits-mtl ships with scikit-learn (offline), the others are read from --data-root"""
    data_root: str | None = None
    """folder holding the datasets (torchvision layout); default $ROUTING_ENV_DATA, else ~/.cache/routing_env"""
    download: bool = False
    """download MNIST / CIFAR-100 into --data-root if missing"""
    data_seed: int = 0
    """seed of the dataset's train/test construction and of the subsets below (kept fixed across run seeds)"""
    max_train_samples: int | None = None
    """train on a per-task stratified subset of at most this many samples (none: all)"""
    max_test_samples: int | None = None
    """evaluate on a per-task stratified subset of at most this many test samples (none: all)"""
    min_per_class: str | None = None
    """MIN-MTL only: TRAIN,TEST images per class (none: the paper's 800,50; the standard mini-ImageNet files need e.g. 550,50)"""


def load_run_dataset(args: DatasetOptions) -> MultiTaskDataset:
    """The dataset a training script's ``args`` ask for, subsampled as they say.

    Reads the fields of :class:`DatasetOptions`; ``min_per_class`` (``"TRAIN,TEST"``
    images per class) applies to MIN-MTL only: the paper's 800 + 50 need more images
    than the 600 per class of the standard mini-ImageNet files, which take e.g. ``"550,50"``.
    """
    options: dict[str, Any] = {}
    per_class = args.min_per_class
    if per_class is not None and args.dataset == "min-mtl":
        options["per_class"] = parse_per_class(per_class) if isinstance(per_class, str) else tuple(per_class)
    dataset = load_dataset(
        args.dataset, root=args.data_root, seed=args.data_seed, download=args.download, **options
    )
    return subsample(
        dataset, max_train=args.max_train_samples, max_test=args.max_test_samples, seed=args.data_seed
    )


def resume_args(args: T, saved: Mapping[str, Any], *, may_change: Collection[str]) -> T:
    """The arguments of a resumed run: the saved config, with some values replaced.

    A field of ``args`` left at its default takes the saved value. A field set to
    something else replaces the saved value if it is in ``may_change`` (e.g. ``epochs``
    to train longer); any other difference raises, since the resumed run could not
    continue the saved one.

    Raises:
        ValueError: Naming the fields that differ from the saved run and may not change.
    """
    if not dataclasses.is_dataclass(args):
        raise TypeError(f"args must be a dataclass instance, got {type(args).__name__}")
    values: dict[str, Any] = {}
    conflicts = []
    for f in dataclasses.fields(args):
        current = getattr(args, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.name not in saved:
            values[f.name] = current
        elif current == default or current == saved[f.name]:
            values[f.name] = saved[f.name]
        elif f.name in may_change:
            values[f.name] = current
        else:
            conflicts.append(f"--{f.name.replace('_', '-')} {current!r} (the run used {saved[f.name]!r})")
    if conflicts:
        raise ValueError(
            "a resumed run continues with its saved config; these options differ from it: "
            + "; ".join(conflicts)
            + f". Only {', '.join(sorted(may_change))} may change on resume."
        )
    return dataclasses.replace(args, **values)  # type: ignore[type-var]


#: Training epochs of a new run of ``train_wpl.py`` / ``train_baseline.py`` when ``--epochs`` is not given.
DEFAULT_EPOCHS = 20


def resolve_run_args(args: T) -> T:
    """Fill the training scripts' options whose None means "the run's own on ``--resume``".

    ``epochs`` None becomes :data:`DEFAULT_EPOCHS` and ``device`` None ``"cpu"``
    (checked by :func:`resolve_device`). Call it on a new run's arguments, or on a
    resumed run's after :func:`resume_args`. Because these defaults are None, an explicit
    ``--epochs 20`` or ``--device cpu`` on ``--resume`` replaces the saved value even when
    it equals the default.
    """
    values: dict[str, Any] = {}
    if getattr(args, "epochs", 0) is None:
        values["epochs"] = DEFAULT_EPOCHS
    if hasattr(args, "device"):
        values["device"] = resolve_device(args.device)
    return dataclasses.replace(args, **values)  # type: ignore[type-var]


def resolve_device(device: str | None) -> str:
    """The torch device a training script runs on: ``device``, or ``"cpu"`` for None.

    The scripts' ``--device`` defaults to None so that ``--resume`` keeps the run's own
    device unless one is given, and an explicit ``--device cpu`` can move a GPU run to
    a machine without one.

    Raises:
        ValueError: When ``device`` is not a torch device, or names a CUDA device this
            machine does not have.
    """
    if device is None:
        return "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from err
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device}: CUDA is not available here (torch {torch.__version__}); "
                "pass --device cpu (a resumed GPU run continues on the CPU)"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return device


# ============================================================== metrics
def metric_columns(num_tasks: int) -> list[str]:
    """The columns of ``metrics.csv``: one row per epoch, overall then per-task accuracies.

    ``test_accuracy`` is the greedy policy's (argmax route) accuracy on the test split,
    ``test_accuracy_stochastic`` the sampled policy's (empty for baselines, which have
    no policy); ``train_accuracy`` counts the predictions made while training during the
    epoch. Times are in seconds; ``wall_time_s`` adds up over resumed sessions.
    """
    columns = [
        "epoch",
        "samples",
        "updates",
        "lr",
        "train_accuracy",
        "test_accuracy",
        "test_accuracy_stochastic",
    ]
    for kind in ("train_accuracy", "test_accuracy", "test_accuracy_stochastic"):
        columns += [f"{kind}_task_{t}" for t in range(num_tasks)]
    return columns + ["epoch_time_s", "wall_time_s"]


def metrics_row(
    *,
    epoch: int,
    samples: int,
    updates: int,
    lr: float,
    train_accuracy_per_task: Sequence[float],
    train_accuracy: float,
    test_accuracy_per_task: Sequence[float],
    test_accuracy: float,
    test_accuracy_stochastic_per_task: Sequence[float] | None = None,
    test_accuracy_stochastic: float | None = None,
    epoch_time_s: float,
    wall_time_s: float,
) -> dict[str, Any]:
    """One row of :func:`metric_columns` (missing stochastic accuracies are left empty)."""
    num_tasks = len(test_accuracy_per_task)
    if len(train_accuracy_per_task) != num_tasks:
        raise ValueError(
            f"{len(train_accuracy_per_task)} train accuracies but {num_tasks} test accuracies; expected one per task"
        )
    stochastic = (
        list(test_accuracy_stochastic_per_task)
        if test_accuracy_stochastic_per_task is not None
        else [None] * num_tasks
    )
    row: dict[str, Any] = {
        "epoch": epoch,
        "samples": samples,
        "updates": updates,
        "lr": lr,
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "test_accuracy_stochastic": test_accuracy_stochastic,
    }
    for kind, values in (
        ("train_accuracy", train_accuracy_per_task),
        ("test_accuracy", test_accuracy_per_task),
        ("test_accuracy_stochastic", stochastic),
    ):
        for t, value in enumerate(values):
            row[f"{kind}_task_{t}"] = value
    row["epoch_time_s"] = epoch_time_s
    row["wall_time_s"] = wall_time_s
    return row


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # round-trips exactly
    return str(value)


class MetricsCSV:
    """Appends rows to ``path`` (a CSV with a fixed header), flushing each row.

    Args:
        path: The CSV file; created with its header if missing.
        columns: The header. An existing file must have the same one.

    Raises:
        ValueError: When an existing file has another header, or a row misses a column.
    """

    def __init__(self, path: str | os.PathLike[str], columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
            if header != self.columns:
                raise ValueError(f"{self.path} has columns {header[:4]}..., expected {self.columns[:4]}...")
        else:
            with self.path.open("w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(self.columns)

    def append(self, row: Mapping[str, Any]) -> None:
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise ValueError(f"metrics row misses columns {missing}")
        with self.path.open("a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow([_format(row[c]) for c in self.columns])

    def rows(self) -> list[dict[str, str]]:
        """Every row written so far, as strings."""
        with self.path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def keep_epochs(self, last_epoch: int) -> None:
        """Drop the rows after ``last_epoch`` (written after the checkpoint a run resumes from)."""
        rows = [r for r in self.rows() if int(r["epoch"]) <= last_epoch]
        lines = [self.columns] + [[r[c] for c in self.columns] for r in rows]
        fd, tmp = _temp_file(self.path)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(lines)
        os.replace(tmp, self.path)


# ============================================================== checkpoints
_NDARRAY = "__ndarray__"


def _encode(obj: Any) -> Any:
    """Make ``obj`` loadable with ``weights_only=True``: numpy arrays become byte tensors."""
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        if array.dtype.hasobject:
            raise TypeError("object arrays cannot be checkpointed")
        raw = torch.from_numpy(array.reshape(-1).view(np.uint8).copy())
        return {_NDARRAY: raw, "dtype": array.dtype.str, "shape": list(array.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_encode(v) for v in obj)
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if _NDARRAY in obj:
            raw = obj[_NDARRAY].numpy()
            return raw.view(np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_decode(v) for v in obj)
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (a temp file in the same folder, then ``os.replace``).

    A crash mid-write leaves the previous checkpoint intact. Numpy arrays anywhere in
    ``state`` are stored as tensors and restored by :func:`load_checkpoint`.
    """
    path = Path(path)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(_encode(state), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError: When ``path`` is not a file.
        ValueError: When the file is corrupt or truncated (nothing is changed on disk).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, pickle/zip errors, EOFError...
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err}); "
            "it was left as it is: restore it or start the run again"
        ) from err
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return _decode(state)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (examples only; see STYLE.md)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def global_rng_state() -> dict[str, Any]:
    """The state of Python's, numpy's and torch's global generators (CUDA's too if present)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`global_rng_state` returned (after a checkpoint round trip)."""

    def tuples(obj: Any) -> Any:
        return tuple(tuples(v) for v in obj) if isinstance(obj, (list, tuple)) else obj

    random.setstate(tuples(state["python"]))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ============================================================== reporting
class Progress:
    """A one-line progress bar on a terminal, redrawn in place; silent elsewhere.

    Args:
        stream: Where to draw (default ``sys.stderr``); nothing is drawn when it is not
            a terminal, so logs stay clean.
        enabled: False draws nothing.
        min_interval_s: Least time between redraws.
    """

    def __init__(
        self, *, stream: IO[str] | None = None, enabled: bool = True, min_interval_s: float = 0.2
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._width = 0

    def update(
        self, label: str, done: int, total: int, started: float, text: str = "", *, force: bool = False
    ) -> None:
        """Redraw ``label [#####.....] done/total rate text``."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.min_interval_s:
            return
        self._last = now
        frac = min(1.0, done / max(1, total))
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        rate = done / max(1e-9, now - started)
        line = f"{label} [{bar}] {done}/{total} {rate:,.0f}/s {text}"
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def clear(self) -> None:
        """Erase the bar so the next line prints cleanly."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def summary_table(row_names: Sequence[str], columns: Mapping[str, Sequence[Any]], *, title: str = "") -> str:
    """A plain-text table: one row per name, one column per entry of ``columns``.

    Floats are printed as percentages with 2 decimals, None as ``-``.
    """

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if isinstance(value, (float, np.floating)):
            return f"{100 * float(value):.2f}"
        return str(value)

    header = ["", *columns]
    body = [[name, *(cell(values[i]) for values in columns.values())] for i, name in enumerate(row_names)]
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]
    lines = [title] if title else []
    lines.append(
        "  ".join(
            h.ljust(w) if j == 0 else h.rjust(w) for j, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    lines.append("  ".join("-" * w for w in widths))
    for r in body:
        lines.append(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def tensorboard_writer(log_dir: str | os.PathLike[str], *, enabled: bool = True) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``, or None.

    None when ``enabled`` is False or TensorBoard is not installed (a one-line note
    naming the extra to install is printed to stderr in that case).
    """
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print(
            "note: TensorBoard is not installed, logging to metrics.csv only "
            "(pip install 'routing-env[tensorboard]' to enable it)",
            file=sys.stderr,
        )
        return None
    return SummaryWriter(log_dir=str(log_dir))
