"""Statistics over seeds for the paper-figure scripts: mean, spread and paired differences.

A figure's CSV holds one test accuracy per model, seed and epoch. For each model and
epoch this module gives the mean and the sample standard deviation over the seeds (and
their range); for a reference model (routing-all-fc) against each other model of the
figure, the paired difference per seed (reference minus other, the same seed number:
both runs train on the same data split, ``--data-seed`` being fixed, and start from the
same global seed), its mean and a 95% t-interval, with a note saying whether the seeds
can call it:

- fewer than 3 seeds: "too few seeds to call" (an interval from 2 differences has 1
  degree of freedom, its t quantile is 12.7: it says next to nothing);
- the interval spans 0: "no difference shown";
- otherwise the reference is "ahead" or "behind".

The t quantile is ``scipy.stats.t.ppf`` when SciPy is installed (scikit-learn brings
it), else a table of the two-sided 95% quantiles (df 1-30, then interpolated in 1/df
to the normal 1.96). All values are in percentage points of test accuracy.

This module is imported by ``paper_runs.py`` (the figure's ``_stats.csv`` and the bands
of its PNG) and ``table2.py`` (mean ± std cells and the paired-differences table).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Two-sided 95% quantiles of Student's t (``t.ppf(0.975, df)``) for df 1..30.
T95 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
#: Beyond df 30: (df, quantile) knots, interpolated linearly in 1/df; df = inf is the normal 1.96.
_T95_TAIL = ((30, 2.0423), (40, 2.0211), (60, 2.0003), (120, 1.9799), (math.inf, 1.9600))

#: The fewest seeds whose paired interval the notes call (below: "too few seeds to call").
MIN_SEEDS_TO_CALL = 3

#: Columns of a figure's ``_stats.csv``.
STATS_COLUMNS = [
    "figure",
    "dataset",
    "setting",
    "hidden_width",
    "policy_lr_schedule",
    "statistic",
    "model",
    "versus",
    "epoch",
    "n_seeds",
    "seeds",
    "values_pct",
    "mean_pct",
    "std_pct",
    "min_pct",
    "max_pct",
    "ci95_low_pct",
    "ci95_high_pct",
    "note",
]


def t_quantile_95(df: int, *, use_scipy: bool = True) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom.

    Args:
        df: Degrees of freedom (>= 1).
        use_scipy: Use ``scipy.stats.t`` when it is installed (else, or when False, the table).

    Raises:
        ValueError: When ``df`` < 1.
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be an int >= 1, got {df!r}")
    if use_scipy:
        try:
            from scipy.stats import t
        except ImportError:
            pass
        else:
            return float(t.ppf(0.975, df))
    if df <= len(T95):
        return T95[df - 1]
    for (d0, q0), (d1, q1) in zip(_T95_TAIL, _T95_TAIL[1:], strict=False):
        if d0 <= df <= d1:
            x, x0, x1 = 1 / df, 1 / d0, (0.0 if math.isinf(d1) else 1 / d1)
            return q1 + (q0 - q1) * (x - x1) / (x0 - x1)
    return _T95_TAIL[-1][1]  # unreachable: the last knot is infinite


@dataclass(frozen=True)
class Summary:
    """Mean and spread of one value over seeds (percentage points)."""

    n: int
    mean: float
    std: float | None
    """sample standard deviation (ddof 1); None for one seed"""
    min: float
    max: float


def summarize(values: Sequence[float]) -> Summary:
    """Mean, sample standard deviation and range of ``values`` (at least one).

    Raises:
        ValueError: When ``values`` is empty.
    """
    if not values:
        raise ValueError("nothing to summarize: no values")
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Summary(n=n, mean=mean, std=std, min=min(values), max=max(values))


@dataclass(frozen=True)
class PairedDifference:
    """``reference - other`` per seed (percentage points) and what the seeds can say about it."""

    reference: str
    other: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    std: float | None
    ci_low: float | None
    """95% t-interval of the mean difference (None below 2 seeds)"""
    ci_high: float | None
    note: str

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def called(self) -> bool:
        """Whether the seeds call a difference (enough seeds and an interval clear of 0)."""
        return self.note.endswith(("ahead", "behind"))


def paired_difference(
    reference: Mapping[int, float], other: Mapping[int, float], *, names: tuple[str, str] = ("A", "B")
) -> PairedDifference | None:
    """The difference ``reference[s] - other[s]`` over the seeds ``s`` both have.

    Args:
        reference: Value by seed of the reference model (percentage points).
        other: Value by seed of the model it is compared with.
        names: The two models' names, for the note.

    Returns:
        None when the two share no seed.
    """
    seeds = tuple(sorted(set(reference) & set(other)))
    if not seeds:
        return None
    diffs = tuple(reference[s] - other[s] for s in seeds)
    stats = summarize(diffs)
    low = high = None
    if stats.std is not None:
        half = t_quantile_95(stats.n - 1) * stats.std / math.sqrt(stats.n)
        low, high = stats.mean - half, stats.mean + half
    a, b = names
    if stats.n < MIN_SEEDS_TO_CALL:
        note = f"too few seeds to call (n={stats.n} < {MIN_SEEDS_TO_CALL})"
    elif low is not None and high is not None and low <= 0 <= high:
        note = "no difference shown: the 95% interval spans 0"
    else:
        note = f"{a} ahead" if stats.mean > 0 else f"{a} behind"
    return PairedDifference(
        reference=a,
        other=b,
        seeds=seeds,
        differences=diffs,
        mean=stats.mean,
        std=stats.std,
        ci_low=low,
        ci_high=high,
        note=note,
    )


def accuracy_by_seed(rows: Iterable[Mapping[str, Any]], model: str, epoch: int) -> dict[int, float]:
    """Greedy-route test accuracy (percentage points) of ``model`` at ``epoch``, by seed."""
    return {
        int(r["seed"]): 100 * float(r["test_accuracy"])
        for r in rows
        if r["model"] == model and int(r["epoch"]) == epoch and r["test_accuracy"] not in (None, "")
    }


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def figure_statistics(
    rows: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    *,
    reference: str = "routing-all-fc",
    context: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The rows of a figure's ``_stats.csv`` (:data:`STATS_COLUMNS`).

    For every model and epoch of ``rows`` (a figure's CSV rows): ``statistic`` "model"
    with the mean, standard deviation and range over seeds. For ``reference`` against
    every other model of ``models`` at every epoch both have: ``statistic``
    "paired_difference" with ``model`` the reference, ``versus`` the other, the per-seed
    differences, their mean, standard deviation, 95% t-interval and the note.

    Args:
        rows: The figure's CSV rows (``model``, ``seed``, ``epoch``, ``test_accuracy``).
        models: The figure's models, in its order.
        reference: The model every other one is compared with (skipped when absent).
        context: Values of the leading columns (``figure``, ``dataset``, ``setting``, ...).
    """
    base = {c: "" for c in STATS_COLUMNS} | dict(context or {})
    out: list[dict[str, Any]] = []
    epochs = sorted({int(r["epoch"]) for r in rows})
    for model in models:
        for epoch in epochs:
            by_seed = accuracy_by_seed(rows, model, epoch)
            if not by_seed:
                continue
            seeds = sorted(by_seed)
            s = summarize([by_seed[k] for k in seeds])
            out.append(
                base
                | {
                    "statistic": "model",
                    "model": model,
                    "epoch": epoch,
                    "n_seeds": s.n,
                    "seeds": ";".join(map(str, seeds)),
                    "values_pct": ";".join(_fmt(by_seed[k]) for k in seeds),
                    "mean_pct": _fmt(s.mean),
                    "std_pct": _fmt(s.std),
                    "min_pct": _fmt(s.min),
                    "max_pct": _fmt(s.max),
                }
            )
    if reference in models:
        for other in models:
            if other == reference:
                continue
            for epoch in epochs:
                diff = paired_difference(
                    accuracy_by_seed(rows, reference, epoch),
                    accuracy_by_seed(rows, other, epoch),
                    names=(reference, other),
                )
                if diff is None:
                    continue
                out.append(
                    base
                    | {
                        "statistic": "paired_difference",
                        "model": reference,
                        "versus": other,
                        "epoch": epoch,
                        "n_seeds": diff.n,
                        "seeds": ";".join(map(str, diff.seeds)),
                        "values_pct": ";".join(_fmt(d) for d in diff.differences),
                        "mean_pct": _fmt(diff.mean),
                        "std_pct": _fmt(diff.std),
                        "min_pct": _fmt(min(diff.differences)),
                        "max_pct": _fmt(max(diff.differences)),
                        "ci95_low_pct": _fmt(diff.ci_low),
                        "ci95_high_pct": _fmt(diff.ci_high),
                        "note": diff.note,
                    }
                )
    return out


def band(values: Sequence[float]) -> tuple[float, float, str] | None:
    """The band a PNG draws around the mean of ``values``: ``(low, high, kind)``.

    ``kind`` is ``"±1 std"`` (mean ± sample standard deviation) from 3 seeds on, and
    ``"min-max"`` (the range) for 2 seeds, where a standard deviation is one number from
    two; None for a single seed.
    """
    if len(values) < 2:
        return None
    s = summarize(values)
    if s.n >= MIN_SEEDS_TO_CALL and s.std is not None:
        return s.mean - s.std, s.mean + s.std, "±1 std"
    return s.min, s.max, "min-max"
