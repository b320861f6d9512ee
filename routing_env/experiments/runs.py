"""Run folders: claimed atomically, locked while a run writes into them, resumed after checks.

:func:`open_run` claims a new run's folder (:func:`claim_run_dir`), or checks a run to
resume in full (its kind, options and checkpoint: :func:`check_run_kind`,
:func:`resume_args`, :func:`check_checkpoint`) before anything is written, and holds the
folder under a :class:`RunLock` while it trains. ``config.json`` is written by
:func:`write_config` and read by :func:`read_config`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
import types
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

from routing_env.experiments._files import atomic_write_text
from routing_env.experiments.checkpoints import CHECKPOINT_FILE, load_checkpoint
from routing_env.experiments.devices import resolve_device

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_EPOCHS",
    "LOCK_FILE",
    "RENAMED_VALUES",
    "RESUMABLE_OPTIONS",
    "RUN_KINDS",
    "SUMMARY_FILE",
    "RunFolder",
    "RunInUseError",
    "RunLock",
    "check_checkpoint",
    "check_run_kind",
    "claim_run_dir",
    "create_run_dir",
    "open_run",
    "read_config",
    "resolve_run_args",
    "resume_args",
    "run_kind",
    "write_config",
    "with_current_names",
    "write_summary",
]

T = TypeVar("T")

#: A run folder's options (:func:`write_config`).
CONFIG_FILE = "config.json"
#: A run folder's final metrics (:func:`write_summary`).
SUMMARY_FILE = "summary.json"

LOCK_FILE = ".lock"
"""The lock file of a run folder (see :class:`RunLock`); it stays in the folder, unlocked, after a run."""

RUN_KINDS: Mapping[str, str] = types.MappingProxyType(
    {
        "wpl": "examples/train_wpl.py",
        "baseline": "examples/train_baseline.py",
        "paper-agents": "examples/train_wpl.py",
    }
)
"""The kinds of run folder (``config.json``'s ``"kind"``) and the script that resumes each.

``paper-agents`` runs (REINFORCE / Q-learning routers written by the paper scripts'
former in-process runner) hold ``train_wpl.py``'s checkpoint; ``train_wpl.py --resume``
continues them (new ones are ``train_wpl.py --learner`` runs, of kind ``wpl``)."""


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
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def write_summary(run_dir: str | os.PathLike[str], summary: Mapping[str, Any]) -> Path:
    """Write ``summary`` (final metrics of a run) as ``run_dir/summary.json``."""
    path = Path(run_dir) / SUMMARY_FILE
    atomic_write_text(path, json.dumps(dict(summary), indent=2) + "\n")
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


def run_kind(run_dir: str | os.PathLike[str]) -> str:
    """The kind of run in ``run_dir`` (a key of :data:`RUN_KINDS`), read from its ``config.json``.

    A ``config.json`` written before the kind was recorded is recognized by its
    options: ``learner`` and ``model`` (paper REINFORCE / Q-learning runs), ``model`` (baselines),
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
        if "learner" in config and "model" in config:  # train_wpl.py's own runs name no model
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

    def close(self, *, failed: bool = False) -> None:
        """Release the folder's lock; after a new run that ``failed`` before writing anything,
        remove its folder too, so that a run that never started leaves nothing behind."""
        empty = failed and self.checkpoint is None and self.path.is_dir() and not _holds_files(self.path)
        if empty:
            with contextlib.suppress(OSError):  # still held: nobody else can be starting in it
                (self.path / LOCK_FILE).unlink()
        self.lock.release()
        if empty:
            with contextlib.suppress(OSError):  # another run claimed it in between: it is theirs
                self.path.rmdir()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(failed=exc_type is not None)


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
        remove_stale_temp_files(run_dir)
        saved = with_current_names(read_config(run_dir))  # read again under the lock
        options = {**dict(legacy_options or {}), **saved}
        args = resolve_run_args(resume_args(args, options, may_change=RESUMABLE_OPTIONS))
        if not (run_dir / CHECKPOINT_FILE).exists() and not _finished_epochs(run_dir):
            # stopped in its first epoch, before any checkpoint: nothing of it to keep
            print(
                f"{run_dir} has no checkpoint and no finished epoch (it was stopped in its first epoch): "
                "starting it again from epoch 0 with its recorded options",
                file=sys.stderr,
            )
            return RunFolder(
                path=run_dir,
                kind=kind,
                args=args,
                checkpoint=None,
                recorded_epochs=int(args.epochs),
                lock=lock,
            )
        checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
        if isinstance(checkpoint.get("config"), Mapping):
            checkpoint["config"] = with_current_names(checkpoint["config"])
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


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Remove the temp files (``.NAME.*.tmp``) that a process killed mid-write left in ``run_dir``.

    Call it while holding the folder's lock: no write of another process can be under way.
    """
    stale = [p for p in run_dir.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _finished_epochs(run_dir: Path) -> bool:
    """Whether ``run_dir``'s metrics.csv holds a row (a finished epoch)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return False
    with path.open(encoding="utf-8", errors="replace") as fh:
        return sum(1 for line in fh if line.strip()) > 1


#: Option values renamed since runs were written, ``{option: {old name: name now}}``: the
#: same setting under its new name. A resumed run's ``config.json`` is read with the names of now.
RENAMED_VALUES: Mapping[str, Mapping[str, str]] = {
    "wpl_weighting": {"appendix": "abdallah-lesser", "algorithm3": "paper"},
}


def with_current_names(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a run's options) with the values of :data:`RENAMED_VALUES` under their names of now."""
    out = dict(config)
    for option, names in RENAMED_VALUES.items():
        value = out.get(option)
        if isinstance(value, str) and value in names:
            out[option] = names[value]
    return out
