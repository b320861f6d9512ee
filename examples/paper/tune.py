"""Choose each model's hyper-parameters on a validation split, with the same budget for every model.

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, section 4 and appendix 7.3:
the paper swept the collaboration reward rho and the routers' settings per dataset. This
script sweeps, on a training subset, what the paper swept for routing-all-fc (rho, the
WPL policy learning rate and its schedule) and the sign of WPL's weighting, and gives
every baseline a grid of the same size over its own knobs (learning rate and weight
decay of its optimizer), so that no model is tuned more than another:

- routing-all-fc: rho in {0, 0.3} x policy lr in {0.1, 0.3} x WPL weighting in {paper,
  abdallah-lesser} (8 settings), x policy-lr schedule in {constant, blocks} (16) when
  ``--epochs`` goes past the blocks' first learning-rate decay: before it the blocks'
  schedule is the constant rate, and the two would be the same runs;
- each baseline: the same number of settings over learning rate x weight decay (4 x 2,
  or 4 x 4).

Every setting trains ``--seeds`` runs (one command each, ``train_wpl.py`` or
``train_baseline.py``, run folders reused or resumed as the figure scripts do), and is
scored by its validation accuracy (greedy routes), the mean over the last
``--select-epochs`` epochs and over seeds. The test split is never read here: the runs
evaluate a token test subset (``--max-test-samples``) that nothing reports. Writes
``OUTPUT_DIR/tune_<dataset>_<setting>.csv`` (every setting, ranked per model),
``.md`` (the table) and ``.json`` (the chosen setting per model), which the figure
scripts and the campaign read with ``--tuned``:

    python examples/paper/tune.py --dataset fashion-mtl --jobs 2                 # the sweep
    python examples/paper/fig06_08_routing_vs_baselines.py --dataset fashion-mtl \\
        --tuned runs/tune/tune_fashion-mtl_defaults.json --epochs 10             # test, once
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from paper_runs import (
    PAPER_BLOCK_TRAINING,
    Model,
    PaperArgs,
    model_of,
    read_csv,
    run_model,
)
from seed_stats import t_quantile_95

from routing_env.experiments import METRICS_FILE, DatasetName, machine_info, parse_args

#: The training scripts' default --lr-decay-every (the defaults setting's first block-lr decay).
DEFAULT_DECAY_EVERY = 10

#: The grid of routing-all-fc: what the paper swept (rho, the policy rate and its schedule) and the weighting's sign.
ROUTING_GRID: dict[str, tuple[Any, ...]] = {
    "rho": (0.0, 0.3),
    "policy_lr": (0.1, 0.3),
    "policy_lr_schedule": ("constant", "blocks"),
    "wpl_weighting": ("paper", "abdallah-lesser"),
}
#: The learning rates of the baselines' grid, per block-training setting (the setting's own in the middle).
BASELINE_LRS = {"defaults": (3e-4, 1e-3, 3e-3, 1e-2), "paper": (3e-3, 1e-2, 3e-2, 1e-1)}
#: The weight decays of the baselines' grid: 2 when routing's has 8 settings, 4 when it has 16.
BASELINE_WEIGHT_DECAYS = {8: (0.0, 1e-4), 16: (0.0, 1e-5, 1e-4, 1e-3)}
#: Short names of the options in run-folder names.
SHORT = {
    "rho": "rho",
    "policy_lr": "plr",
    "policy_lr_schedule": "",
    "wpl_weighting": "",
    "lr": "lr",
    "weight_decay": "wd",
}
MODELS = (
    "routing-all-fc",
    "task-specific-1-fc",
    "task-specific-all-fc",
    "cross-stitch-all-fc",
    "soft-mixture-all-fc",
    "mmoe-all-fc",
    "gumbel-router-all-fc",
)


@dataclass
class Args(PaperArgs):
    """Choose each model's hyper-parameters on validation accuracy, the same number of settings per model."""

    dataset: DatasetName = "fashion-mtl"
    """multi-task dataset"""
    max_train_samples: int | None = 10000
    """train each run on a per-task stratified subset of this many samples (none: all)"""
    max_test_samples: int | None = 10
    """the runs' test subset: never read by the sweep (a token subset keeps the runs short)"""
    epochs: int = 8
    """training epochs of every run"""
    seeds: int = 3
    """runs per setting, seeds 0..N-1"""
    models: str = ",".join(MODELS)
    """comma-separated models to tune (routing-all-fc and any baseline of train_baseline.py)"""
    select_epochs: int = 2
    """a setting's score: its validation accuracy averaged over this many last epochs (and over seeds)"""
    jobs: int = 1
    """training commands run at once (each on --torch-threads threads)"""
    output_dir: str = "runs/tune"
    """folder of the sweep's CSV, table and chosen settings"""
    runs_dir: str = "runs/tune/runs"
    """folder of the run folders (complete runs are reused, runs cut short resumed)"""
    dry_run: bool = False
    """print the settings and their commands, run nothing"""
    export_runs: str | None = None
    """copy each complete run's text files to this folder and each run cut short, checkpoint included, to its unfinished/ (as fashion_mtl_campaign.py --export-runs); with --dry-run only this is done"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.validation_fraction is None:
            raise ValueError(
                "--validation-fraction none: the sweep chooses on the validation split, it needs one"
            )
        if not 1 <= self.select_epochs <= self.epochs:
            raise ValueError(
                f"--select-epochs must be in 1..--epochs ({self.epochs}), got {self.select_epochs}"
            )
        if self.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {self.jobs}")
        if self.tuned is not None:
            raise ValueError("--tuned: the sweep chooses settings, it does not read them")
        for name in self.model_list():
            model_of(name)  # raises on an unknown model

    def model_list(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]


def routing_grid(args: Args) -> dict[str, tuple[Any, ...]]:
    """routing-all-fc's grid: the policy-lr schedule only when the runs reach the blocks' first decay."""
    decay_every = PAPER_BLOCK_TRAINING["lr_decay_every"] if args.setting == "paper" else DEFAULT_DECAY_EVERY
    if args.epochs > decay_every:
        return dict(ROUTING_GRID)
    return {k: v for k, v in ROUTING_GRID.items() if k != "policy_lr_schedule"}


def grid(model: Model, args: Args) -> dict[str, tuple[Any, ...]]:
    """The options swept for ``model``: routing-all-fc's, or a baseline's grid of as many settings."""
    routing = routing_grid(args)
    if model.name == "routing-all-fc":
        return routing
    if model.runner != "baseline":
        raise ValueError(f"{model.name}: the sweep tunes routing-all-fc and the baselines")
    size = int(np.prod([len(v) for v in routing.values()]))
    return {"lr": BASELINE_LRS[args.setting], "weight_decay": BASELINE_WEIGHT_DECAYS[size]}


def configurations(model: Model, args: Args) -> list[dict[str, Any]]:
    """Every setting of ``model``'s grid, in grid order."""
    options = grid(model, args)
    return [dict(zip(options, values, strict=True)) for values in itertools.product(*options.values())]


