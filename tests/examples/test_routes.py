"""examples/paper/routes.py: each task's greedy route, and the tasks that share a whole route."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from routing_env.experiments.checkpoints import save_checkpoint

from .example_scripts import load_paper


def policy(route: list[int], sure: float = 1.0, blocks: int = 4) -> np.ndarray:
    p = np.full((len(route), blocks), (1.0 - sure) / (blocks - 1))
    p[np.arange(len(route)), route] = sure
    return p


def make_run(folder: Path, routes: list[list[int]], accuracy: list[float]) -> Path:
    folder.mkdir()
    agents = {f"router_{t}": {"policy": policy(r, 0.9 if t == 2 else 1.0)} for t, r in enumerate(routes)}
    save_checkpoint(folder / "checkpoint.pt", {"agents": agents})
    columns = ["epoch"] + [f"test_accuracy_task_{t}" for t in range(len(routes))]
    with (folder / "metrics.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerow([1] + [0.5] * len(routes))
        writer.writerow([2] + accuracy)
    return folder


def test_tasks_on_one_whole_route_are_named_with_their_accuracy(tmp_path, capsys):
    routes = load_paper("routes")
    run = make_run(tmp_path / "run-s0", [[0, 1, 2], [3, 1, 2], [0, 1, 2]], [0.885, 0.99, 0.911])
    text = routes.main(routes.Args(runs=(str(run),)))
    assert "(epoch 2; test accuracy 92.87%)" in text
    assert "| 0 | 0, 1, 2 | 1.00 | 2 | 88.50 |" in text
    assert "| 1 | 3, 1, 2 | 1.00 | - | 99.00 |" in text
    assert "| 2 | 0, 1, 2 | 0.90 | 0 | 91.10 |" in text  # its router is not pure: 0.90 on each depth
    assert "tasks sharing a whole route: [[0, 2]]" in text
    assert text in capsys.readouterr().out


def test_a_run_without_tabular_routers_is_refused(tmp_path):
    routes = load_paper("routes")
    folder = tmp_path / "baseline"
    folder.mkdir()
    save_checkpoint(folder / "checkpoint.pt", {"agents": {}})
    with pytest.raises(ValueError, match="no tabular per-task routers"):
        routes.main(routes.Args(runs=(str(folder),)))
