"""Recording the policy dynamics of router agents: a PettingZoo wrapper (paper section 5).

:class:`PolicyRecorder` wraps a routing AEC env and, while the agents train on it,
records for a sample of the routing decisions of each agent: the agent's action
probabilities at that depth (asked from the agent's own ``action_probs`` on the
observation it acted on, just before the env applies its action), the chosen block,
the rewards and the task. It also counts every training decision's block per
``(task, depth)`` (exact, constant memory). The env itself writes nothing and knows
nothing of the recorder; files are written only by :meth:`PolicyRecording.export`.

The recorder changes nothing about training: it forwards every call, draws no random
numbers and asks the policies only for probabilities (``action_probs`` does not change
a policy; a tabular agent merely notes the actions a depth allows, as ``act`` does).

Memory bound
------------
Decisions are recorded per agent for every ``every``-th sample the agent routes
(samples ``0, every, 2 * every, ...`` of that agent; all decisions of a recorded sample
are kept). With ``max_rows`` set, the buffer never holds more rows: when it is full and
``overflow="thin"`` (default) every other recorded sample is dropped and the interval
doubles, so the recording keeps spanning the whole run at an even spacing; with
``overflow="stop"`` further rows are dropped. A row costs ``80 + 4 * A`` bytes (``A``
actions): 100,000 rows of 10 actions take 12 MB.

Rows the recorder would keep but cannot (``overflow="stop"`` once full, or a buffer that
thinning cannot free, e.g. ``max_rows`` smaller than one sample of every agent) are
counted in ``dropped_rows``: the first one raises a :class:`RowsDroppedWarning` that says
how many rows fit and how to keep more, and the export says how many were lost (a ``#``
note on the CSV's first line, which :func:`load_recording` reads back; Parquet file
metadata).

Only training decisions are recorded (not those whose info has ``"eval"`` true, or the
``"mode": "eval"`` of other envs); evaluation passes through untouched.

Example::

    import routing_env
    from agents import MultiAgentRouter, train
    from routing_env.recording import PolicyRecorder

    env = routing_env.env()
    router = MultiAgentRouter.from_env(env, seed=0)
    recorder = PolicyRecorder(env, policies=router, every=10, max_rows=100_000)
    train(recorder, router, num_samples=14_380, seed=0)
    recording = recorder.recording          # in-memory columns (numpy arrays)
    x, probs = recording.policy("router_3", depth=0)
    recording.export("recording.csv")       # tidy CSV: one row per recorded decision

Shape legend: ``R`` recorded rows, ``A`` actions, ``T`` tasks, ``n`` depths.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import math
import os
import re
import warnings
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium
import numpy as np
from pettingzoo import AECEnv
from pettingzoo.utils import BaseWrapper

from routing_env.extras import import_extra
from routing_env.policy import ActionProbabilities  # re-exported: its home was this module

__all__ = [
    "COLUMNS",
    "COLUMN_DOCS",
    "ActionProbabilities",
    "PolicyRecorder",
    "PolicyRecording",
    "RowsDroppedWarning",
    "load_recording",
]


class RowsDroppedWarning(UserWarning):
    """A :class:`PolicyRecorder` has started dropping rows: its ``max_rows`` buffer is full."""


#: How the first line of an exported CSV marks a recording that lost rows (``# incomplete ...``).
_NOTE_PREFIX = "# incomplete recording: "
_PARQUET_DROPPED = b"routing_env.dropped_rows"
_PARQUET_MAX_ROWS = b"routing_env.max_rows"
_PARQUET_NOTE = b"routing_env.note"


#: The scalar columns of a recording, in CSV order; ``prob_0 .. prob_{A-1}`` follow.
COLUMNS: tuple[str, ...] = (
    "sample",
    "agent",
    "agent_sample",
    "task",
    "depth",
    "action",
    "reward",
    "collaboration_reward",
    "final_reward",
    "correct",
)

#: What each column of :data:`COLUMNS` holds.
COLUMN_DOCS: Mapping[str, str] = {
    "sample": "training samples completed through the recorder before this decision's sample (time axis)",
    "agent": "the agent that decided",
    "agent_sample": "samples this agent had started before this one (the agent's own time axis)",
    "task": "task id of the sample",
    "depth": "the observation's depth (0-based decision index; the dispatcher's is 0)",
    "action": "the chosen action (block index at this depth, PASS, or a router for the dispatcher)",
    "reward": "everything the env handed this agent for the decision (collaboration + final reward)",
    "collaboration_reward": "rho x selection frequency of the block (NaN when the info has none)",
    "final_reward": "+1/-1 on the last decision of a sample (0 before it; NaN when the info has none)",
    "correct": "1/0 on the last decision of a classification sample, -1 otherwise",
}

_INT_COLUMNS = ("sample", "agent", "agent_sample", "task", "depth", "action", "correct")
_FLOAT_COLUMNS = ("reward", "collaboration_reward", "final_reward")


# ============================================================== the recording
@dataclass(frozen=True)
class PolicyRecording:
    """Recorded routing decisions as columns: one entry per decision, ``R`` in all.

    Attributes:
        agent_names: Agent ids; the ``agent`` column indexes into them.
        columns: Arrays of length ``R`` named as in :data:`COLUMNS` (``agent`` holds
            indices into ``agent_names``; ``correct`` is -1 where it does not apply).
        probs_RA: ``float32`` action probabilities of each decision (NaN past an agent's
            action space, or when the recorder had no policy for the agent).
        dropped_rows: Rows the recorder could not keep because its buffer was full
            (0: the recording is complete for its sampling interval).
        max_rows: The recorder's bound on rows (None: none, or not known).
    """

    agent_names: tuple[str, ...]
    columns: Mapping[str, np.ndarray]
    probs_RA: np.ndarray
    dropped_rows: int = 0
    max_rows: int | None = None

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.columns]
        if missing:
            raise ValueError(f"a recording needs the columns {list(COLUMNS)}; missing {missing}")
        lengths = {len(self.columns[c]) for c in COLUMNS} | {len(self.probs_RA)}
        if len(lengths) != 1:
            raise ValueError(f"recording columns have different lengths: {sorted(lengths)}")
        if self.probs_RA.ndim != 2:
            raise ValueError(f"probs_RA must be 2-d (rows x actions), got shape {self.probs_RA.shape}")

    def __len__(self) -> int:
        return int(len(self.probs_RA))

    @property
    def note(self) -> str | None:
        """What an export says about rows lost to a full buffer (None when none were)."""
        if not self.dropped_rows:
            return None
        return (
            f"dropped_rows={self.dropped_rows} rows were not recorded because the recorder's buffer "
            f"(max_rows={self.max_rows}) was full; record again with a larger max_rows or max_rows=None "
            "(or a larger every) to keep them"
        )

    @property
    def num_actions(self) -> int:
        """``A``: the number of probability columns."""
        return int(self.probs_RA.shape[1])

    def __getitem__(self, name: str) -> np.ndarray:
        """A column by name; ``"agent"`` gives the agent ids as strings."""
        if name == "agent":
            return np.asarray(self.agent_names, dtype=object)[self.columns["agent"]]
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns: {list(COLUMNS)}")
        return self.columns[name]

    def agent_index(self, agent: str) -> int:
        try:
            return self.agent_names.index(agent)
        except ValueError:
            raise KeyError(f"agent {agent!r} was not recorded; recorded: {list(self.agent_names)}") from None

    def rows(self, *, agent: str | None = None, depth: int | None = None) -> np.ndarray:
        """Indices of the rows of ``agent`` (all agents if None) at ``depth`` (all if None)."""
        keep = np.ones(len(self), dtype=bool)
        if agent is not None:
            keep &= self.columns["agent"] == self.agent_index(agent)
        if depth is not None:
            keep &= self.columns["depth"] == depth
        return np.flatnonzero(keep)

    def policy(
        self, agent: str, *, depth: int, x: Literal["agent_sample", "sample"] = "agent_sample"
    ) -> tuple[np.ndarray, np.ndarray]:
        """The recorded policy of ``agent`` at ``depth`` over time (paper Fig. 9).

        Args:
            agent: The agent id.
            depth: The decision depth.
            x: The time axis: samples seen by the agent, or samples seen by all agents.

        Returns:
            ``(x_R, probs_RA)``: the time of each recorded decision and its probabilities.
        """
        idx = self.rows(agent=agent, depth=depth)
        return self.columns[x][idx], self.probs_RA[idx]

    def block_usage(
        self, *, num_tasks: int | None = None, num_depths: int | None = None, until: int | None = None
    ) -> np.ndarray:
        """Counts of the chosen actions per ``(task, depth, action)`` in the recorded rows.

        Only router decisions (agents whose id does not start with ``dispatcher``) count.

        Args:
            num_tasks: Tasks of the result (default: as recorded).
            num_depths: Depths of the result (default: as recorded).
            until: Only rows with ``sample < until``.

        Returns:
            An ``int64`` array ``T x n x A``.
        """
        keep = ~np.isin(self.columns["agent"], self._dispatcher_ids())
        if until is not None:
            keep &= self.columns["sample"] < until
        t, d, a = (self.columns[c][keep] for c in ("task", "depth", "action"))
        T = num_tasks if num_tasks is not None else int(t.max(initial=-1)) + 1
        n = num_depths if num_depths is not None else int(d.max(initial=-1)) + 1
        usage = np.zeros((T, n, self.num_actions), dtype=np.int64)
        np.add.at(usage, (t, d, a), 1)
        return usage

    def routing_map(
        self, *, at: int | None = None, window: int = 1, num_tasks: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The block each task favours at each depth (paper Fig. 11).

        For each ``(task, depth)`` the recorded action probabilities of the last
        ``window`` recorded router decisions with ``sample <= at`` are averaged; the map
        holds the most probable action and its mean probability. With tabular per-task
        agents and ``window=1`` this is the argmax of each agent's policy at time ``at``.

        Args:
            at: Time (the ``sample`` column); None: the end of the recording.
            window: Recorded decisions averaged per ``(task, depth)`` (>= 1).
            num_tasks: Number of tasks (default: as recorded).

        Returns:
            ``(blocks_Tn, probability_Tn)``; -1 and NaN where a task has no recorded
            decision at that depth by then.

        Raises:
            ValueError: When ``window < 1``.
        """
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        keep = ~np.isin(self.columns["agent"], self._dispatcher_ids())
        if at is not None:
            keep &= self.columns["sample"] <= at
        tasks, depths = self.columns["task"], self.columns["depth"]
        T = num_tasks if num_tasks is not None else int(tasks.max(initial=-1)) + 1
        n = int(depths.max(initial=-1)) + 1
        blocks = np.full((T, n), -1, dtype=np.int64)
        share = np.full((T, n), np.nan)
        for t in range(T):
            for d in range(n):
                idx = np.flatnonzero(keep & (tasks == t) & (depths == d))[-window:]
                if len(idx) == 0:
                    continue
                mean = np.nanmean(self.probs_RA[idx].astype(np.float64), axis=0)
                if np.all(np.isnan(mean)):  # no probabilities: use the chosen actions
                    mean = np.bincount(self.columns["action"][idx], minlength=self.num_actions) / len(idx)
                blocks[t, d] = int(np.nanargmax(mean))
                share[t, d] = float(mean[blocks[t, d]])
        return blocks, share

    def _dispatcher_ids(self) -> np.ndarray:
        return np.array(
            [i for i, a in enumerate(self.agent_names) if a.startswith("dispatcher")], dtype=np.int64
        )

    # ----------------------------------------------------------- export
    def records(self) -> Iterator[dict[str, Any]]:
        """One dict per recorded decision (agent as its id, probabilities as ``prob_i``)."""
        names = self.agent_names
        cols = {c: self.columns[c].tolist() for c in COLUMNS}
        probs = self.probs_RA.tolist()
        for r in range(len(self)):
            row: dict[str, Any] = {c: cols[c][r] for c in COLUMNS}
            row["agent"] = names[row["agent"]]
            row.update({f"prob_{a}": p for a, p in enumerate(probs[r])})
            yield row

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write the recording to ``path``: CSV (gzip-compressed when ``path`` ends in
        ``.gz``, e.g. ``recording.csv.gz``), or Parquet when it ends in ``.parquet``.

        The CSV is tidy: one row per recorded decision, the columns of :data:`COLUMNS`
        then ``prob_0 .. prob_{A-1}``; empty cells mark missing values (NaN, and
        ``correct`` where it does not apply). Probabilities keep 6 significant digits.

        A recording that lost rows to a full buffer (``dropped_rows > 0``) says so: the
        CSV's first line is a note, ``# incomplete recording: dropped_rows=N ...``, before
        the header (:meth:`load` reads it back; with pandas pass ``comment="#"``), and a
        Parquet file carries it in its metadata (``routing_env.note``).

        Raises:
            ImportError: For Parquet when pyarrow is not installed (naming the extra ``parquet``).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".parquet":
            self._export_parquet(path)
            return path
        header = [*COLUMNS, *(f"prob_{a}" for a in range(self.num_actions))]
        cols = {c: self.columns[c].tolist() for c in COLUMNS}
        probs = self.probs_RA.tolist()
        text = io.StringIO(newline="")
        if self.note is not None:
            text.write(_NOTE_PREFIX + self.note + "\r\n")
        writer = csv.writer(text)
        writer.writerow(header)
        for r in range(len(self)):
            row = [_cell(c, cols[c][r]) for c in COLUMNS]
            row[1] = self.agent_names[cols["agent"][r]]
            row.extend("" if math.isnan(p) else f"{p:.6g}" for p in probs[r])
            writer.writerow(row)
        data = text.getvalue().encode("utf-8")
        # mtime=0 and no file name in the header: the same recording gives the same bytes
        path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
        return path

    def _export_parquet(self, path: Path) -> None:
        pq = import_extra(
            "pyarrow.parquet",
            feature="writing Parquet",
            extra="parquet",
            package="pyarrow",
            instead="export to a .csv path",
        )
        pa = import_extra("pyarrow", feature="writing Parquet", extra="parquet", package="pyarrow")
        data: dict[str, Any] = {c: self[c] if c == "agent" else self.columns[c] for c in COLUMNS}
        data["agent"] = data["agent"].astype(str)
        data.update({f"prob_{a}": self.probs_RA[:, a] for a in range(self.num_actions)})
        table = pa.table(data)
        if self.note is not None:
            table = table.replace_schema_metadata(
                {
                    _PARQUET_DROPPED: str(self.dropped_rows).encode(),
                    _PARQUET_MAX_ROWS: str(self.max_rows).encode(),
                    _PARQUET_NOTE: (_NOTE_PREFIX[2:] + self.note).encode(),
                }
            )
        pq.write_table(table, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PolicyRecording:
        """Read a recording written by :meth:`export` (CSV, ``.csv.gz`` or Parquet).

        Raises:
            FileNotFoundError: When ``path`` does not exist.
            ValueError: When the file lacks a column of :data:`COLUMNS`.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no recording at {path}")
        try:
            return cls._read(path)
        except (OSError, EOFError, csv.Error, UnicodeDecodeError, IndexError, KeyError, ValueError) as err:
            if str(path) in str(err):  # says which file already
                raise
            raise ValueError(
                f"cannot read the recording {path} ({type(err).__name__}: {err}): it is damaged or not a "
                "recording written by PolicyRecording.export"
            ) from err

    @classmethod
    def _read(cls, path: Path) -> PolicyRecording:
        if path.suffix == ".parquet":
            pq = import_extra(
                "pyarrow.parquet", feature="reading Parquet", extra="parquet", package="pyarrow"
            )
            arrow = pq.read_table(path)
            meta = arrow.schema.metadata or {}
            note = meta[_PARQUET_NOTE].decode() if _PARQUET_NOTE in meta else ""
            table = arrow.to_pydict()
            header = list(table)
            raw = {k: ["" if v is None else str(v) for v in table[k]] for k in header}
        else:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8", newline="") as fh:
                first = fh.readline()
                note = first if first.startswith("#") else ""
                reader = csv.reader(fh if note else itertools.chain([first], fh))
                header = next(reader, [])
                body = list(reader)
            raw = {k: [row[i] for row in body] for i, k in enumerate(header)}
        dropped = re.search(r"dropped_rows=(\d+)", note)
        max_rows = re.search(r"max_rows=(\d+)", note)
        missing = [c for c in COLUMNS if c not in raw]
        if missing:
            raise ValueError(f"{path} is not a policy recording: missing columns {missing}")
        agents = raw["agent"]
        names = tuple(sorted(set(agents), key=_agent_order))
        index = {a: i for i, a in enumerate(names)}
        columns: dict[str, np.ndarray] = {"agent": np.array([index[a] for a in agents], dtype=np.int64)}
        for c in _INT_COLUMNS:
            if c != "agent":
                columns[c] = np.array([int(v) if v != "" else -1 for v in raw[c]], dtype=np.int64)
        for c in _FLOAT_COLUMNS:
            columns[c] = np.array([float(v) if v != "" else np.nan for v in raw[c]], dtype=np.float64)
        prob_cols = sorted((k for k in header if k.startswith("prob_")), key=lambda k: int(k[5:]))
        probs = np.array(
            [[float(v) if v != "" else np.nan for v in raw[k]] for k in prob_cols], dtype=np.float32
        ).T.reshape(len(agents), len(prob_cols))
        return cls(
            agent_names=names,
            columns=columns,
            probs_RA=probs,
            dropped_rows=int(dropped.group(1)) if dropped else 0,
            max_rows=int(max_rows.group(1)) if max_rows else None,
        )


def load_recording(path: str | os.PathLike[str]) -> PolicyRecording:
    """Read a recording written by :meth:`PolicyRecording.export` (see :meth:`PolicyRecording.load`)."""
    return PolicyRecording.load(path)


def _agent_order(agent: str) -> tuple[str, int, str]:
    """Sort ``dispatcher_0, router_0, router_1, ..., router_10`` as the env lists them."""
    prefix, _, number = agent.rpartition("_")
    if number.isdigit():
        return (prefix, int(number), "")
    return (agent, -1, agent)


def _cell(column: str, value: Any) -> str:
    if column == "correct":
        return "" if value < 0 else str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


# ============================================================== the buffer
class _Buffer:
    """Growable columns (doubling, capped at ``max_rows``)."""

    def __init__(self, num_actions: int, max_rows: int | None) -> None:
        self.num_actions = num_actions
        self.max_rows = max_rows
        self.size = 0
        capacity = 1024 if max_rows is None else min(1024, max_rows)
        self.cols = {c: np.zeros(capacity, dtype=np.int64) for c in _INT_COLUMNS}
        self.cols.update({c: np.zeros(capacity, dtype=np.float64) for c in _FLOAT_COLUMNS})
        self.probs = np.zeros((capacity, num_actions), dtype=np.float32)

    @property
    def full(self) -> bool:
        return self.max_rows is not None and self.size >= self.max_rows

    def append(self, values: Mapping[str, float | int], probs: np.ndarray) -> int:
        if self.size == len(self.probs):
            capacity = 2 * self.size if self.max_rows is None else min(2 * self.size, self.max_rows)
            self.cols = {c: _grow(v, capacity) for c, v in self.cols.items()}
            self.probs = _grow(self.probs, capacity)
        r = self.size
        for c, v in values.items():
            self.cols[c][r] = v
        self.probs[r] = probs
        self.size += 1
        return r

    def keep(self, keep_R: np.ndarray) -> np.ndarray:
        """Keep the rows where ``keep_R``; return the new index of every old row (-1: dropped)."""
        new_index = np.full(self.size, -1, dtype=np.int64)
        idx = np.flatnonzero(keep_R)
        new_index[idx] = np.arange(len(idx))
        for v in self.cols.values():
            v[: len(idx)] = v[idx]
        self.probs[: len(idx)] = self.probs[idx]
        self.size = len(idx)
        return new_index


def _grow(array: np.ndarray, capacity: int) -> np.ndarray:
    out = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    out[: len(array)] = array
    return out


# ============================================================== the wrapper
class PolicyRecorder(BaseWrapper[str, dict[str, Any], int]):
    """Records the agents' policies, choices, rewards and block usage while they train.

    Wrap the env the agents train on and drive the wrapper instead (e.g. pass it to
    :func:`agents.train`). On each decision of a recorded sample the recorder asks the
    acting agent's policy for ``action_probs(observation)``, forwards the action, and
    stores one row (see :data:`COLUMNS`); the ``reward`` of a row sums what the env
    hands the agent until its next decision or the end of its sample (so the
    dispatcher's row gets the final reward of the sample it dispatched).

    Args:
        env: The routing AEC env (``routing_env.env(...)``, or any AEC env whose infos
            carry ``task``/``depth``/``sample_done`` and whose observations are dicts with
            ``depth``).
        policies: The acting policy of each agent, by agent id (e.g. an
            :class:`agents.MultiAgentRouter`); only asked for ``action_probs``. None
            records choices and rewards without probabilities.
        agents: The agent ids to record (default: those of ``policies``, or all
            agents when ``policies`` is None).
        every: Record every ``every``-th sample of each agent (>= 1).
        max_rows: The most rows held (>= 1), or None for no bound (see the module
            docstring for the memory a row costs).
        overflow: What happens when ``max_rows`` is reached: ``"thin"`` drops every
            other recorded sample and doubles ``every``; ``"stop"`` records nothing more.
            Rows that cannot be kept either way are counted in ``dropped_rows``; the
            first raises a :class:`RowsDroppedWarning`, and exports say how many.

    Raises:
        TypeError: When ``env`` is not an AEC env or a policy has no ``action_probs``.
        ValueError: On an unknown agent id, ``every`` or ``max_rows`` below 1, or an
            unknown ``overflow``.

    Attributes:
        every: The current sampling interval (doubles on each thinning).
        dropped_rows: Rows the ``every`` interval selected but the full buffer could not
            keep (the rest of a sample whose first row was dropped counts too).
        usage_TnA: Exact counts of every recorded agent's training decisions per
            ``(task, depth, action)``, over all samples (not only the recorded ones);
            router decisions only (decisions whose info carries a ``depth``).
        samples_seen: Training samples completed through the recorder.
    """

    def __init__(
        self,
        env: AECEnv,
        *,
        policies: Mapping[str, ActionProbabilities] | None = None,
        agents: Collection[str] | None = None,
        every: int = 1,
        max_rows: int | None = 100_000,
        overflow: Literal["thin", "stop"] = "thin",
    ) -> None:
        if not isinstance(env, AECEnv):
            raise TypeError(f"PolicyRecorder wraps a PettingZoo AECEnv, got {type(env).__name__}")
        super().__init__(env)
        self._raw = env.unwrapped
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        if max_rows is not None and (
            isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or max_rows < 1
        ):
            raise ValueError(f"max_rows must be an int >= 1 or None, got {max_rows!r}")
        if overflow not in ("thin", "stop"):
            raise ValueError(f"overflow must be 'thin' or 'stop', got {overflow!r}")
        possible = list(env.possible_agents)
        policies = dict(policies) if policies is not None else {}
        for agent_id, policy in policies.items():
            if not callable(getattr(policy, "action_probs", None)):
                raise TypeError(
                    f"the policy of {agent_id!r} must have an action_probs(obs) method, "
                    f"got {type(policy).__name__}"
                )
        recorded = list(agents) if agents is not None else (list(policies) if policies else possible)
        unknown = sorted(set(recorded) - set(possible)) + sorted(set(policies) - set(possible))
        if unknown:
            raise ValueError(f"unknown agent ids {unknown}; the env's agents are {possible}")
        if not recorded:
            raise ValueError("no agent to record: pass policies or agents")
        self.policies = policies
        self.recorded_agents = tuple(a for a in possible if a in set(recorded))
        self._agent_ids = {a: i for i, a in enumerate(self.recorded_agents)}
        self.initial_every = int(every)
        self.every = int(every)
        self.max_rows = None if max_rows is None else int(max_rows)
        self.overflow = overflow
        sizes = [_space_size(env.action_space(a)) for a in self.recorded_agents]
        num_actions = max(sizes)
        obs_space = env.observation_space(self.recorded_agents[0])
        num_tasks = _dict_entry_size(obs_space, "task")
        num_depths = _dict_entry_size(obs_space, "depth")
        self.usage_TnA = np.zeros((num_tasks or 1, num_depths or 1, num_actions), dtype=np.int64)
        self._buffer = _Buffer(num_actions, self.max_rows)
        self.dropped_rows = 0
        self.samples_seen = 0
        self._agent_samples = dict.fromkeys(self.recorded_agents, 0)
        self._recording_sample = dict.fromkeys(self.recorded_agents, False)
        self._dropping_sample = dict.fromkeys(self.recorded_agents, False)  # selected, but no room
        self._warned_dropping = False
        self._open_rows: dict[str, int] = {}  # agent -> row still collecting rewards

    # -------------------------------------------------------------- AEC API
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        self._open_rows.clear()
        self._recording_sample = dict.fromkeys(self.recorded_agents, False)
        self._dropping_sample = dict.fromkeys(self.recorded_agents, False)
        self.env.reset(seed=seed, options=options)

    def step(self, action: int | None) -> None:
        # state is read from the unwrapped env: this runs on every decision, and each
        # attribute read through a wrapper chain costs a __getattr__ per wrapper
        raw = self._raw
        agent = raw.agent_selection
        dead = raw.terminations.get(agent, False) or raw.truncations.get(agent, False)
        if dead or action is None or agent not in self._agent_ids:
            self.env.step(action)
            self._collect_rewards()
            return
        state = raw.observe(agent)
        depth = int(state["depth"]) if isinstance(state, Mapping) and "depth" in state else 0
        new_sample = depth == 0
        # whether this decision belongs to a recorded sample (decided on its first decision);
        # a sample the interval selects while a stopped buffer is full is dropped, and counted
        if new_sample:
            selected = self._agent_samples[agent] % self.every == 0
            dropping = selected and self.overflow == "stop" and self._buffer.full
            record = selected and not dropping
        else:
            record, dropping = self._recording_sample[agent], self._dropping_sample[agent]
        obs = probs = None
        if record:
            obs = self.env.observe(agent)  # what the agent acts on (through any inner wrapper)
            probs = self._probs(agent, obs)
        self._open_rows.pop(agent, None)  # a new decision: the previous one's rewards are complete
        self.env.step(action)
        info = raw.infos.get(agent, {})
        if not (info.get("eval", False) or info.get("mode") == "eval"):
            if new_sample:
                self._agent_samples[agent] += 1
                self._recording_sample[agent] = record
                self._dropping_sample[agent] = dropping
            if "depth" in info:
                self._count_usage(info, int(action))
            if record:
                self._add_row(agent, depth, int(action), info, obs, probs)
            elif dropping:
                self._drop_row()
            if info.get("sample_done") and "depth" in info:
                self.samples_seen += 1
        if info.get("sample_done"):
            self._recording_sample[agent] = False
            self._dropping_sample[agent] = False
        self._collect_rewards()

    # ------------------------------------------------------------ recording
    def _drop_row(self) -> None:
        """Count a row the full buffer cannot keep; warn on the first."""
        self.dropped_rows += 1
        if self._warned_dropping:
            return
        self._warned_dropping = True
        if self.overflow == "stop":
            why = "overflow='stop' keeps the first rows and drops the rest"
        else:
            why = (
                "thinning cannot free a row: every row held belongs to a sample that a doubled interval "
                "keeps (e.g. the first sample of each agent)"
            )
        warnings.warn(
            f"PolicyRecorder: its buffer of max_rows={self.max_rows} rows is full and rows are now being "
            f"dropped ({why}). A recorded sample takes one row per decision for each of the "
            f"{len(self.recorded_agents)} recorded agents: pass a larger max_rows, max_rows=None or a larger "
            "every to keep them. recorder.dropped_rows counts the rows lost, and an export notes them.",
            RowsDroppedWarning,
            stacklevel=4,
        )

    def _probs(self, agent: str, obs: Any) -> np.ndarray:
        probs = np.full(self._buffer.num_actions, np.nan, dtype=np.float32)
        policy = self.policies.get(agent)
        if policy is not None:
            p = np.asarray(policy.action_probs(obs), dtype=np.float32).reshape(-1)
            probs[: len(p)] = p
        return probs

    def _add_row(
        self,
        agent: str,
        depth: int,
        action: int,
        info: Mapping[str, Any],
        obs: Any,
        probs: np.ndarray | None,
    ) -> None:
        if self._buffer.full and not self._make_room():
            self._recording_sample[agent] = False
            self._dropping_sample[agent] = True  # the rest of this sample is dropped too
            self._drop_row()
            return
        if not self._recording_sample[agent]:  # thinned away while making room
            return
        task = info.get("task", obs.get("task", -1) if isinstance(obs, Mapping) else -1)
        correct = info.get("correct")
        values = {
            "sample": self.samples_seen,
            "agent": self._agent_ids[agent],
            "agent_sample": self._agent_samples[agent] - 1,
            "task": int(task),
            "depth": depth,
            "action": action,
            "reward": 0.0,
            "collaboration_reward": float(info.get("collaboration_reward", np.nan)),
            "final_reward": float(info.get("final_reward", np.nan)),
            # None or -1: nothing judged (the routing env reports -1, other envs may say None)
            "correct": -1 if correct is None or int(correct) < 0 else int(bool(correct)),
        }
        assert probs is not None
        self._open_rows[agent] = self._buffer.append(values, probs)

    def _make_room(self) -> bool:
        """Thin the buffer (``overflow="thin"``); return whether a row can be added."""
        if self.overflow == "stop":
            return False
        buf = self._buffer
        while buf.full:
            keep = buf.cols["agent_sample"][: buf.size] % (2 * self.every) == 0
            if keep.all():  # nothing to thin (every row is a multiple of the new interval)
                return False
            self.every *= 2
            new_index = buf.keep(keep)
            self._open_rows = {a: int(new_index[r]) for a, r in self._open_rows.items() if new_index[r] >= 0}
            for a in self.recorded_agents:  # samples in progress follow the new interval
                if self._recording_sample[a] and (self._agent_samples[a] - 1) % self.every != 0:
                    self._recording_sample[a] = False
        return True

    def _collect_rewards(self) -> None:
        if not self._open_rows:
            return
        raw = self._raw
        rewards, infos = raw.rewards, raw.infos
        reward_col = self._buffer.cols["reward"]
        for agent, row in list(self._open_rows.items()):
            reward_col[row] += float(rewards.get(agent, 0.0))
            done = raw.terminations.get(agent, False) or raw.truncations.get(agent, False)
            if done or infos.get(agent, {}).get("sample_done"):
                del self._open_rows[agent]

    def _count_usage(self, info: Mapping[str, Any], action: int) -> None:
        t, d = int(info.get("task", 0)), int(info["depth"])
        usage = self.usage_TnA
        if 0 <= t < usage.shape[0] and 0 <= d < usage.shape[1] and 0 <= action < usage.shape[2]:
            usage[t, d, action] += 1

    # --------------------------------------------------------------- access
    @property
    def recording(self) -> PolicyRecording:
        """A snapshot of the recorded rows (copies: later recording does not change it)."""
        buf = self._buffer
        columns = {c: v[: buf.size].copy() for c, v in buf.cols.items()}
        return PolicyRecording(
            agent_names=self.recorded_agents,
            columns=columns,
            probs_RA=buf.probs[: buf.size].copy(),
            dropped_rows=self.dropped_rows,
            max_rows=self.max_rows,
        )

    @property
    def num_rows(self) -> int:
        """Rows held now (at most ``max_rows``)."""
        return self._buffer.size

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write the recording (CSV, or Parquet for a ``.parquet`` path); see :meth:`PolicyRecording.export`."""
        return self.recording.export(path)

    def clear(self) -> None:
        """Drop every recorded row and count (the sampling interval is kept)."""
        self._buffer = _Buffer(self._buffer.num_actions, self.max_rows)
        self.usage_TnA[:] = 0
        self.dropped_rows = 0
        self._warned_dropping = False
        self._dropping_sample = dict.fromkeys(self.recorded_agents, False)
        self._open_rows.clear()


def _space_size(space: gymnasium.Space) -> int:
    if isinstance(space, gymnasium.spaces.Discrete):
        return int(space.n)
    raise TypeError(f"PolicyRecorder records Discrete action spaces, got {space!r}")


def _dict_entry_size(space: gymnasium.Space, key: str) -> int | None:
    entry = space.spaces.get(key) if isinstance(space, gymnasium.spaces.Dict) else None
    return int(entry.n) if isinstance(entry, gymnasium.spaces.Discrete) else None
