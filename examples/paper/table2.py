"""Table 2: the paper's numbers next to ours, assembled from the figure scripts' outputs.

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, appendix, Table 2 (% test
accuracy after 1, 5, 10, 20, 50 and 100 epochs for every model of Figs. 4-8). Reads
every ``<figure>_<dataset>.csv`` (and its ``.json``: the command and budget) that
``fig04_rl_algorithms.py``, ``fig05_architectures.py`` and
``fig06_08_routing_vs_baselines.py`` wrote to ``--results-dir``, and prints Markdown:

- Table 2: for each figure and model (the figure's, and any other model a figure CSV
  holds, e.g. a baseline given to ``fig06_08_routing_vs_baselines.py --models``), the paper's row, then one row per dataset and
  setting we ran it on (in the order digits-MTL, MNIST-MTL, Fashion-MTL, CIFAR-MTL,
  MIN-MTL; the defaults before the paper's setting): the mean ± sample standard
  deviation over seeds of the greedy-route test accuracy (empty where we ran fewer
  epochs), with the routed fc width, the epochs actually run and the seeds, the samples,
  the wall time per run and a key to the command that produced it. Models of a figure
  that were not run on the paper's dataset get a "not run" row.
- Paired differences: for each figure, dataset and setting, routing-all-fc minus each
  other model of the figure at the last epoch both have, paired by seed, with the
  per-seed differences, their mean, a 95% t-interval and whether the seeds call it
  (``seed_stats.py``: fewer than 3 seeds, or an interval that spans 0, call nothing).
- The commands behind the keys, with the equivalent single-run commands.

Figure files written before ``--hidden`` and ``--policy-lr-schedule`` existed record
neither; their runs used the scripts' 128 units and a constant WPL policy rate.

With ``--output FILE`` the table replaces what lies between the lines
``<!-- table2:begin -->`` and ``<!-- table2:end -->`` of FILE (a new FILE gets just the
table between those lines):

    python examples/paper/table2.py --results-dir docs/results --output docs/results.md
    python examples/paper/table2.py --results-dir runs/paper            # print it
    python examples/paper/table2.py --results-dir docs/results,runs/fashion-mtl   # MNIST-MTL and Fashion-MTL

``--figures 8 --no-paper-rows --block beyond`` assembles a table of our rows only, for
some figures, into the block ``<!-- beyond:begin -->`` ... ``<!-- beyond:end -->`` (how
``docs/results.md`` holds the beyond-the-paper comparison next to Table 2):

    python examples/paper/table2.py --results-dir docs/results/beyond --figures 8 --no-paper-rows --block beyond --output docs/results.md
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
from paper_runs import DATASET_LABELS, FIGURES, PAPER_TABLE2, SCRIPT_HIDDEN_WIDTH, TABLE2_EPOCHS, read_csv
from seed_stats import MIN_SEEDS_TO_CALL, accuracy_by_seed, paired_difference, summarize

from routing_env.experiments import DatasetName, parse_args


def markers(block: str) -> tuple[str, str]:
    """The begin and end lines of the block named ``block`` (``table2``: :data:`BEGIN`, :data:`END`)."""
    if not block or not all(c.isalnum() or c in "-_" for c in block):
        raise ValueError(f"a block name is letters, digits, '-' and '_', got {block!r}")
    return f"<!-- {block}:begin -->", f"<!-- {block}:end -->"


BEGIN, END = markers("table2")


@dataclass
class Args:
    """Assemble the paper's Table 2 next to our runs (Markdown)."""

    results_dir: str = "runs/paper"
    """folder holding the figure scripts' CSV and JSON files; several: comma-separated (e.g. docs/results,runs/fashion-mtl)"""
    output: str | None = None
    """Markdown file whose block (see --block) to replace (none: print the table)"""
    figures: str = ""
    """comma-separated figure numbers to assemble (empty: every figure, 4 to 8)"""
    paper_rows: bool = True
    """print the paper's rows and a "not run" row for each model not run on the paper's dataset"""
    block: str = "table2"
    """name of the block of --output to replace: the lines between <!-- NAME:begin --> and <!-- NAME:end -->"""

    def __post_init__(self) -> None:
        select_figures(self.figures)  # a ValueError here: the command line exits with the message
        markers(self.block)


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

    @property
    def hidden_width(self) -> int:
        """The routed fc width of the runs (older files: the scripts' 128, the only one then)."""
        return int(self.meta.get("hidden_width", SCRIPT_HIDDEN_WIDTH))

    @property
    def policy_lr_schedule(self) -> str:
        """The WPL policy-lr schedule of the runs (older files: constant, the only one then)."""
        return str(self.meta.get("policy_lr_schedule", "constant"))

    def label(self) -> str:
        """The dataset (a substitute for the paper's?), setting, fc width and WPL schedule."""
        text = DATASET_LABELS.get(self.dataset, self.dataset)
        if self.dataset != FIGURES[self.figure].paper_dataset:
            text += " (substitute)"
        if self.setting != "defaults":
            text += f", {self.setting} setting"
        text += f", fc {self.hidden_width}"
        if self.policy_lr_schedule != "constant":
            text += f", WPL lr {self.policy_lr_schedule} schedule"
        return text


