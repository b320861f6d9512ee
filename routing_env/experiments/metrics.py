"""Per-epoch metrics of a run (``metrics.csv``), a plain-text summary table, TensorBoard.

:func:`metric_columns` and :func:`metrics_row` give one row of per-task train and test
accuracy per epoch, in one format for routing runs and baselines; :class:`MetricsCSV`
appends the rows, flushing each one.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from routing_env.experiments._files import DamagedFileError, temp_file
from routing_env.extras import install_command

__all__ = [
    "METRICS_FILE",
    "MetricsCSV",
    "drop_a_cut_last_row",
    "metric_columns",
    "metrics_row",
    "summary_table",
    "tensorboard_writer",
    "write_rows",
]

#: A run folder's metrics file.
METRICS_FILE = "metrics.csv"


def metric_columns(num_tasks: int, *, validation: bool = False, purity: bool = False) -> list[str]:
    """The columns of ``metrics.csv``: one row per epoch, overall then per-task accuracies.

    ``test_accuracy`` is the greedy policy's (argmax route) accuracy on the test split,
    ``test_accuracy_stochastic`` the sampled policy's (empty for baselines, which have
    no policy); ``train_accuracy`` counts the predictions made while training during the
    epoch. With ``validation``, ``validation_accuracy`` is the greedy accuracy on the
    validation split (what hyper-parameters are chosen on). With ``purity``,
    ``pure_fraction`` is the share of router agents whose policy is pure (largest
    probability >= 0.99 at every depth) after the epoch. Times are in seconds;
    ``wall_time_s`` adds up over resumed sessions.
    """
    kinds = ["train_accuracy", "test_accuracy", "test_accuracy_stochastic"]
    if validation:
        kinds.append("validation_accuracy")
    columns = ["epoch", "samples", "updates", "lr", *kinds]
    if purity:
        columns.append("pure_fraction")
    for kind in kinds:
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
    validation_accuracy_per_task: Sequence[float] | None = None,
    validation_accuracy: float | None = None,
    pure_fraction: float | None = None,
    epoch_time_s: float,
    wall_time_s: float,
) -> dict[str, Any]:
    """One row of :func:`metric_columns` (missing stochastic or validation accuracies are left empty)."""
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
    validation = (
        list(validation_accuracy_per_task) if validation_accuracy_per_task is not None else [None] * num_tasks
    )
    row: dict[str, Any] = {
        "epoch": epoch,
        "samples": samples,
        "updates": updates,
        "lr": lr,
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "test_accuracy_stochastic": test_accuracy_stochastic,
        "validation_accuracy": validation_accuracy,
        "pure_fraction": pure_fraction,
    }
    for kind, values in (
        ("train_accuracy", train_accuracy_per_task),
        ("test_accuracy", test_accuracy_per_task),
        ("test_accuracy_stochastic", stochastic),
        ("validation_accuracy", validation),
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
        optional: Columns of ``columns`` that an existing file may lack (a run written
            before they were added); its rows then go on without them.

    Raises:
        ValueError: When an existing file has another header, or a row misses a column.
    """

    def __init__(
        self, path: str | os.PathLike[str], columns: Sequence[str], *, optional: Sequence[str] = ()
    ) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        if self.path.exists() and self.path.stat().st_size > 0:
            self._drop_a_cut_last_row()
            with self.path.open(newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
            without = [c for c in self.columns if c not in optional]
            if header != self.columns and header == without:
                self.columns = without
            if header != self.columns:
                raise ValueError(f"{self.path} has columns {header[:4]}..., expected {self.columns[:4]}...")
        else:
            with self.path.open("w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(self.columns)

    def _drop_a_cut_last_row(self) -> None:
        drop_a_cut_last_row(self.path)

    def check_epochs(self, epochs: int) -> None:
        """Check that the rows hold every epoch 1..``epochs`` (those of a checkpoint after ``epochs``),
        each row with every column.

        Raises:
            ValueError: Naming the file and the line of a malformed row, or the epochs missing.
        """
        with self.path.open(newline="", encoding="utf-8") as fh:
            lines = list(csv.reader(fh))
        found = set()
        for number, fields in enumerate(lines[1:], start=2):
            if len(fields) != len(self.columns) or not fields[0].isdigit():
                raise DamagedFileError(
                    f"{self.path}, line {number}: {len(fields)} fields (expected {len(self.columns)}) "
                    f"starting {','.join(fields[:2])!r}; the file was damaged. Restore it from a copy, or "
                    "start the run again"
                )
            found.add(int(fields[0]))
        missing = sorted(set(range(1, epochs + 1)) - found)
        if missing:
            raise DamagedFileError(
                f"{self.path} lacks the rows of epochs {missing}, which the checkpoint has trained (after "
                f"epoch {epochs}); the file was damaged or replaced. Restore it from a copy, or start the "
                "run again"
            )

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
        fd, tmp = temp_file(self.path)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(lines)
        os.replace(tmp, self.path)


def drop_a_cut_last_row(path: str | os.PathLike[str]) -> bool:
    """A CSV whose last row lacks its line end was cut by a process stopped mid-write: truncate
    it back to its last complete row (atomically), say so on stderr, and return True.

    What the cut row recorded is done again by whoever appends next (an epoch trained
    again from its checkpoint, a sweep's run run again), instead of being misread.
    """
    path = Path(path)
    data = path.read_bytes() if path.is_file() else b""
    if not data or data.endswith(b"\n"):
        return False
    keep = data[: data.rfind(b"\n") + 1]
    fd, tmp = temp_file(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(keep)
    os.replace(tmp, path)
    cut = data[len(keep) :][:60]
    print(
        f"{path}: its last row was cut off (a process stopped while writing it): dropped {cut!r}",
        file=sys.stderr,
    )
    return True


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


def write_rows(
    path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], *, columns: Sequence[str] | None = None
) -> Path:
    """Write ``rows`` as a CSV table with a header (the scripts' result tables), creating the folder.

    Args:
        path: The CSV file (replaced).
        rows: One mapping per line.
        columns: The header, in order: keys of a row outside it are left out, missing
            ones written empty. Default: the first row's keys (every row must then have
            only those).

    Raises:
        ValueError: When there are no rows and no ``columns`` to make a header of, or
            (``columns`` not given) a row has a key the first one lacks.
    """
    path = Path(path)
    if columns is None and not rows:
        raise ValueError(f"no rows to write to {path} and no columns given for the header")
    header = list(rows[0]) if columns is None else list(columns)
    extras: Literal["raise", "ignore"] = "raise" if columns is None else "ignore"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, restval="", extrasaction=extras)
        writer.writeheader()
        writer.writerows(rows)
    return path


def tensorboard_writer(log_dir: str | os.PathLike[str], *, enabled: bool | None = True) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``, or None.

    None when ``enabled`` is False or TensorBoard is not installed. ``enabled=None`` logs
    when TensorBoard is installed and is quiet when it is not; ``True`` prints a one-line
    note naming the extra to install when it is not.
    """
    if enabled is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if enabled is None:
            return None
        print(
            "note: TensorBoard is not installed, logging to metrics.csv only "
            f"({install_command('tensorboard')} to enable it)",
            file=sys.stderr,
        )
        return None
    return SummaryWriter(log_dir=str(log_dir))
