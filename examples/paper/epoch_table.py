"""One figure's accuracy by epoch, over seeds, as the Markdown tables of ``docs/results.md``.

Reads a figure's CSV (one greedy-route test accuracy per model, seed and epoch, as the
figure scripts write it) and prints, with ``seed_stats.py``'s statistics:

- a table with one row per model: the mean ± sample standard deviation over seeds of the
  greedy-route test accuracy at each of ``--epochs`` (the last in bold), and, for every
  model but the reference, the reference minus it at the last of ``--epochs``, per seed
  in brackets, with its 95% t-interval (below 3 seeds, the note that says the seeds are
  too few to call it);
- with ``--per-seed MODELS``, a second table: those models' accuracy on each seed at
  each of ``--epochs``.

The numbers are computed from the accuracies as the CSV holds them, as ``table2.py``
computes its paired differences, so the two round alike.
With ``--output FILE --block NAME`` the tables replace what lies between the lines
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` of FILE, after a comment line holding
the command that regenerates them (``tests/examples/test_epoch_table.py`` reruns every
such command found in ``docs/results.md`` and checks the block is unchanged)::

    python examples/paper/epoch_table.py \\
        --csv docs/results/fig08_routing_vs_baselines_fashion-mtl_paper-setting.csv \\
        --epochs 1,5,10,15,20 --per-seed routing-all-fc \\
        --output docs/results.md --block fashion-fig08-paper
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from paper_runs import read_csv
from seed_stats import MIN_SEEDS_TO_CALL, accuracy_by_seed, paired_difference, summarize
from table2 import markers, replace_block

from routing_env.experiments import parse_args

#: The script's path as the regenerating command names it (from the repository root).
SCRIPT = "examples/paper/epoch_table.py"


@dataclass
class Args:
    """Print one figure's accuracy by epoch, mean ± std over seeds, with routing's paired differences (Markdown)."""

    csv: str
    """a figure's CSV (e.g. docs/results/fig08_routing_vs_baselines_fashion-mtl.csv)"""
    epochs: str = ""
    """comma-separated epochs to show (empty: every epoch in the file); differences are at the last"""
    models: str = ""
    """comma-separated models, in the order to show (empty: the file's models, in its order)"""
    reference: str = "routing-all-fc"
    """the model the paired differences are taken from (reference minus each other model)"""
    per_seed: str = ""
    """comma-separated models whose per-seed accuracy to show in a second table (empty: none)"""
    output: str | None = None
    """Markdown file whose block (see --block) to replace (none: print the tables)"""
    block: str = ""
    """name of the block of --output to replace: the lines between <!-- NAME:begin --> and <!-- NAME:end -->"""

    def __post_init__(self) -> None:
        parse_list(self.epochs, int, "--epochs")  # a ValueError here: the command line exits with the message
        if self.output is not None:
            if not self.block:
                raise ValueError("--output needs --block NAME: the block of the file to replace")
            markers(self.block)

    def command(self) -> str:
        """The command line that writes these tables into ``--output`` (for the block's comment)."""
        parts = [SCRIPT, "--csv", self.csv]
        for flag, value in (
            ("--epochs", self.epochs),
            ("--models", self.models),
            ("--per-seed", self.per_seed),
        ):
            if value:
                parts += [flag, value]
        if self.reference != "routing-all-fc":
            parts += ["--reference", self.reference]
        if self.output is not None:
            parts += ["--output", self.output, "--block", self.block]
        return "python " + shlex.join(parts)


def parse_list(text: str, kind: type = str, flag: str = "the list") -> list:
    """``"1,3,5"`` as a list (of ``kind``); empty text is an empty list.

    Raises:
        ValueError: When an item is not a ``kind`` (epochs: a positive int) or is repeated.
    """
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        values = [kind(t) for t in items]
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated {kind.__name__}s, got {text!r}") from None
    if kind is int and any(v < 1 for v in values):
        raise ValueError(f"{flag}: epochs start at 1, got {text!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{flag}: an item is repeated in {text!r}")
    return values