def label(config: Mapping[str, Any]) -> str:
    """A configuration in a run-folder name, e.g. ``rho0.3-plr0.1-constant-paper``."""
    return "-".join(
        f"{SHORT[k]}{v:g}" if isinstance(v, float) else f"{SHORT[k]}{v}" for k, v in config.items()
    )


def variant(model: Model, config: Mapping[str, Any]) -> Model:
    """``model`` with ``config``'s options (its runs are named after both)."""
    return Model(
        f"{model.name}--{label(config)}", model.runner, {**model.options, **config}, model.description
    )


@dataclass(frozen=True)
class Unit:
    """One run of the sweep: a model, one setting of its grid (as sorted pairs) and a seed."""

    model: str
    options: tuple[tuple[str, Any], ...]
    seed: int

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.options)

    def variant(self) -> Model:
        return variant(model_of(self.model), self.config)


def score(run_dir: Path, *, epochs: int, last: int) -> tuple[float, int] | None:
    """Mean validation accuracy of the ``last`` epochs up to ``epochs``, and the epochs found (None: no row)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return None
    rows = [r for r in read_csv(path) if int(r["epoch"]) <= epochs and r.get("validation_accuracy")]
    if not rows:
        return None
    values = [float(r["validation_accuracy"]) for r in rows[-last:]]
    return float(np.mean(values)), len(rows)


def table(args: Args, units: Sequence[Unit], run_dirs: Mapping[Unit, Path]) -> list[dict[str, Any]]:
    """One row per (model, setting): its validation score per seed, the mean, std and rank in its model."""
    rows: list[dict[str, Any]] = []
    for model in args.model_list():
        for config in configurations(model_of(model), args):
            scores = []
            for unit in units:
                if unit.model == model and unit.config == config and unit in run_dirs:
                    found = score(run_dirs[unit], epochs=args.epochs, last=args.select_epochs)
                    if found is not None and found[1] >= args.epochs:
                        scores.append(100 * found[0])
            rows.append(
                {
                    "model": model,
                    **{f"option_{k}": v for k, v in config.items()},
                    "config": json.dumps(config),
                    "seeds_done": len(scores),
                    "validation_pct": " ".join(f"{v:.2f}" for v in scores),
                    "mean_pct": float(np.mean(scores)) if scores else None,
                    "std_pct": float(np.std(scores, ddof=1)) if len(scores) > 1 else None,
                }
            )
    for model in args.model_list():
        mine = sorted(
            (r for r in rows if r["model"] == model and r["seeds_done"] == args.seeds),
            key=lambda r: -r["mean_pct"],
        )
        for rank, row in enumerate(mine, start=1):
            row["rank"] = rank
    return rows


def chosen(args: Args, rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The best setting of each model whose whole grid is done (highest mean validation accuracy)."""
    out: dict[str, dict[str, Any]] = {}
    for model in args.model_list():
        mine = [r for r in rows if r["model"] == model]
        if mine and all(r["seeds_done"] == args.seeds for r in mine):
            best = min(mine, key=lambda r: r["rank"])
            out[model] = json.loads(best["config"])
    return out