def load_results(results_dir: Path | Sequence[Path]) -> list[Result]:
    """Every figure CSV (with its JSON) in ``results_dir`` (one folder or several), in figure order."""
    folders = [results_dir] if isinstance(results_dir, Path) else list(results_dir)
    results = []
    for csv_path in sorted(p for folder in folders for p in folder.glob("fig*.csv")):
        if csv_path.name.endswith("_stats.csv"):  # the statistics next to a figure's CSV
            continue
        meta_path = csv_path.with_suffix(".json")
        rows = read_csv(csv_path)
        if not rows or not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        results.append(Result(figure=str(meta["figure"]), dataset=meta["dataset"], rows=rows, meta=meta))
    order = {name: i for i, name in enumerate(get_args(DatasetName))}
    results.sort(
        key=lambda r: (
            int(r.figure),
            order.get(r.dataset, len(order)),
            r.dataset,
            r.setting != "defaults",
            r.setting,
            r.hidden_width,
            r.policy_lr_schedule,
        )
    )
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
    seeds = sorted({int(r["seed"]) for r in rows})

    def cell_at(epoch: int) -> str:
        """Mean ± std over the seeds at ``epoch``; empty unless every seed reached it."""
        by_seed = accuracy_by_seed(rows, model, epoch)
        if len(by_seed) != len(seeds):
            return ""
        s = summarize(list(by_seed.values()))
        return f"{s.mean:.2f}" + ("" if s.std is None else f" ± {s.std:.2f}")

    ran = [max(int(r["epoch"]) for r in rows if int(r["seed"]) == s) for s in seeds]
    last = min(ran)  # the last epoch every seed has
    cells = [cell_at(epoch) for epoch in TABLE2_EPOCHS]
    last_cell = cell_at(last)
    walls = [max(float(r["wall_time_s"]) for r in rows if int(r["seed"]) == s) for s in seeds]
    first = rows[0]
    epochs = f"{last}" if min(ran) == max(ran) else f"{min(ran)}-{max(ran)}"
    return [
        result.figure,
        label,
        "ours",
        f"{result.label()}, {first['train_samples']}/{first['test_samples']}",
        *cells,
        "" if not last_cell else f"{last_cell} (ep. {last})",
        f"{epochs} x {len(seeds)}",
        _fmt_time(float(np.mean(walls))),
        result.key,
    ]


#: The model every other model of a figure is compared with.
REFERENCE = "routing-all-fc"


def paired_rows(result: Result) -> list[list[str]]:
    """The paired-differences rows of ``result``: routing-all-fc minus each other model."""
    figure = FIGURES[result.figure]
    present = {r["model"] for r in result.rows}
    if REFERENCE not in present:
        return []

    def last_epochs(model: str) -> dict[int, int]:
        out: dict[int, int] = {}
        for r in result.rows:
            if r["model"] == model:
                out[int(r["seed"])] = max(out.get(int(r["seed"]), 0), int(r["epoch"]))
        return out

    reference = last_epochs(REFERENCE)
    lines = []
    for model in dict.fromkeys([*figure.models, *(r["model"] for r in result.rows)]):
        if model == REFERENCE or model not in present:
            continue
        other = last_epochs(model)
        seeds = set(reference) & set(other)
        if not seeds:
            continue
        epoch = min(min(reference[s], other[s]) for s in seeds)  # the last epoch both have for every seed
        diff = paired_difference(
            accuracy_by_seed(result.rows, REFERENCE, epoch),
            accuracy_by_seed(result.rows, model, epoch),
            names=(REFERENCE, figure.labels.get(model, model)),
        )
        if diff is None:
            continue
        interval = "" if diff.ci_low is None else f"[{diff.ci_low:+.2f}, {diff.ci_high:+.2f}]"
        lines.append(
            [
                result.figure,
                result.label(),
                figure.labels.get(model, model),
                str(epoch),
                str(diff.n),
                " ".join(f"{d:+.2f}" for d in diff.differences),
                f"{diff.mean:+.2f}" + ("" if diff.std is None else f" ± {diff.std:.2f}"),
                interval,
                diff.note,
                result.key,
            ]
        )
    return lines


