"""Which route each task's WPL router settled on, and which tasks share a whole route.

For each run folder of per-task WPL routers (``routing-all-fc`` runs, e.g. a figure's
run folders), reads the checkpoint's router policies and the last row of ``metrics.csv``
and prints, as Markdown:

- each task's greedy route (the most probable block at each depth), with the probability
  of its least sure decision (1.00: the router is pure on it);
- the tasks whose greedy routes are identical at every depth: such tasks share the whole
  network, classifier included, so on an image that one task calls positive and another
  negative (one-vs-rest tasks, an image of either class) one of them must err;
- each task's greedy test accuracy at the last epoch.

::

    python examples/paper/routes.py --runs RUN_FOLDER [RUN_FOLDER ...]
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routing_env.experiments import parse_args
from routing_env.experiments.checkpoints import load_checkpoint


@dataclass
class Args:
    """Each task's greedy route in WPL run folders, and the tasks that share a whole route."""

    runs: tuple[str, ...]
    """run folders of per-task WPL routers (each with checkpoint.pt and metrics.csv)"""


def greedy_routes(run: Path) -> tuple[list[tuple[int, ...]], list[float]]:
    """Each task's most probable block per depth, and the lowest probability along it."""
    agents = load_checkpoint(run / "checkpoint.pt")["agents"]
    routers = sorted((a for a in agents if a.startswith("router_")), key=lambda a: int(a.split("_")[1]))
    if not routers or "policy" not in agents[routers[0]]:
        raise ValueError(f"{run} holds no tabular per-task routers (WPL); its agents are {sorted(agents)}")
    routes, sureness = [], []
    for agent in routers:
        policy = np.asarray(agents[agent]["policy"], dtype=np.float64)  # depth x blocks
        route = policy.argmax(axis=-1)
        routes.append(tuple(int(b) for b in route))
        sureness.append(float(policy[np.arange(len(route)), route].min()))
    return routes, sureness


def last_test_accuracy(run: Path, tasks: int) -> tuple[int, list[float]]:
    with (run / "metrics.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{run / 'metrics.csv'} holds no epoch")
    last = rows[-1]
    return int(last["epoch"]), [float(last[f"test_accuracy_task_{t}"]) for t in range(tasks)]


def report(run: Path) -> str:
    routes, sureness = greedy_routes(run)
    epoch, accuracy = last_test_accuracy(run, len(routes))
    shared: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for task, route in enumerate(routes):
        shared[route].append(task)
    groups = [tasks for tasks in shared.values() if len(tasks) > 1]
    lines = [
        f"**{run.name}** (epoch {epoch}; test accuracy {100 * float(np.mean(accuracy)):.2f}%)",
        "",
        "| task | greedy route (block per depth) | least sure decision | shares the whole route with | test accuracy (%) |",
        "|---|---|---|---|---|",
    ]
    for task, route in enumerate(routes):
        others = [t for t in shared[route] if t != task]
        lines.append(
            f"| {task} | {', '.join(map(str, route))} | {sureness[task]:.2f} | "
            f"{', '.join(map(str, others)) or '-'} | {100 * accuracy[task]:.2f} |"
        )
    lines += ["", f"tasks sharing a whole route: {groups or 'none'}", ""]
    return "\n".join(lines)


def main(args: Args) -> str:
    text = "\n".join(report(Path(run)) for run in args.runs)
    print(text)
    return text


if __name__ == "__main__":
    try:
        main(parse_args(Args))
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