def markdown(args: Args, rows: Sequence[Mapping[str, Any]], picked: Mapping[str, Mapping[str, Any]]) -> str:
    """The sweep's table: per model, its settings by validation accuracy, the chosen one first."""
    lines = [
        f"Validation accuracy (%, greedy routes) of every setting on {args.dataset}, "
        f"{args.max_train_samples or 'all'} training samples, {args.epochs} epochs, mean of the last "
        f"{args.select_epochs} epochs, {args.seeds} seeds; block training: {args.setting}.",
        "",
    ]
    for model in args.model_list():
        mine = sorted(
            (r for r in rows if r["model"] == model), key=lambda r: (r.get("rank") is None, r.get("rank", 0))
        )
        lines += [f"**{model}**" + (" (chosen: first row)" if model in picked else " (not complete)"), ""]
        lines += ["| setting | per seed | mean +- std | 95% interval |", "|---|---|---|---|"]
        for r in mine:
            per_seed = r["validation_pct"] or "-"
            values = [float(v) for v in r["validation_pct"].split()] if r["validation_pct"] else []
            mean = "-" if r["mean_pct"] is None else f"{r['mean_pct']:.2f}"
            if r["std_pct"] is not None:
                mean += f" +- {r['std_pct']:.2f}"
            interval = ""
            if len(values) > 1 and r["std_pct"] is not None:
                half = t_quantile_95(len(values) - 1) * r["std_pct"] / len(values) ** 0.5
                interval = f"[{r['mean_pct'] - half:.2f}, {r['mean_pct'] + half:.2f}]"
            lines.append(f"| {label(json.loads(r['config']))} | {per_seed} | {mean} | {interval} |")
        lines.append("")
    return "\n".join(lines)


