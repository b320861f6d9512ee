"""examples/figures/purity_sweep.py: a tiny sweep writes its CSV and PNGs, resumes, and its
purity bookkeeping is right."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from agents import WPL

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "figures" / "purity_sweep.py"


@pytest.fixture(scope="module")
def sweep():
    name = "routing_env_example_purity_sweep"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


TINY = dict(
    dataset="digits-mtl",
    max_train_samples=640,
    max_test_samples=100,
    samples=320,
    seeds=1,
    rhos="0,0.3",
    baselines="depth",
    policy_lrs="0.3",
    optimizers="adam",
    weightings="abdallah-lesser",
    game_points=1,
    game_samples=2,
    first_samples=10,
)


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_tiny_sweep_writes_one_row_per_run_and_resumes(sweep, tmp_path):
    args = sweep.Args(output_dir=str(tmp_path), **TINY)
    sweep.main(args)
    written = rows(tmp_path / "purity_sweep.csv")
    assert [(r["rho"], r["seed"]) for r in written] == [("0.0", "0"), ("0.3", "0")]
    for r in written:
        assert int(r["samples"]) >= 320 and 0.0 <= float(r["pure_fraction"]) <= 1.0
        assert 0.0 <= float(r["greedy_accuracy"]) <= 1.0 and 0.0 <= float(r["sampled_accuracy"]) <= 1.0
        assert 1 <= int(r["blocks_used_depth_0"]) <= 10
        assert r["nash_conv_0"] != "" and float(r["nash_conv_0"]) >= -1e-9
        pure = [r[f"pure_after_task_{t}"] for t in range(10)]
        # a task's agent is pure at some count of its own samples, or never within the budget
        assert all(p == "" or 0 < int(p) <= int(r["samples"]) for p in pure)
        assert (sum(p != "" for p in pure) == 10) >= (float(r["pure_fraction"]) == 1.0)
    assert (tmp_path / "purity_sweep.png").stat().st_size > 10_000
    assert (tmp_path / "purity_first_samples.png").stat().st_size > 10_000
    # a rerun with one more cell trains only that cell
    sweep.main(sweep.Args(output_dir=str(tmp_path), **{**TINY, "rhos": "0,0.3,1"}))
    again = rows(tmp_path / "purity_sweep.csv")
    assert again[:2] == written and [r["rho"] for r in again[2:]] == ["1.0"]
    assert {r["weighting"] for r in again} == {"abdallah-lesser"}
    # another sweep (other samples, batch size or dataset) is refused in that folder: its rows
    # would be taken for the new sweep's
    for other in ({"samples": 640}, {"batch_size": 32}, {"max_train_samples": 320}):
        with pytest.raises(FileExistsError, match=f"holds another sweep's runs .*{next(iter(other))}"):
            sweep.main(sweep.Args(output_dir=str(tmp_path), **{**TINY, "rhos": "0,0.3,1", **other}))
    assert rows(tmp_path / "purity_sweep.csv") == again
    # a last row cut by a kill is dropped, and its run run again
    path = tmp_path / "purity_sweep.csv"
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1] + "1.0,depth,0.3")
    sweep.main(sweep.Args(output_dir=str(tmp_path), **{**TINY, "rhos": "0,0.3,1"}))
    assert [r["rho"] for r in rows(path)] == ["0.0", "0.3", "1.0"]
    assert rows(path)[2] == {**again[2], "wall_s": rows(path)[2]["wall_s"]}  # the same run again


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_a_csv_from_before_the_weighting_column_is_migrated_and_resumed(sweep, tmp_path):
    args = sweep.Args(output_dir=str(tmp_path), **{**TINY, "rhos": "0"})
    sweep.main(args)
    path = tmp_path / "purity_sweep.csv"
    written = rows(path)
    with open(path, "w", newline="") as fh:  # the same run, written without the column
        old = csv.DictWriter(fh, fieldnames=[k for k in written[0] if k != "weighting"])
        old.writeheader()
        old.writerows({k: v for k, v in r.items() if k != "weighting"} for r in written)
    # the paper cell is the only run left to train; the old row reads as abdallah-lesser
    sweep.main(
        sweep.Args(output_dir=str(tmp_path), **{**TINY, "rhos": "0", "weightings": "abdallah-lesser,paper"})
    )
    again = rows(path)
    assert again[0] == written[0]
    assert [(r["weighting"], r["rho"]) for r in again] == [("abdallah-lesser", "0.0"), ("paper", "0.0")]


def test_purity_is_the_largest_probability_at_every_depth(sweep):
    class Learner:
        is_pure = WPL.is_pure  # the one definition, on a stand-in with only the two tables

        def __init__(self, policy):
            self.policy_nA = np.array(policy, dtype=float)
            self.allowed_nA = self.policy_nA > 0

    assert sweep.is_pure(Learner([[0.995, 0.005], [0.0, 1.0]]), 0.99)
    assert not sweep.is_pure(Learner([[0.995, 0.005], [0.5, 0.5]]), 0.99)
    assert not sweep.is_pure(Learner([[0.0, 0.0], [0.0, 0.0]]), 0.99)  # nothing seen yet


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("rhos", "0,2", "rhos must lie in"),
        ("baselines", "depth,mean", "baselines must be"),
        ("policy_lrs", "0.1,x", "policy-lrs must be"),
        ("optimizers", "rmsprop", "optimizers must be"),
        ("pure_threshold", 1.5, "pure-threshold"),
    ],
)
def test_bad_options_are_refused(sweep, field, value, message):
    with pytest.raises(ValueError, match=message):
        sweep.Args(**{**TINY, field: value})


def test_the_blocks_schedule_follows_the_block_rate(sweep, digits):
    args = sweep.Args(**TINY)
    cell = {"rho": 0.0, "baseline": "depth", "policy_lr": 0.5, "schedule": "blocks", "optimizer": "adam"}
    env, router = sweep.make_run(args, digits, cell, seed=0)
    env.reset(seed=0)
    sweep.set_policy_lr(router, cell, env)
    assert {learner.lr for learner in router.values()} == {0.5}
    for group in env.engine.optimizer.param_groups:
        group["lr"] *= 0.1  # as the env's decay does after lr_decay_every epochs
    sweep.set_policy_lr(router, cell, env)
    assert [learner.lr for learner in router.values()] == pytest.approx([0.05] * len(router))


def test_the_report_summarizes_the_csv_by_hand(sweep, tmp_path, capsys):
    def row(weighting, rho, optimizer, pure, acc, nash, blocks):
        r = {
            "rho": rho,
            "baseline": "depth",
            "policy_lr": "0.3",
            "optimizer": optimizer,
            "weighting": weighting,
        }
        r |= {f"pure_after_task_{t}": p for t, p in enumerate(pure)}
        r |= {
            "blocks_used_depth_0": blocks,
            "blocks_used_depth_1": "2",
            "nash_conv_0": "9",
            "nash_conv_1": nash,
        }
        return r | {"greedy_accuracy": acc, "wall_s": "30"}

    data = [
        row("paper", "0.0", "adam", ["100", "300"], "0.95", "0.5", "3"),
        row("paper", "0.3", "sgd", ["200", ""], "0.90", "0.1", "1"),
        row("abdallah-lesser", "0.0", "adam", ["", ""], "0.90", "0.0", "4"),
    ]
    text = sweep.report(data)
    assert text.splitlines()[0] == "3 runs, 1.5 min of training in all"
    assert "paper: 3/4 agents pure; samples per task to purity, median (range): 200 (100-300)" in text
    assert "  by rho: 0.0: 2/2 pure, median 200; 0.3: 1/2 pure, median 200" in text
    assert (
        "  adam: greedy 95.00-95.00% (mean 95.00%, 1 runs); NashConv at the end, median 0.50 (0.50-0.50)"
        in text
    )
    assert "  rho 0.3: distinct greedy blocks per depth 1.0 / 2.0" in text
    assert "abdallah-lesser: 0/2 agents pure; samples per task to purity, median (range): never" in text
    # --report-only prints it from the CSV and trains nothing
    path = tmp_path / "purity_sweep.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    assert sweep.main(sweep.Args(output_dir=str(tmp_path), report_only=True, **TINY)) == path
    assert capsys.readouterr().out.strip() == text
    with pytest.raises(FileNotFoundError, match="run the sweep first"):
        sweep.main(sweep.Args(output_dir=str(tmp_path / "none"), report_only=True, **TINY))
