"""When do WPL routers become pure? A sweep over the ingredients of the paper's setting.

Rosenbaum, Klinger & Riemer (ICLR 2018, section 5, Fig. 9) show per-task WPL agents on
MNIST-MTL converging to (near) pure routing policies within the first 100 samples per
task, and tie the number of blocks used to the collaboration reward rho (Fig. 12). Our
default runs stay mixed (docs/policy_dynamics.md). The paper's setting differs from our
defaults in several ingredients; this script trains per-task WPL routers on the batched
path for every combination of

- ``--rhos``: the collaboration reward rho (the paper: 0.3 on MNIST-MTL);
- ``--baselines``: WPL's historical average return per depth (our default) or per
  (depth, action) (a literal reading of Algorithm 3);
- ``--policy-lrs``: the WPL policy learning rate;
- ``--schedules``: the policy rate constant, or on the blocks' schedule (the paper trains
  both with one schedule). The blocks' schedule decays only every 10 (adam) or 20 (sgd)
  epochs, so within a budget of less than an epoch the two are the same run: the default
  grid runs ``constant`` only, and says so;
- ``--optimizers``: the block training, ``sgd`` (the paper's: SGD at 1e-2, /10 every 20
  epochs) or ``adam`` (ours: Adam at 1e-3, /10 every 10 epochs);
- ``--weightings``: the sign of WPL's gradient weighting, ``paper`` (section 3.1.2 and
  Algorithm 3, the default of :class:`agents.WPL`, which makes the simplex boundary
  absorbing) or ``abdallah-lesser`` (appendix 7.4, Abdallah & Lesser's WPL);

with ``--seeds`` seeds each, for ``--samples`` training samples per run, and records per
run: the samples of its own task each agent had routed when it first became pure (its
largest action probability >= ``--pure-threshold`` at every depth, checked after every
minibatch; empty if never), the fraction of pure agents at the end, the distinct blocks
of the greedy routes at each depth, NashConv (``routing_env.game.analyze_game`` on
``--game-samples`` held-out samples per task) at ``--game-points`` points over training,
and the final greedy and sampled test accuracy. One CSV row per run
(``OUTPUT_DIR/purity_sweep.csv``, appended run by run: a rerun skips the runs it holds,
so the sweep can be stopped and resumed), heat maps of time-to-purity and accuracy over
the grid (``purity_sweep.png``), and Fig. 9's view of the first ``--first-samples``
samples per task (each agent's depth-0 policy over its own samples) for the grid's cell
closest to the paper's setting next to ours (``purity_first_samples.png``)::

    python examples/figures/purity_sweep.py --data-root DIR --output-dir docs/figures/purity
    python examples/figures/purity_sweep.py --dataset digits-mtl --samples 2000 --seeds 1 \\
        --rhos 0,0.3 --policy-lrs 0.3 --output-dir /tmp/purity      # a quick look
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import routing_env
from agents import WPL, MultiAgentRouter, RunStats, evaluate_batched, train_batched
from routing_env.datasets import MultiTaskDataset
from routing_env.experiments import (
    RENAMED_VALUES,
    DatasetName,
    DatasetOptions,
    drop_a_cut_last_row,
    load_run_dataset,
    run_script,
    seed_everything,
)
from routing_env.extras import import_extra
from routing_env.game import analyze_game

Figure = import_extra("matplotlib.figure", feature=__file__, extra="plots", package="matplotlib").Figure

#: The block training of each ``--optimizers`` value: (optimizer, lr, decay every N epochs).
BLOCK_TRAINING = {"sgd": ("sgd", 1e-2, 20), "adam": ("adam", 1e-3, 10)}
#: The cell closest to the paper's setting and ours (for the first-samples view).
PAPER_CELL = {
    "rho": 0.3,
    "baseline": "action",
    "optimizer": "sgd",
    "schedule": "blocks",
    "weighting": "paper",
}
OURS_CELL = {
    "rho": 0.0,
    "baseline": "depth",
    "optimizer": "adam",
    "schedule": "constant",
    "policy_lr": 0.3,
    "weighting": "abdallah-lesser",
}
KEY = ("rho", "baseline", "policy_lr", "schedule", "optimizer", "weighting", "seed")


@dataclass
class Args(DatasetOptions):
    """Sweep WPL's ingredients: when do the routers become pure, and what does it cost?"""

    dataset: DatasetName = "mnist-mtl"
    """multi-task dataset (the paper's Fig. 9: mnist-mtl)"""
    output_dir: str = "purity_sweep"
    """folder of the CSV and PNGs"""
    rhos: str = "0,0.1,0.3,1"
    """comma-separated collaboration rewards rho"""
    baselines: str = "depth,action"
    """comma-separated WPL average-return baselines (depth: ours; action: Algorithm 3 read literally)"""
    policy_lrs: str = "0.03,0.1,0.3,1"
    """comma-separated WPL policy learning rates (at 1 the paper's beta = lr makes WPL's step 0: those
    cells keep the uniform policy, a control)"""
    schedules: str = "constant"
    """comma-separated policy-rate schedules (constant, blocks); blocks equals constant within the first epochs (the blocks' rate decays every 10 or 20 epochs), so the default runs constant only"""
    optimizers: str = "sgd,adam"
    """comma-separated block trainings: sgd (the paper's SGD 1e-2) and adam (ours, Adam 1e-3)"""
    weightings: str = "abdallah-lesser,paper"
    """comma-separated WPL weightings: abdallah-lesser (appendix 7.4) and paper (section 3.1.2 and Algorithm 3: the boundary of the simplex absorbs)"""
    seeds: int = 3
    """runs per cell (seeds 0..N-1)"""
    samples: int = 20_000
    """training samples per run (MNIST-MTL: 2,000 per task, the paper's Fig. 9 looks at the first 100)"""
    batch_size: int = 64
    """samples per block-training step (and per routing step)"""
    pure_threshold: float = 0.99
    """an agent is pure when its largest action probability is at least this at every depth"""
    game_points: int = 2
    """NashConv analyses per run, evenly spaced over training (the last at the end; 0: none)"""
    game_samples: int = 20
    """held-out samples per task of each NashConv analysis"""
    first_samples: int = 100
    """samples per task shown in the first-samples view (Fig. 9)"""
    torch_threads: int = 1
    """torch intra-op threads"""
    report_only: bool = False
    """print the summary of OUTPUT_DIR/purity_sweep.csv (the numbers docs/policy_dynamics.md quotes) and stop: no training"""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.grid()  # validates the lists
        if self.seeds < 1 or self.samples < self.batch_size or self.batch_size < 1:
            raise ValueError("--seeds must be >= 1 and --samples >= --batch-size >= 1")
        if not 0.0 < self.pure_threshold <= 1.0:
            raise ValueError(f"--pure-threshold must be in (0, 1], got {self.pure_threshold}")
        if self.game_points < 0 or self.game_samples < 1 or self.first_samples < 1:
            raise ValueError("--game-points must be >= 0, --game-samples and --first-samples >= 1")

    def grid(self) -> list[dict[str, Any]]:
        """Every cell of the sweep (without the seed)."""

        def floats(name: str, text: str) -> list[float]:
            try:
                values = [float(v) for v in text.split(",") if v.strip()]
            except ValueError:
                raise ValueError(f"--{name} must be comma-separated numbers, got {text!r}") from None
            if not values:
                raise ValueError(f"--{name} is empty")
            return values

        def words(name: str, text: str, allowed: tuple[str, ...]) -> list[str]:
            values = [v.strip() for v in text.split(",") if v.strip()]
            if not values or any(v not in allowed for v in values):
                raise ValueError(f"--{name} must be comma-separated values of {allowed}, got {text!r}")
            return values

        rhos = floats("rhos", self.rhos)
        if any(not 0.0 <= r <= 1.0 for r in rhos):
            raise ValueError(f"--rhos must lie in [0, 1], got {self.rhos!r}")
        lrs = floats("policy-lrs", self.policy_lrs)
        if any(lr <= 0 for lr in lrs):
            raise ValueError(f"--policy-lrs must be positive, got {self.policy_lrs!r}")
        return [
            {"rho": r, "baseline": b, "policy_lr": lr, "schedule": s, "optimizer": o, "weighting": w}
            for r, b, lr, s, o, w in itertools.product(
                rhos,
                words("baselines", self.baselines, ("depth", "action")),
                lrs,
                words("schedules", self.schedules, ("constant", "blocks")),
                words("optimizers", self.optimizers, tuple(BLOCK_TRAINING)),
                words("weightings", self.weightings, ("abdallah-lesser", "paper")),
            )
        ]


