"""Table 2: the paper's numbers next to ours, assembled from the figure scripts' outputs.

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, appendix, Table 2 (% test
accuracy after 1, 5, 10, 20, 50 and 100 epochs for every model of Figs. 4-8). Reads
every ``<figure>_<dataset>.csv`` (and its ``.json``: the command and budget) that
``fig04_rl_algorithms.py``, ``fig05_architectures.py`` and
``fig06_08_routing_vs_baselines.py`` wrote to ``--results-dir``, and prints a Markdown
table: for each figure and model, the paper's row, then one row per dataset we ran it
on (mean over seeds of the greedy-route test accuracy; empty where we ran fewer
epochs), with the epochs, seeds, samples, wall time per run and a key to the command
that produced it (listed under the table, with the equivalent single-run commands).
Models of a figure that were not run on the paper's dataset get a "not run" row.

With ``--output FILE`` the table replaces what lies between the lines
``<!-- table2:begin -->`` and ``<!-- table2:end -->`` of FILE (a new FILE gets just the
table between those lines):

    python examples/paper/table2.py --results-dir docs/results --output docs/results.md
    python examples/paper/table2.py --results-dir runs/paper            # print it
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from paper_runs import DATASET_LABELS, FIGURES, PAPER_TABLE2, TABLE2_EPOCHS, read_csv

from routing_env.training import parse_args

BEGIN, END = "<!-- table2:begin -->", "<!-- table2:end -->"


@dataclass
class Args:
    """Assemble the paper's Table 2 next to our runs (Markdown)."""

    results_dir: str = "runs/paper"
    """folder holding the figure scripts' CSV and JSON files"""
    output: str | None = None
    """Markdown file whose table2 block to replace (none: print the table)"""


@dataclass
class Result:
    """One figure script's output: its rows and its metadata."""

    figure: str
    dataset: str
    rows: list[dict[str, str]]
    meta: dict[str, Any]
    key: str = ""

    @property
    def setting(self) -> str:
        """The block-training setting of the runs (``--setting``; older files: the defaults)."""
        return str(self.meta.get("args", {}).get("setting", "defaults"))


def load_results(results_dir: Path) -> list[Result]:
    """Every figure CSV (with its JSON) in ``results_dir``, in figure order."""
    results = []
    for csv_path in sorted(results_dir.glob("fig*.csv")):
        meta_path = csv_path.with_suffix(".json")
        rows = read_csv(csv_path)
        if not rows or not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        results.append(Result(figure=str(meta["figure"]), dataset=meta["dataset"], rows=rows, meta=meta))
    results.sort(key=lambda r: (int(r.figure), r.dataset, r.setting != "defaults", r.setting))
    for i, result in enumerate(results):
        result.key = f"C{i + 1}"
    return results


def _fmt_paper(value: int | None) -> str:
    return "?" if value is None else str(value)


def _fmt_time(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def our_row(result: Result, model: str, label: str) -> list[str] | None:
    """The Table 2 row of ``model`` in ``result`` (None when it holds no row of the model)."""
    rows = [r for r in result.rows if r["model"] == model]
    if not rows:
        return None
    seeds = sorted({r["seed"] for r in rows})

    def mean_at(epoch: int) -> float | None:
        values = [float(r["test_accuracy"]) for r in rows if int(r["epoch"]) == epoch]
        return 100 * float(np.mean(values)) if len(values) == len(seeds) else None

    last = max(int(r["epoch"]) for r in rows)
    cells = []
    for epoch in TABLE2_EPOCHS:
        value = mean_at(epoch)
        cells.append("" if value is None else f"{value:.2f}")
    last_value = mean_at(last)
    walls = [max(float(r["wall_time_s"]) for r in rows if r["seed"] == s) for s in seeds]
    first = rows[0]
    dataset = DATASET_LABELS.get(result.dataset, result.dataset)
    if result.dataset != FIGURES[result.figure].paper_dataset:
        dataset += " (substitute)"
    if result.setting != "defaults":
        dataset += f", {result.setting} setting"
    return [
        result.figure,
        label,
        "ours",
        f"{dataset}, {first['train_samples']}/{first['test_samples']}",
        *cells,
        "" if last_value is None else f"{last_value:.2f} (ep. {last})",
        f"{last} x {len(seeds)}",
        _fmt_time(float(np.mean(walls))),
        result.key,
    ]


def build_table(results: Sequence[Result]) -> str:
    """The Markdown table and, under it, the command behind each key."""
    header = [
        "Fig.",
        "model",
        "source",
        "dataset, train/test samples",
        *[f"ep. {e}" for e in TABLE2_EPOCHS],
        "last epoch",
        "epochs x seeds",
        "wall time per run",
        "command",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for number, figure in FIGURES.items():
        paper = PAPER_TABLE2[number]
        models = list(paper) + [m for m in figure.models if m not in paper]
        mine = [r for r in results if r.figure == number]
        for model in models:
            label = figure.labels.get(model, model)
            if model in paper:
                lines.append(
                    "| "
                    + " | ".join(
                        [
                            number,
                            label,
                            "paper",
                            f"{DATASET_LABELS[figure.paper_dataset]}, full",
                            *[_fmt_paper(v) for v in paper[model]],
                            "",
                            "100 x 3",
                            "",
                            "",
                        ]
                    )
                    + " |"
                )
            ours = [row for row in (our_row(r, model, label) for r in mine) if row is not None]
            if not any(r.dataset == figure.paper_dataset and our_row(r, model, label) for r in mine):
                dataset = DATASET_LABELS[figure.paper_dataset]
                lines.append(
                    "| " + " | ".join([number, label, "ours", dataset, *["not run"] + [""] * 9]) + " |"
                )
            lines += ["| " + " | ".join(row) + " |" for row in ours]
    lines.append("")
    for result in results:
        meta = result.meta
        state = "" if meta.get("complete", True) else " (stopped before every run finished)"
        lines.append(
            f"- **{result.key}** (Fig. {result.figure}, {result.dataset}, {result.setting} setting){state}: "
            f"`{meta['command']}`"
        )
        for run in meta.get("runs", []):
            if run.get("equivalent_command"):
                lines.append(
                    f"  - {run['model']}, seed {run['seed']}: same run as `{run['equivalent_command']}`"
                )
    return "\n".join(lines) + "\n"


def replace_block(text: str, table: str) -> str:
    """``text`` with the lines between the table2 markers replaced by ``table``."""
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise ValueError(f"the file has no '{BEGIN}' ... '{END}' block to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def main(args: Args) -> str:
    """Build the table; write it into ``args.output`` (or print it); return it."""
    results = load_results(Path(args.results_dir))
    if not results:
        print(f"note: no figure results in {args.results_dir}; only the paper's rows", file=sys.stderr)
    table = build_table(results)
    if args.output is None:
        print(table, end="")
        return table
    out = Path(args.output)
    text = out.read_text(encoding="utf-8") if out.exists() else f"{BEGIN}\n{END}\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(replace_block(text, table), encoding="utf-8")
    print(f"wrote the table into {out}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main(parse_args(Args))