def build_paired_table(results: Sequence[Result]) -> str:
    """The paired-differences table (empty string when no result has routing-all-fc and another model)."""
    rows = [row for result in results for row in paired_rows(result)]
    if not rows:
        return ""
    header = [
        "Fig.",
        "dataset, setting",
        "routing-all-fc minus",
        "epoch",
        "seeds",
        "per seed (points)",
        "mean ± std",
        "95% t-interval",
        "verdict",
        "command",
    ]
    lines = [
        f"**Paired differences.** routing-all-fc minus each other model of the figure, in percentage "
        f"points of greedy-route test accuracy, at the last epoch both ran, paired by seed (the same "
        f"seed and data split); the interval is the mean's 95% Student-t interval. A difference is "
        f"called only from {MIN_SEEDS_TO_CALL} seeds on and when the interval excludes 0.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def select_figures(text: str) -> list[str]:
    """The figure numbers of ``--figures`` (all of Table 2's for an empty text).

    Raises:
        ValueError: For a number that is not one of Table 2's figures.
    """
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FIGURES]
    if unknown:
        raise ValueError(
            f"--figures: no figure {', '.join(unknown)} in Table 2; choose from {', '.join(FIGURES)}"
        )
    return chosen or list(FIGURES)


def build_table(
    results: Sequence[Result], *, figures: Sequence[str] | None = None, paper_rows: bool = True
) -> str:
    """The Markdown table and, under it, the command behind each key.

    Args:
        results: The figure results (:func:`load_results`).
        figures: The figure numbers to assemble (None: all).
        paper_rows: Whether to print the paper's rows and the "not run" rows.
    """
    wanted = list(FIGURES) if figures is None else list(figures)
    results = [r for r in results if r.figure in wanted]
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
    lines = [
        "Our cells: mean ± sample standard deviation over the seeds run (no ± for one seed) of the "
        'greedy-route test accuracy (%); "fc" is the routed fc width; "epochs x seeds" the epochs '
        "every seed ran (a range when they differ).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for number, figure in FIGURES.items():
        if number not in wanted:
            continue
        paper = PAPER_TABLE2[number] if paper_rows else {}
        mine = [r for r in results if r.figure == number]
        # the paper's models, the figure's others, then any other model a figure CSV holds
        run = [row["model"] for r in mine for row in r.rows]
        models = list(dict.fromkeys([*paper, *figure.models, *run]))
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
            if (
                paper_rows
                and model in figure.labels
                and not any(r.dataset == figure.paper_dataset and our_row(r, model, label) for r in mine)
            ):
                dataset = DATASET_LABELS[figure.paper_dataset]
                lines.append(
                    "| " + " | ".join([number, label, "ours", dataset, *["not run"] + [""] * 9]) + " |"
                )
            lines += ["| " + " | ".join(row) + " |" for row in ours]
    lines.append("")
    paired = build_paired_table(results)
    if paired:
        lines += [paired.rstrip("\n"), ""]
    for result in results:
        meta = result.meta
        state = "" if meta.get("complete", True) else " (stopped before every run finished)"
        lines.append(
            f"- **{result.key}** (Fig. {result.figure}, {result.label()}){state}: `{meta['command']}`"
        )
        for run in meta.get("runs", []):
            if run.get("equivalent_command"):
                lines.append(
                    f"  - {run['model']}, seed {run['seed']}: same run as `{run['equivalent_command']}`"
                )
    return "\n".join(lines) + "\n"


def replace_block(text: str, table: str, block: str = "table2") -> str:
    """``text`` with the lines between the markers of ``block`` replaced by ``table``."""
    begin, end = markers(block)
    if begin not in text or end not in text or text.index(begin) > text.index(end):
        raise ValueError(f"the file has no '{begin}' ... '{end}' block to replace")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{table}{end}{tail}"


def main(args: Args) -> str:
    """Build the table; write it into ``args.output`` (or print it); return it."""
    figures = select_figures(args.figures)  # ValueError before any file is read
    begin, end = markers(args.block)
    results = load_results([Path(d.strip()) for d in args.results_dir.split(",") if d.strip()])
    if not results:
        print(f"note: no figure results in {args.results_dir}; only the paper's rows", file=sys.stderr)
    table = build_table(results, figures=figures, paper_rows=args.paper_rows)
    if args.output is None:
        print(table, end="")
        return table
    out = Path(args.output)
    text = out.read_text(encoding="utf-8") if out.exists() else f"{begin}\n{end}\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(replace_block(text, table, args.block), encoding="utf-8")
    print(f"wrote the table into the {args.block} block of {out}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main(parse_args(Args))