def is_pure(learner: WPL, threshold: float) -> bool:
    """Largest action probability >= ``threshold`` at every depth the agent has seen."""
    return learner.is_pure(threshold)


def greedy_blocks_used(router: MultiAgentRouter) -> list[int]:
    """Distinct blocks at each depth among the agents' greedy (argmax) routes."""
    routes = np.array([learner.policy_nA.argmax(axis=1) for learner in router.values()])
    return [len(set(routes[:, d].tolist())) for d in range(routes.shape[1])]


def make_run(args: Args, dataset: MultiTaskDataset, cell: dict[str, Any], seed: int) -> tuple[Any, Any]:
    optimizer, lr, decay_every = BLOCK_TRAINING[cell["optimizer"]]
    env = routing_env.batched_env(
        dataset=dataset,
        collaboration_reward=cell["rho"],
        optimizer=optimizer,
        lr=lr,
        lr_decay_every=decay_every,
        batch_size=args.batch_size,
    )
    wpl = functools.partial(
        WPL,
        lr=cell["policy_lr"],
        baseline=cell["baseline"],
        weighting=cell.get("weighting", "abdallah-lesser"),
    )
    return env, MultiAgentRouter.from_env(env, router=wpl, seed=seed)


def set_policy_lr(router: MultiAgentRouter, cell: dict[str, Any], env: Any) -> None:
    """The policy rate of the ``blocks`` schedule: the block rate's decay applied to it."""
    if cell["schedule"] == "blocks":
        _, lr, _ = BLOCK_TRAINING[cell["optimizer"]]
        rate = cell["policy_lr"] * env.block_lr / lr
        for learner in router.values():
            learner.lr = rate