def _row(cells: Sequence[str]) -> str:
    """A Markdown table row (an empty cell as ``| |``)."""
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def _cell(values: Sequence[float]) -> str:
    if not values:
        return ""
    s = summarize(values)
    return f"{s.mean:.2f}" + ("" if s.std is None else f" +- {s.std:.2f}")


def build_tables(
    rows: Sequence[Mapping[str, str]],
    *,
    epochs: Sequence[int] = (),
    models: Sequence[str] = (),
    reference: str = "routing-all-fc",
    per_seed: Sequence[str] = (),
) -> str:
    """The Markdown tables of a figure's CSV rows (see the module docstring).

    The statistics are ``seed_stats.py``'s, computed from the accuracies as the CSV holds
    them (as ``table2.py`` does), so the two tables round alike.

    Raises:
        ValueError: When the rows hold no accuracy, or a model or epoch asked for is not
            in them.
    """
    rows = [r for r in rows if r.get("test_accuracy") not in (None, "")]
    if not rows:
        raise ValueError("the file holds no test accuracy: is it a figure's CSV?")
    present = list(dict.fromkeys(r["model"] for r in rows))
    all_epochs = sorted({int(r["epoch"]) for r in rows})
    shown = list(models) or present
    epochs = list(epochs) or all_epochs
    for name in [*shown, *per_seed, reference]:
        if name not in present:
            raise ValueError(f"model {name!r} is not in the file; it has {', '.join(present)}")
    missing = [e for e in epochs if e not in all_epochs]
    if missing:
        raise ValueError(f"epoch(s) {missing} not in the file; it has epochs {all_epochs}")
    last = epochs[-1]
    lines = [
        "| model | "
        + " | ".join(f"epoch {e}" for e in epochs)
        + f" | {reference} minus it at epoch {last} (per seed) | 95% interval |",
        "|---|" + "---|" * len(epochs) + "---|---|",
    ]
    ref = accuracy_by_seed(rows, reference, last)
    for model in shown:
        cells = [_cell(list(accuracy_by_seed(rows, model, e).values())) for e in epochs]
        if cells[-1]:
            cells[-1] = f"**{cells[-1]}**"
        diff = interval = ""
        d = (
            None
            if model == reference
            else paired_difference(ref, accuracy_by_seed(rows, model, last), names=(reference, model))
        )
        if d is not None:
            per = ", ".join(f"{v:+.2f}" for v in d.differences)
            diff = f"{d.mean:+.2f} ({per})"
            called = d.n >= MIN_SEEDS_TO_CALL and d.ci_low is not None and d.ci_high is not None
            interval = f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]" if called else d.note
        lines.append(_row([model, *cells, diff, interval]))
    if per_seed:
        lines += [
            "",
            "| model | seed | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
            "|---|---|" + "---|" * len(epochs),
        ]
        for model in per_seed:
            by_epoch = {e: accuracy_by_seed(rows, model, e) for e in epochs}
            for seed in sorted({s for values in by_epoch.values() for s in values}):
                cells = [f"{by_epoch[e][seed]:.2f}" if seed in by_epoch[e] else "" for e in epochs]
                lines.append(_row([model, str(seed), *cells]))
    return "\n".join(lines) + "\n"


def main(args: Args) -> str:
    """Build the tables; write them into ``args.output`` (or print them); return them."""
    rows = read_csv(Path(args.csv))
    tables = build_tables(
        rows,
        epochs=parse_list(args.epochs, int, "--epochs"),
        models=parse_list(args.models, str, "--models"),
        reference=args.reference,
        per_seed=parse_list(args.per_seed, str, "--per-seed"),
    )
    if args.output is None:
        print(tables, end="")
        return tables
    out = Path(args.output)
    text = out.read_text(encoding="utf-8")
    out.write_text(replace_block(text, f"<!-- {args.command()} -->\n{tables}", args.block), encoding="utf-8")
    print(f"wrote the tables into the {args.block} block of {out}", file=sys.stderr)
    return tables


if __name__ == "__main__":
    main(parse_args(Args))