def export(args: Args, base: PaperArgs, units: Sequence[Unit]) -> str:
    """Keep the sweep's runs where a later machine finds them (``--export-runs``): each complete
    run's text files, each run cut short whole (checkpoint included) under ``unfinished/``."""
    from fashion_mtl_campaign import FINISHED_FILES, UNFINISHED, UNFINISHED_FILES, _copy_files
    from paper_runs import completed_epochs, run_name

    assert args.export_runs is not None
    dest = Path(args.export_runs)
    done = cut = 0
    for unit in units:
        run = Path(args.runs_dir) / run_name(unit.variant(), base, unit.seed)
        if not (run / "config.json").is_file():
            continue
        if completed_epochs(run) >= args.epochs:
            _copy_files(run, dest / run.name, FINISHED_FILES)
            done += 1
        elif (run / "checkpoint.pt").is_file():
            _copy_files(run, dest / UNFINISHED / run.name, UNFINISHED_FILES)
            cut += 1
    return f"kept in {dest}: {done} complete runs, {cut} cut short (in {UNFINISHED}/)"


def paper_args(args: Args) -> PaperArgs:
    """The figure scripts' options of every run (the data, budget and setting of the sweep)."""
    fields = {f.name for f in dataclasses.fields(PaperArgs)}
    return PaperArgs(**{k: v for k, v in dataclasses.asdict(args).items() if k in fields and k != "models"})


def main(args: Args) -> dict[str, Path]:
    """Run every setting's seeds (reusing complete runs); write the table and the chosen settings."""
    base = paper_args(args)
    units = [
        Unit(model, tuple(config.items()), seed)
        for seed in range(args.seeds)
        for model in args.model_list()
        for config in configurations(model_of(model), args)
    ]
    out_dir = Path(args.output_dir)
    stem = out_dir / f"tune_{args.dataset}_{args.setting}"
    print(
        f"{len(units)} runs: {len(args.model_list())} models x {len(units) // max(1, len(args.model_list()) * args.seeds)} "
        f"settings x {args.seeds} seeds, {args.epochs} epochs each; {args.jobs} at once",
        file=sys.stderr,
    )
    if args.dry_run:
        from paper_runs import run_name

        for unit in units:
            print(
                f"{unit.model} {label(unit.config)} seed {unit.seed}: {run_name(unit.variant(), base, unit.seed)}"
            )
        if args.export_runs is not None:
            print(export(args, base, units), file=sys.stderr)
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dirs: dict[Unit, Path] = {}
    started = time.perf_counter()

    def run(unit: Unit) -> None:
        t0 = time.perf_counter()
        run_dirs[unit] = run_model(unit.variant(), base, unit.seed)
        print(
            f"  done {unit.model} {label(unit.config)} seed {unit.seed} ({time.perf_counter() - t0:.0f}s; "
            f"{len(run_dirs)}/{len(units)} in {time.perf_counter() - started:.0f}s)",
            file=sys.stderr,
            flush=True,
        )

    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(run, unit) for unit in units]:
                future.result()
    finally:
        if args.export_runs is not None:
            print(export(args, base, units), file=sys.stderr)
    rows = table(args, units, run_dirs)
    picked = chosen(args, rows)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    from routing_env.experiments import write_rows

    paths = {
        "csv": stem.with_suffix(".csv"),
        "md": stem.with_suffix(".md"),
        "json": stem.with_suffix(".json"),
    }
    write_rows(paths["csv"], rows, columns=columns)
    paths["md"].write_text(markdown(args, rows, picked) + "\n", encoding="utf-8")
    command = shlex.join(["python", "examples/paper/tune.py", *sys.argv[1:]])
    meta = {
        "dataset": args.dataset,
        "setting": args.setting,
        "command": command,
        "budget": {
            "settings_per_model": {m: len(configurations(model_of(m), args)) for m in args.model_list()},
            "seeds": args.seeds,
            "epochs": args.epochs,
            "train_samples": args.max_train_samples,
            "validation_fraction": args.validation_fraction,
            "select_epochs": args.select_epochs,
        },
        "grids": {m: {k: list(v) for k, v in grid(model_of(m), args).items()} for m in args.model_list()},
        "block_training": PAPER_BLOCK_TRAINING
        if args.setting == "paper"
        else "the training scripts' defaults",
        "chosen": picked,
        "machine": machine_info(),
        "written_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    paths["json"].write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(markdown(args, rows, picked))
    print(f"wrote {paths['csv']}, {paths['md']} and {paths['json']}", file=sys.stderr)
    return paths


if __name__ == "__main__":
    main(parse_args(Args))