def run(args: Args, dataset: MultiTaskDataset, cell: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train one run of the sweep; its CSV row."""
    seed_everything(seed)
    start = time.perf_counter()
    env, router = make_run(args, dataset, cell, seed)
    tasks = dataset.num_tasks
    agent_of_task = [f"router_{t}" for t in range(tasks)]
    seen_T = np.zeros(tasks, dtype=np.int64)
    pure_at: dict[int, int] = {}
    game_at = sorted({int(args.samples * (k + 1) / args.game_points) for k in range(args.game_points)})
    games: list[tuple[int, float]] = []

    def after_minibatch(episode: RunStats, total: RunStats) -> None:
        for t, (_, n) in episode.correct_per_task.items():
            seen_T[t] += n
        for t in range(tasks):
            if t not in pure_at and is_pure(router[agent_of_task[t]], args.pure_threshold):
                pure_at[t] = int(seen_T[t])
        while game_at and total.num_samples >= game_at[0]:
            point = game_at.pop(0)
            analysis = analyze_game(env.aec_env, router, max_samples_per_task=args.game_samples, seed=seed)
            games.append((point, analysis.nash_conv))
        set_policy_lr(router, cell, env)

    routed = 0
    while routed < args.samples:
        stats = train_batched(
            env,
            router,
            num_samples=min(args.samples - routed, len(dataset.train)),
            seed=seed if routed == 0 else None,
            callback=after_minibatch,
        )
        routed += stats.num_samples
    greedy = evaluate_batched(env, router, greedy=True).accuracy
    sampled = evaluate_batched(env, router, greedy=False).accuracy
    row: dict[str, Any] = {**cell, "seed": seed, "dataset": dataset.name, "samples": routed}
    row["samples_per_task"] = round(routed / tasks, 1)
    for t in range(tasks):
        row[f"pure_after_task_{t}"] = pure_at.get(t, "")
    row["pure_fraction"] = sum(is_pure(router[a], args.pure_threshold) for a in agent_of_task) / tasks
    for d, used in enumerate(greedy_blocks_used(router)):
        row[f"blocks_used_depth_{d}"] = used
    for k in range(args.game_points):
        point, value = games[k] if k < len(games) else ("", "")
        row[f"nash_conv_{k}"] = value
        row[f"nash_conv_samples_{k}"] = point
    row["greedy_accuracy"] = greedy
    row["sampled_accuracy"] = sampled
    row["wall_s"] = round(time.perf_counter() - start, 2)
    return row


def first_samples_view(
    args: Args, dataset: MultiTaskDataset, cell: dict[str, Any], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Each agent's depth-0 policy after every minibatch over its first samples (Fig. 9).

    Returns the samples of its own task each agent had routed (``agents x points``) and
    its probabilities (``agents x points x actions``).
    """
    seed_everything(seed)
    env, router = make_run(args, dataset, cell, seed)
    tasks = dataset.num_tasks
    seen_T = np.zeros(tasks, dtype=np.int64)
    xs: list[np.ndarray] = []
    probs: list[np.ndarray] = []

    def record(episode: RunStats, total: RunStats) -> None:
        for t, (_, n) in episode.correct_per_task.items():
            seen_T[t] += n
        xs.append(seen_T.copy())
        probs.append(np.stack([router[f"router_{t}"].policy_nA[0] for t in range(tasks)]))

    budget = min(len(dataset.train), args.first_samples * tasks * 2)
    train_batched(env, router, num_samples=budget, seed=seed, callback=record)
    return np.stack(xs, axis=1), np.stack(probs, axis=1)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The sweep's CSV rows, WPL weightings under their names of now (appendix: abdallah-lesser)."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if any(None in r or None in r.values() for r in rows):
        raise ValueError(
            f"{path}: a row has more or fewer fields than the header; the file was damaged. Restore it "
            "from a copy, or sweep into another --output-dir"
        )
    renamed = RENAMED_VALUES["wpl_weighting"]
    return [
        {**r, "weighting": renamed.get(r["weighting"], r["weighting"])} if "weighting" in r else r
        for r in rows
    ]


def add_weighting_column(path: Path) -> None:
    """A CSV written before ``--weightings`` existed: its runs used the abdallah-lesser weighting."""
    rows = read_rows(path)
    if not rows or "weighting" in rows[0]:
        return
    header = list(rows[0])
    header.insert(header.index("optimizer") + 1, "weighting")
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows({**r, "weighting": "abdallah-lesser"} for r in rows)
    print(
        f"{path}: added the weighting column (abdallah-lesser: its runs predate --weightings)",
        file=sys.stderr,
    )


#: What every run of a sweep shares besides its cell and seed: a folder holds one sweep's runs.
CONTEXT = (
    "dataset",
    "data_seed",
    "max_train_samples",
    "max_test_samples",
    "validation_fraction",
    "samples",
    "batch_size",
    "pure_threshold",
    "game_points",
    "game_samples",
)


def check_context(args: Args, out: Path, rows: list[dict[str, str]]) -> None:
    """Refuse to add runs to a folder holding another sweep's (another dataset, sample count,
    batch size ...): its rows would be reused as this sweep's. Records the context on first use.

    Raises:
        FileExistsError: Naming what differs, and the folder.
    """
    path = out / "purity_sweep.json"
    context = {k: getattr(args, k) for k in CONTEXT}
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
    elif rows:  # a CSV from before the context was recorded: its rows tell the dataset and samples
        saved = {**context, "dataset": rows[0]["dataset"], "samples": int(rows[0]["samples"])}
    else:
        saved = context
    differ = [
        f"{k}: {saved.get(k)!r} there, {context[k]!r} now" for k in CONTEXT if saved.get(k) != context[k]
    ]
    if differ:
        raise FileExistsError(
            f"{out} holds another sweep's runs ({'; '.join(differ)}); nothing was run. Pass another "
            "--output-dir, or the options of that sweep"
        )
    path.write_text(json.dumps(context, indent=2) + "\n", encoding="utf-8")


def done_keys(rows: list[dict[str, str]]) -> set[tuple[str, ...]]:
    return {tuple(str(_norm(r[k])) for k in KEY) for r in rows}


def _norm(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def append_row(path: Path, row: dict[str, Any]) -> None:
    exists = path.exists() and path.stat().st_size > 0
    if exists:
        with path.open(newline="") as fh:
            header = next(csv.reader(fh))
        if header != list(row):
            raise ValueError(f"{path} holds another sweep's columns; use another --output-dir")
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if not exists:
            writer.writeheader()
        writer.writerow(row)


def _label(cell: dict[str, Any], keys: tuple[str, ...]) -> str:
    short = {
        "rho": "rho",
        "baseline": "",
        "policy_lr": "lr",
        "schedule": "",
        "optimizer": "",
        "weighting": "",
    }
    return " ".join(f"{short[k]}{_norm(cell[k]):g}" if short[k] else str(cell[k]) for k in keys)


def plot_grid(rows: list[dict[str, str]], samples_per_task: float) -> Figure:
    """Heat maps over the grid: median samples per task to purity, and greedy accuracy."""
    row_keys = (
        ("weighting", "rho", "baseline") if len({r["weighting"] for r in rows}) > 1 else ("rho", "baseline")
    )
    col_keys = tuple(k for k in ("policy_lr", "optimizer", "schedule") if len({r[k] for r in rows}) > 1) or (
        "policy_lr",
    )
    row_cells = sorted({tuple(_norm(r[k]) for k in row_keys) for r in rows}, key=str)
    col_cells = sorted({tuple(_norm(r[k]) for k in col_keys) for r in rows}, key=str)
    tasks = sorted(int(k.rsplit("_", 1)[-1]) for k in rows[0] if k.startswith("pure_after_task_"))
    purity = np.full((len(row_cells), len(col_cells)), np.nan)
    accuracy = np.full_like(purity, np.nan)
    for i, rc in enumerate(row_cells):
        for j, cc in enumerate(col_cells):
            runs = [
                r
                for r in rows
                if tuple(_norm(r[k]) for k in row_keys) == rc and tuple(_norm(r[k]) for k in col_keys) == cc
            ]
            if not runs:
                continue
            # "never" counts as past the budget, so the median says when half the agents were pure
            times = [
                float(r[f"pure_after_task_{t}"]) if r[f"pure_after_task_{t}"] != "" else np.inf
                for r in runs
                for t in tasks
            ]
            purity[i, j] = float(np.median(times))
            accuracy[i, j] = 100 * float(np.mean([float(r["greedy_accuracy"]) for r in runs]))
    fig = Figure(figsize=(1.2 * len(col_cells) + 6, 0.45 * len(row_cells) + 2.2), layout="constrained")
    axes = fig.subplots(1, 2)
    shown = np.where(np.isinf(purity), samples_per_task * 1.2, purity)
    for ax, data, title, fmt in (
        (axes[0], shown, "median samples per task to purity (> budget: never)", "{:.0f}"),
        (axes[1], accuracy, "greedy test accuracy (%), mean over seeds", "{:.1f}"),
    ):
        image = ax.imshow(data, aspect="auto", cmap="viridis")
        fig.colorbar(image, ax=ax, shrink=0.8)
        for (i, j), value in np.ndenumerate(data):
            if not np.isnan(value):
                text = "never" if ax is axes[0] and np.isinf(purity[i, j]) else fmt.format(value)
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w")
        ax.set_xticks(range(len(col_cells)))
        ax.set_xticklabels(
            [_label(dict(zip(col_keys, c, strict=True)), col_keys) for c in col_cells],
            rotation=45,
            ha="right",
            fontsize=8,
        )
        ax.set_yticks(range(len(row_cells)))
        ax.set_yticklabels(
            [_label(dict(zip(row_keys, c, strict=True)), row_keys) for c in row_cells], fontsize=8
        )
        ax.set_title(title, fontsize=9)
    return fig


def plot_first_samples(views: dict[str, tuple[np.ndarray, np.ndarray]], first: int) -> Figure:
    """Fig. 9's view: each agent's depth-0 block probabilities over its first samples."""
    names = list(views)
    tasks = views[names[0]][0].shape[0]
    fig = Figure(figsize=(3.2 * len(names), 0.9 * tasks + 1.0), layout="constrained")
    axes = fig.subplots(tasks, len(names), squeeze=False, sharex=True)
    for j, name in enumerate(names):
        xs, probs = views[name]
        for t in range(tasks):
            ax = axes[t, j]
            # the points up to the first at or past ``first`` samples
            keep = np.arange(len(xs[t])) <= int(np.searchsorted(xs[t], first))
            # column c shows the policy after the minibatch that brought the agent to xs[t, c] samples
            edges = np.concatenate([[0.0], xs[t, keep].astype(float)])
            ax.pcolormesh(
                edges, np.arange(probs.shape[2] + 1) - 0.5, probs[t, keep].T, cmap="Greys", vmin=0, vmax=1
            )
            ax.set_ylim(probs.shape[2] - 0.5, -0.5)
            ax.set_xlim(0, first)
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"task {t}", fontsize=7)
        axes[0, j].set_title(name, fontsize=9)
        axes[-1, j].set_xlabel(f"samples of the agent's task (first {first})", fontsize=8)
    return fig


def _median_range(values: list[float]) -> str:
    return "never" if not values else f"{np.median(values):g} ({min(values):g}-{max(values):g})"


def report(rows: list[dict[str, str]]) -> str:
    """The sweep's summary, per weighting: the agents that became pure and the median samples
    per task they needed (over all runs, then split by each swept ingredient), the greedy
    accuracy and the last NashConv per block optimizer, and the mean distinct greedy blocks
    per depth per rho. Every figure docs/policy_dynamics.md quotes from a sweep is here."""
    tasks = (
        sorted(int(k.rsplit("_", 1)[1]) for k in rows[0] if k.startswith("pure_after_task_")) if rows else []
    )
    depths = (
        sorted(int(k.rsplit("_", 1)[1]) for k in rows[0] if k.startswith("blocks_used_depth_"))
        if rows
        else []
    )
    nash = sorted(
        int(k.rsplit("_", 1)[1]) for k in rows[0] if k.startswith("nash_conv_") and "samples" not in k
    )

    def pure_after(rs: list[dict[str, str]]) -> list[float]:
        return [
            float(r[f"pure_after_task_{t}"]) for r in rs for t in tasks if r[f"pure_after_task_{t}"] != ""
        ]

    lines = [f"{len(rows)} runs, {sum(float(r['wall_s']) for r in rows) / 60:.1f} min of training in all"]
    for weighting in sorted({r["weighting"] for r in rows}):
        mine = [r for r in rows if r["weighting"] == weighting]
        pure = pure_after(mine)
        lines.append(
            f"{weighting}: {len(pure)}/{len(mine) * len(tasks)} agents pure; samples per task to purity, "
            f"median (range): {_median_range(pure)}"
        )
        for key in ("rho", "baseline", "policy_lr", "optimizer"):
            parts = []
            for value in sorted({r[key] for r in mine}):
                group = [r for r in mine if r[key] == value]
                agents = pure_after(group)
                median = f"{np.median(agents):g}" if agents else "never"
                parts.append(f"{value}: {len(agents)}/{len(group) * len(tasks)} pure, median {median}")
            lines.append(f"  by {key}: " + "; ".join(parts))
        for optimizer in sorted({r["optimizer"] for r in mine}):
            group = [r for r in mine if r["optimizer"] == optimizer]
            acc = [100 * float(r["greedy_accuracy"]) for r in group]
            text = f"  {optimizer}: greedy {min(acc):.2f}-{max(acc):.2f}% (mean {np.mean(acc):.2f}%, {len(acc)} runs)"
            last = [
                float(r[f"nash_conv_{nash[-1]}"]) for r in group if nash and r[f"nash_conv_{nash[-1]}"] != ""
            ]
            if last:
                text += (
                    f"; NashConv at the end, median {np.median(last):.2f} ({min(last):.2f}-{max(last):.2f})"
                )
            lines.append(text)
        for rho in sorted({r["rho"] for r in mine}):
            group = [r for r in mine if r["rho"] == rho]
            blocks = " / ".join(
                f"{np.mean([float(r[f'blocks_used_depth_{d}']) for r in group]):.1f}" for d in depths
            )
            lines.append(f"  rho {rho}: distinct greedy blocks per depth {blocks}")
    return "\n".join(lines)


def main(args: Args) -> Path:
    if args.report_only:
        path = Path(args.output_dir) / "purity_sweep.csv"
        if not path.is_file():
            raise FileNotFoundError(f"--report-only: no {path}; run the sweep first")
        print(report(read_rows(path)))
        return path
    torch.set_num_threads(args.torch_threads)
    dataset = load_run_dataset(args)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "purity_sweep.csv"
    drop_a_cut_last_row(path)
    add_weighting_column(path)
    check_context(args, out, read_rows(path))
    done = done_keys(read_rows(path))
    cells = args.grid()
    todo = [
        (c, s)
        for c in cells
        for s in range(args.seeds)
        if tuple(str(_norm(v)) for v in (*c.values(), s)) not in done
    ]
    print(
        f"{dataset.name}: {len(cells)} cells x {args.seeds} seeds, {args.samples} samples per run; "
        f"{len(cells) * args.seeds - len(todo)} runs already in {path}",
        file=sys.stderr,
    )
    start = time.perf_counter()
    for i, (cell, seed) in enumerate(todo):
        row = run(args, dataset, cell, seed)
        append_row(path, row)
        pure = [row[f"pure_after_task_{t}"] for t in range(dataset.num_tasks)]
        elapsed = time.perf_counter() - start
        print(
            f"[{i + 1}/{len(todo)}] {_label(cell, tuple(cell))} seed {seed}: pure after {pure}; "
            f"greedy {100 * row['greedy_accuracy']:.2f}%  ({row['wall_s']:.0f}s; "
            f"about {elapsed / (i + 1) * (len(todo) - i - 1) / 60:.0f} min left)",
            flush=True,
        )
    rows = read_rows(path)
    plot_grid(rows, args.samples / dataset.num_tasks).savefig(out / "purity_sweep.png", dpi=100)
    # the largest rate that learns: at lr 1 the paper's beta = lr makes WPL's step 0 (see WPL)
    rates = [float(v) for v in args.policy_lrs.split(",")]
    paper_cell = {**PAPER_CELL, "policy_lr": max([r for r in rates if r < 1] or [0.3])}
    paper_setting = f"rho 0.3, per-action baseline,\nSGD 1e-2, policy lr {paper_cell['policy_lr']:g}"
    views = {
        f"closest to the paper:\n{paper_setting},\nAlgorithm 3's weighting as printed": first_samples_view(
            args, dataset, paper_cell
        ),
        f"the paper's setting with\nappendix 7.4's weighting:\n{paper_setting}": first_samples_view(
            args, dataset, {**paper_cell, "weighting": "abdallah-lesser"}
        ),
        "ours:\nrho 0, per-depth baseline,\nAdam 1e-3, policy lr 0.3": first_samples_view(
            args, dataset, OURS_CELL
        ),
    }
    plot_first_samples(views, args.first_samples).savefig(out / "purity_first_samples.png", dpi=100)
    print(report(rows))
    print(f"wrote {path}, {out / 'purity_sweep.png'} and {out / 'purity_first_samples.png'}", file=sys.stderr)
    return path


if __name__ == "__main__":
    run_script(main, Args)
