"""What the example training scripts share: a typed CLI, run folders, metrics, checkpoints.

Nothing here trains anything; ``examples/train_wpl.py`` and
``examples/train_baseline.py`` hold the training loops and import these pieces:

- :func:`parse_args`: an ``argparse`` command line generated from a dataclass, with
  each field's docstring as its ``--help`` (CleanRL's ``Args`` style, no dependency).
- :func:`subsample`: a per-task stratified subset of a dataset, for quick runs.
- :func:`open_run`: a new run's folder claimed atomically, or a run to resume checked in
  full (its kind, options and checkpoint) before anything is written, held under a
  :class:`RunLock` while it trains; built from :func:`claim_run_dir`,
  :func:`write_config`, :func:`read_config`, :func:`check_run_kind`,
  :func:`resume_args` and :func:`check_checkpoint`.
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

DatasetName = Literal["digits-mtl", "mnist-mtl", "fashion-mtl", "cifar-mtl", "min-mtl"]
"""The datasets the training scripts can load (:func:`routing_env.datasets.load_dataset`).

The same names, in the same order, as :data:`routing_env.datasets.DATASET_NAMES`; ``fashion-mtl``
(:func:`routing_env.datasets.fashion_mtl`) is not a dataset of the paper.
"""

__all__ = [
    "DatasetName",
    "DatasetOptions",
    "LOCK_FILE",
    "MetricsCSV",
    "Progress",
    "RESUMABLE_OPTIONS",
    "RUN_KINDS",
    "RunFolder",
    "RunInUseError",
    "RunLock",
    "check_checkpoint",
    "check_run_kind",
    "claim_run_dir",
    "create_run_dir",
    "field_docs",
    "global_rng_state",
    "load_checkpoint",
    "metric_columns",
    "metrics_row",
    "open_run",
    "parse_args",
    "parse_per_class",
    "read_config",
    "resume_args",
    "run_kind",
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
LOCK_FILE = ".lock"
"""The lock file of a run folder (see :class:`RunLock`); it stays in the folder, unlocked, after a run."""

RUN_KINDS: Mapping[str, str] = types.MappingProxyType(
    {
        "wpl": "examples/train_wpl.py",
        "baseline": "examples/train_baseline.py",
        "paper-agents": "examples/paper/paper_runs.py",
    }
)
"""The kinds of run folder (``config.json``'s ``"kind"``) and the script that writes and resumes each.

``paper-agents`` runs (REINFORCE / Q-learning routers of the paper scripts) keep no
checkpoint: the paper scripts train them again instead of resuming them."""


class RunInUseError(RuntimeError):
    """Another process holds the run folder's lock: it is training (or resuming) that run now."""


if sys.platform == "win32":  # pragma: no cover - the tests run on Linux
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class RunLock:
    """An exclusive lock on a run folder, held by the process that writes into it.

    The lock is an ``fcntl.flock`` on ``RUN_DIR/.lock`` (``msvcrt.locking`` on Windows),
    which the operating system drops when the process ends, however it ends: a run killed
    mid-epoch never leaves its folder locked. The file stays in the folder (deleting it
    would let two processes lock two different files); it holds the id of the last
    process that locked it. Use it as a context manager, or call :meth:`acquire` and
    :meth:`release`.

    Args:
        run_dir: The run folder (it must exist).
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock without waiting (a no-op when already held); return ``self``.

        Raises:
            RunInUseError: When another process (or another :class:`RunLock` of this
                process) holds it.
        """
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            locked = _try_lock(fd)
            if not locked:
                holder = _lock_holder(fd)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            raise RunInUseError(
                f"run folder {self.run_dir} is in use by another process{holder}: it is training or "
                "resuming this run now, and two processes cannot write into one run folder. Wait for it "
                "to finish, or start a run of your own with another --run-name"
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())  # named in the message another process gets
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (a no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_holder(fd: int) -> str:
    """`` (pid N)`` from a lock file's content, or ``""`` when it cannot be read."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32)
    except OSError:  # Windows: the holder's locked byte cannot be read
        return ""
    pid = text.decode("ascii", "replace").strip()
    return f" (pid {pid})" if pid.isdigit() else ""


def _run_dir_path(output_dir: str | os.PathLike[str], name: str | None, prefix: str) -> Path:
    if name is None:
        name = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not name or os.sep in name or name in (".", ".."):
        raise ValueError(f"run name must be a plain folder name, got {name!r}")
    return Path(output_dir) / name


def _holds_files(run_dir: Path) -> bool:
    return any(p.name != LOCK_FILE for p in run_dir.iterdir())


def _not_empty(run_dir: Path) -> FileExistsError:
    return FileExistsError(
        f"run folder {run_dir} exists and is not empty; pass --resume {run_dir} to continue it "
        "or choose another --run-name"
    )


def claim_run_dir(output_dir: str | os.PathLike[str], name: str | None, *, prefix: str) -> RunLock:
    """Create ``output_dir/name`` for a new run and lock it (:class:`RunLock`); return the held lock.

    The folder is claimed atomically: of two runs started together with the same name,
    one gets it and the other is refused, whichever order their steps interleave in.
    Release the lock (or leave its ``with`` block) when the run is done.

    Args:
        output_dir: The folder that receives the run folder (created if missing).
        name: The run folder's name; None: ``<prefix>-<YYYYmmdd-HHMMSS>``.
        prefix: The start of the default name.

    Raises:
        ValueError: When ``name`` is not a plain folder name.
        FileExistsError: When the folder exists and holds files (pass ``--resume`` to
            continue that run, or another name).
        RunInUseError: When another process is writing into the folder.
    """
    run_dir = _run_dir_path(output_dir, name, prefix)
    if run_dir.is_dir() and _holds_files(run_dir):  # refused before a lock file is left in it
        if (run_dir / LOCK_FILE).is_file():
            RunLock(run_dir).acquire().release()  # RunInUseError while a run is writing into it
        raise _not_empty(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir).acquire()
    if _holds_files(run_dir):  # another run claimed it, wrote and finished in between
        lock.release()
        raise _not_empty(run_dir)
    return lock


def create_run_dir(output_dir: str | os.PathLike[str], name: str | None, *, prefix: str) -> Path:
    """Create ``output_dir/name`` (default name: ``<prefix>-<YYYYmmdd-HHMMSS>``).

    The folder is not held after this returns: a script that writes into it over time
    should use :func:`claim_run_dir`, which keeps other runs out until it is done.

    Raises:
        FileExistsError: When the folder exists and is not empty (pass ``--resume`` to
            continue a run, or another name).
        RunInUseError: When another process holds the folder's lock.
    """
    with claim_run_dir(output_dir, name, prefix=prefix) as lock:
        return lock.run_dir


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
    run_dir: str | os.PathLike[str],
    config: Any,
    *,
    kind: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``config`` (a dataclass instance or a mapping) as ``run_dir/config.json``.

    Args:
        run_dir: The run folder.
        config: The run's options, stored under ``"config"``.
        kind: The run kind (a key of :data:`RUN_KINDS`), stored under ``"kind"`` so that
            a script resumes only its own runs (:func:`check_run_kind`).
        extra: More top-level entries (e.g. the dataset sizes).

    Raises:
        ValueError: When ``kind`` is not a key of :data:`RUN_KINDS`.
    """
    if kind is not None and kind not in RUN_KINDS:
        raise ValueError(f"kind must be one of {sorted(RUN_KINDS)} or None, got {kind!r}")
    is_instance = dataclasses.is_dataclass(config) and not isinstance(config, type)
    data = dataclasses.asdict(config) if is_instance else dict(config)
    payload = {"config": data, **(dict(extra) if extra else {})}
    if kind is not None:
        payload["kind"] = kind
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
        ValueError: When the file is not JSON or holds no ``config`` mapping.
    """
    path = Path(run_dir) / CONFIG_FILE
    config = _read_config_file(path, run_dir).get("config")
    if not isinstance(config, Mapping):
        raise ValueError(f'{path} holds no "config" mapping; expected a config.json written by write_config')
    return dict(config)


def _read_config_file(path: Path, run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a run folder written by this script")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}); restore it from the run's checkpoint config"
        ) from err
    if not isinstance(payload, dict):
        raise ValueError(f"{path} holds a {type(payload).__name__}; expected a JSON object")
    return payload


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


def run_kind(run_dir: str | os.PathLike[str]) -> str:
    """The kind of run in ``run_dir`` (a key of :data:`RUN_KINDS`), read from its ``config.json``.

    A ``config.json`` written before the kind was recorded is recognized by its
    options: ``learner`` (paper REINFORCE / Q-learning runs), ``model`` (baselines),
    ``router`` (WPL runs).

    Raises:
        FileNotFoundError: When the folder holds no ``config.json``.
        ValueError: When the file names an unknown kind, or none and matches no kind.
    """
    path = Path(run_dir) / CONFIG_FILE
    payload = _read_config_file(path, run_dir)
    kind = payload.get("kind")
    if kind is not None:
        if kind not in RUN_KINDS:
            raise ValueError(f"{path} names the run kind {kind!r}; expected one of {sorted(RUN_KINDS)}")
        return str(kind)
    config = payload.get("config")
    if isinstance(config, Mapping):
        if "learner" in config:
            return "paper-agents"
        if "model" in config:
            return "baseline"
        if "router" in config:
            return "wpl"
    raise ValueError(
        f"{path} records no run kind and its options match none of {sorted(RUN_KINDS)}: "
        f"{run_dir} is not a run folder of {', '.join(RUN_KINDS.values())}"
    )


def check_run_kind(run_dir: str | os.PathLike[str], *, expected: str) -> None:
    """Raise unless ``run_dir`` holds a run of the kind ``expected`` (see :data:`RUN_KINDS`).

    Raises:
        ValueError: Naming the script that wrote the run, to resume it with.
    """
    if expected not in RUN_KINDS:
        raise ValueError(f"expected must be one of {sorted(RUN_KINDS)}, got {expected!r}")
    kind = run_kind(run_dir)
    if kind == expected:
        return
    if kind == "paper-agents":
        how = (
            f"{RUN_KINDS[kind]} wrote it (REINFORCE / Q-learning routers, no checkpoint) and trains it again "
            "when asked for more epochs"
        )
    else:
        how = f"resume it with: python {RUN_KINDS[kind]} --resume {run_dir}"
    raise ValueError(
        f"{run_dir} is a {kind} run, not a {expected} run that {RUN_KINDS[expected]} can resume; {how}. "
        "Nothing in the folder was changed."
    )


def check_checkpoint(
    checkpoint: Mapping[str, Any],
    *,
    run_dir: str | os.PathLike[str],
    kind: str,
    keys: Collection[str],
    config: Mapping[str, Any],
    may_change: Collection[str] = RESUMABLE_OPTIONS,
) -> None:
    """Check a run's checkpoint before anything is resumed from it.

    The checkpoint must hold ``epoch``, ``config`` and ``keys``, and its own saved config
    must equal ``config`` (the run's ``config.json``) in every option but ``may_change``:
    a hand-edited ``config.json`` (another ``data_seed``, learning rate, ...) would resume
    the saved weights on other data or settings without a word.

    Args:
        checkpoint: What :func:`load_checkpoint` returned.
        run_dir: The run folder (for the messages).
        kind: The run kind (a key of :data:`RUN_KINDS`) whose checkpoint this must be.
        keys: The entries the resuming script reads besides ``epoch`` and ``config``.
        config: The ``config`` of the run's ``config.json`` (:func:`read_config`).
        may_change: Options that may differ (default :data:`RESUMABLE_OPTIONS`).

    Raises:
        ValueError: Naming the missing entries, or the options that differ with both values.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    missing = [k for k in ("epoch", "config", *keys) if k not in checkpoint]
    if missing:
        raise ValueError(
            f"checkpoint {path} has no {', '.join(map(repr, missing))}: it is not a checkpoint of "
            f"{RUN_KINDS.get(kind, kind)}. Nothing in the folder was changed."
        )
    epoch = checkpoint["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"checkpoint {path} holds epoch {epoch!r}; expected an int >= 0")
    saved = checkpoint["config"]
    if not isinstance(saved, Mapping):
        raise ValueError(f"checkpoint {path} holds a config of type {type(saved).__name__}; expected a dict")
    differ = [
        f"{name}: {config[name]!r} in {CONFIG_FILE}, {saved[name]!r} in the checkpoint"
        for name in sorted(set(config) & set(saved))
        if name not in may_change and config[name] != saved[name]
    ]
    if differ:
        raise ValueError(
            f"{Path(run_dir) / CONFIG_FILE} does not match the checkpoint it would resume from ("
            + "; ".join(differ)
            + f"); was it edited by hand? Only {', '.join(sorted(may_change))} may differ. Put the "
            "checkpoint's values back to resume this run, or start a new run with the new settings."
        )


@dataclasses.dataclass
class RunFolder:
    """The run folder a training script writes into, held (locked) while it trains.

    Made by :func:`open_run`; a context manager that releases the folder's lock on exit.

    Attributes:
        path: The run folder.
        kind: The run kind (a key of :data:`RUN_KINDS`), recorded in ``config.json``.
        args: The arguments to train with: a new run's, or a resumed run's saved config
            with the options given on the command line (``epochs``: the last epoch this
            session trains to).
        checkpoint: The checkpoint a resumed run continues from (checked by
            :func:`check_checkpoint`); None for a new run.
        recorded_epochs: The ``epochs`` :meth:`write_config` records: on ``--resume``
            the larger of the run's recorded epochs and ``--epochs``, so that resuming
            with fewer epochs never lowers what the run was started for.
        lock: The folder's lock, held until :meth:`close`.
    """

    path: Path
    kind: str
    args: Any
    checkpoint: dict[str, Any] | None
    recorded_epochs: int
    lock: RunLock

    @property
    def start_epoch(self) -> int:
        """The epochs already trained (the checkpoint's), 0 for a new run."""
        return 0 if self.checkpoint is None else int(self.checkpoint["epoch"])

    @property
    def trains(self) -> bool:
        """Whether this session trains at least one epoch (``start_epoch < args.epochs``)."""
        return self.start_epoch < self.args.epochs

    def write_config(self, *, extra: Mapping[str, Any] | None = None) -> Path:
        """Write ``config.json``: ``args`` with ``recorded_epochs``, the kind and ``extra``."""
        config = dataclasses.replace(self.args, epochs=self.recorded_epochs)
        return write_config(self.path, config, kind=self.kind, extra=extra)

    def close(self) -> None:
        """Release the folder's lock."""
        self.lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_run(
    args: Any,
    *,
    kind: str,
    name: str,
    checkpoint_keys: Collection[str] = (),
    legacy_options: Mapping[str, Any] | None = None,
) -> RunFolder:
    """Claim a new run's folder, or check and lock a run to resume, before anything is written.

    A new run (``args.resume`` None) gets ``args.output_dir/name``, claimed atomically
    (:func:`claim_run_dir`). A resumed run (``args.resume`` a run folder) is checked in
    full first: its kind (:func:`check_run_kind`, naming the right script), the options
    given against its ``config.json`` (:func:`resume_args`), and its checkpoint
    (:func:`check_checkpoint`); on any error the folder is left as it was. Either way
    the folder stays locked (:class:`RunLock`) until the returned :class:`RunFolder` is
    closed, so that no second process trains into it meanwhile.

    Args:
        args: The script's arguments (a dataclass with ``resume``, ``output_dir``,
            ``epochs`` and, on resume, the saved options).
        kind: The script's run kind (a key of :data:`RUN_KINDS`).
        name: The new run's folder name (ignored on resume).
        checkpoint_keys: The checkpoint entries the script loads.
        legacy_options: Values of options added to the script after a run was written:
            a resumed run whose ``config.json`` lacks such an option continues with this
            value (what the script did then), not the option's current default.

    Raises:
        FileNotFoundError: When the folder to resume holds no config or no checkpoint.
        FileExistsError: When a new run's folder exists and is not empty.
        RunInUseError: When another process holds the folder.
        ValueError: On another kind of run, options that may not change, or a
            checkpoint that is corrupt or does not match the run's ``config.json``.
    """
    if kind not in RUN_KINDS:
        raise ValueError(f"kind must be one of {sorted(RUN_KINDS)}, got {kind!r}")
    resume = getattr(args, "resume", None)
    if resume is None:
        args = resolve_run_args(args)
        lock = claim_run_dir(args.output_dir, name, prefix=kind)
        return RunFolder(
            path=lock.run_dir,
            kind=kind,
            args=args,
            checkpoint=None,
            recorded_epochs=int(args.epochs),
            lock=lock,
        )
    run_dir = Path(resume)
    read_config(run_dir)  # a folder without a config is refused before a lock file is left in it
    check_run_kind(run_dir, expected=kind)
    lock = RunLock(run_dir).acquire()
    try:
        saved = read_config(run_dir)  # read again under the lock
        options = {**dict(legacy_options or {}), **saved}
        args = resolve_run_args(resume_args(args, options, may_change=RESUMABLE_OPTIONS))
        checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
        check_checkpoint(checkpoint, run_dir=run_dir, kind=kind, keys=checkpoint_keys, config=saved)
    except BaseException:
        lock.release()
        raise
    epochs = int(args.epochs)
    recorded = saved.get("epochs")
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        epochs = max(epochs, recorded)
    return RunFolder(
        path=run_dir, kind=kind, args=args, checkpoint=checkpoint, recorded_epochs=epochs, lock=lock
    )


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
        ValueError: When the file is corrupt or truncated, or holds objects that
            ``weights_only=True`` refuses to unpickle (nothing is changed on disk).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, pickle/zip errors, EOFError...
        if "Unsupported global" in str(err):  # a readable file naming code to run when unpickled
            raise ValueError(
                f"checkpoint {path} holds Python objects besides tensors and plain values; they are not "
                "loaded, since unpickling them could run any code (weights_only=True). It was not written "
                "by save_checkpoint, or was altered; it was left as it is"
            ) from err
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
