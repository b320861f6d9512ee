"""Stability as a number: how far each model's accuracy falls from one epoch to the next.

Reads a figure's CSV (one row per model, seed and epoch, as the figure scripts write it)
and prints, per model, as a Markdown table:

- the largest drop in greedy-route test accuracy from one epoch to the next after epoch
  ``--after`` (over every seed: the worst of them), and its mean over seeds;
- the spread over seeds at the last epoch (sample standard deviation, and max - min);
- for routed models with a recorded ``pure_fraction``, its lowest value after ``--after``
  (a drop while agents are mixed can come from near-tied greedy routes flipping);
- the same largest drop on the validation split, where the CSV has it.

A model is as stable as another when its drops are as small: the paper's claim that WPL
"dampens oscillation" is about the routers' policies, and this is what it does to the
accuracy. With ``--output FILE --block NAME`` the table replaces the block of FILE
between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` (as ``epoch_table.py`` does)::

    python examples/paper/stability.py \\
        --csv docs/results/fig08_routing_vs_baselines_fashion-mtl_paper-setting.csv --after 10
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from paper_runs import read_csv
from table2 import markers, replace_block

from routing_env.experiments import parse_args

SCRIPT = "examples/paper/stability.py"


@dataclass
class Args:
    """Per model: the largest epoch-to-epoch drop in accuracy after an epoch, and the spread over seeds."""

    csv: str
    """a figure's CSV (e.g. docs/results/fig08_routing_vs_baselines_fashion-mtl_paper-setting.csv)"""
    after: int = 10
    """count the drops from this epoch on (a drop into epoch e, e > --after)"""
    output: str | None = None
    """Markdown file whose block (see --block) to replace (none: print the table)"""
    block: str = ""
    """name of the block of --output to replace"""

    def __post_init__(self) -> None:
        if self.after < 0:
            raise ValueError(f"--after must be >= 0, got {self.after}")
        if self.output is not None:
            if not self.block:
                raise ValueError("--output needs --block NAME: the block of the file to replace")
            markers(self.block)


def series(rows: Sequence[Mapping[str, str]], model: str, key: str) -> dict[int, dict[int, float]]:
    """``{seed: {epoch: value}}`` of column ``key`` (percentage points) for ``model``."""
    out: dict[int, dict[int, float]] = {}
    for r in rows:
        if r["model"] == model and r.get(key) not in (None, ""):
            out.setdefault(int(r["seed"]), {})[int(r["epoch"])] = 100 * float(r[key])
    return out


def drops(by_epoch: Mapping[int, float], after: int) -> list[float]:
    """The falls ``value[e - 1] - value[e]`` (positive: a drop) for every epoch ``e > after`` with both."""
    return [by_epoch[e - 1] - by_epoch[e] for e in sorted(by_epoch) if e > after and e - 1 in by_epoch]


def stability_rows(rows: Sequence[Mapping[str, str]], after: int) -> list[dict[str, object]]:
    """One row per model: its largest drop after ``after`` (worst seed, and mean over seeds), spread at the end."""
    out: list[dict[str, object]] = []
    for model in dict.fromkeys(r["model"] for r in rows):
        test = series(rows, model, "test_accuracy")
        per_seed = {s: drops(v, after) for s, v in test.items()}
        worst = [max(d) for d in per_seed.values() if d]
        last_epoch = max(max(v) for v in test.values())
        final = [v[last_epoch] for v in test.values() if last_epoch in v]
        validation = series(rows, model, "validation_accuracy")
        val_worst = [max(d) for d in (drops(v, after) for v in validation.values()) if d]
        pure = series(rows, model, "pure_fraction")
        pure_low = [
            min(p for e, p in v.items() if e > after) for v in pure.values() if any(e > after for e in v)
        ]
        out.append(
            {
                "model": model,
                "seeds": len(test),
                "epochs": last_epoch,
                "largest_drop": max(worst) if worst else None,
                "mean_largest_drop": float(np.mean(worst)) if worst else None,
                "validation_largest_drop": max(val_worst) if val_worst else None,
                "final_std": float(np.std(final, ddof=1)) if len(final) > 1 else None,
                "final_range": max(final) - min(final) if final else None,
                "lowest_pure_pct": min(pure_low) if pure_low else None,
            }
        )
    return out


def _cell(value: object, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(rows: Sequence[Mapping[str, object]], after: int) -> str:
    lines = [
        f"| model | seeds | epochs | largest drop after epoch {after}, worst seed (mean over seeds) "
        "| same, validation | spread at the last epoch: std (max - min) | pure agents after it, lowest (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        drop = _cell(r["largest_drop"])
        if r["mean_largest_drop"] is not None:
            drop += f" ({_cell(r['mean_largest_drop'])})"
        spread = _cell(r["final_std"])
        if r["final_range"] is not None:
            spread += f" ({_cell(r['final_range'])})"
        lines.append(
            f"| {r['model']} | {r['seeds']} | {r['epochs']} | {drop} | {_cell(r['validation_largest_drop'])} "
            f"| {spread} | {_cell(r['lowest_pure_pct'], 0)} |"
        )
    return "\n".join(lines)


def main(args: Args) -> str:
    rows = read_csv(args.csv)
    if not rows:
        raise ValueError(f"{args.csv} holds no rows")
    text = markdown(stability_rows(rows, args.after), args.after)
    if args.output is None:
        print(text)
        return text
    command = shlex.join(
        [
            "python",
            SCRIPT,
            "--csv",
            args.csv,
            "--after",
            str(args.after),
            "--output",
            args.output,
            "--block",
            args.block,
        ]
    )
    out = Path(args.output)
    out.write_text(
        replace_block(out.read_text(encoding="utf-8"), f"<!-- {command} -->\n{text}\n", args.block),
        encoding="utf-8",
    )
    print(f"wrote the {args.block} block of {args.output}", file=sys.stderr)
    return text


if __name__ == "__main__":
    main(parse_args(Args))
