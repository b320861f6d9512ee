"""examples/sweep.py: the grid, one trial without Ray, and a 2 x 2 Ray Tune sweep in local mode."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from .helpers import EXAMPLES, load_example

pytestmark = pytest.mark.xdist_group("ray")  # the tests that start Ray share one xdist worker


@pytest.fixture(scope="module")
def sweep():
    return load_example("sweep")


def test_args_parse_and_validate_the_grid(sweep):
    args = sweep.Args(algorithms="wpl, qlearning", lrs="1e-3,1e-2", rhos="0,0.3,1", seeds=2)
    assert args.algorithm_list() == ["wpl", "qlearning"]
    assert args.lr_list() == [1e-3, 1e-2]
    assert args.rho_list() == [0.0, 0.3, 1.0]
    for bad, match in [
        ({"algorithms": "wpl,ppo"}, "--algorithms"),
        ({"lrs": "0.1,x"}, "--lrs"),
        ({"lrs": "-1"}, "--lrs"),
        ({"rhos": "1.5"}, "--rhos"),
        ({"seeds": 0}, "--seeds"),
        ({"num_samples": 0}, "--num-samples"),
    ]:
        with pytest.raises(ValueError, match=match):
            sweep.Args(**bad)


def test_run_trial_is_a_train_wpl_style_run(sweep):
    config = {
        "algorithm": "qlearning",
        "lr": 1e-3,
        "rho": 0.3,
        "seed": 0,
        "num_samples": 50,
        "dataset": "digits-mtl",
        "data_root": None,
        "max_test_samples": 40,
        "optimizer": "adam",
        "batch_size": 16,
        "policy_lr": None,
        "epsilon": 0.1,
        "torch_threads": 1,
    }
    first = sweep.run_trial(config)
    assert set(first) == {"test_accuracy", "train_accuracy", "time_s"}
    assert 0.0 <= first["test_accuracy"] <= 1.0
    again = sweep.run_trial(config)
    assert again["test_accuracy"] == first["test_accuracy"]  # seeded: the same run
    assert again["train_accuracy"] == first["train_accuracy"]


@pytest.mark.extras
def test_param_space_is_the_full_grid(sweep):
    pytest.importorskip("ray.tune", reason="needs the 'tune' extra: pip install 'routing-env[tune]'")
    space = sweep.param_space(sweep.Args(algorithms="wpl,reinforce", lrs="1e-3", rhos="0,0.3", seeds=3))
    assert space["algorithm"] == {"grid_search": ["wpl", "reinforce"]}
    assert space["rho"] == {"grid_search": [0.0, 0.3]}
    assert space["seed"] == {"grid_search": [0, 1, 2]}


@pytest.mark.extras
@pytest.mark.slow  # 1-5 min: Ray starts its workers (4 min 44 s on the loaded 2-core machine)
def test_two_by_two_grid_with_ray_tune_in_local_mode(tmp_path):
    pytest.importorskip("ray.tune", reason="needs the 'tune' extra: pip install 'routing-env[tune]'")
    output = tmp_path / "sweep.csv"
    cmd = [
        sys.executable,
        str(EXAMPLES / "sweep.py"),
        "--algorithms", "wpl,reinforce",
        "--lrs", "1e-3",
        "--rhos", "0,0.3",
        "--seeds", "1",
        "--num-samples", "200",
        "--max-test-samples", "50",
        "--num-cpus", "2",
        "--output", str(output),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600
    )  # Ray starts slowly on a loaded machine
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(output, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == sweep_columns()
    assert sorted((r["algorithm"], float(r["rho"])) for r in rows) == [
        ("reinforce", 0.0),
        ("reinforce", 0.3),
        ("wpl", 0.0),
        ("wpl", 0.3),
    ]
    for row in rows:
        assert row["error"] == ""
        assert row["seed"] == "0" and float(row["lr"]) == 1e-3 and row["num_samples"] == "200"
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
    assert (tmp_path / "ray_results").is_dir()  # Tune's trial folders beside the CSV


def sweep_columns() -> list[str]:
    return load_example("sweep").CSV_COLUMNS
