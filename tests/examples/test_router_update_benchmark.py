"""benchmarks/router_update.py: train_wpl.py timed per trace and per minibatch, side by side."""

from __future__ import annotations

import csv
import subprocess

import pytest

from .example_scripts import run_benchmark


def run(*flags: str) -> subprocess.CompletedProcess[str]:
    return run_benchmark("router_update.py", *flags)


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_the_benchmark_runs_both_updates_and_writes_its_csv(tmp_path):
    out = tmp_path / "times.csv"
    done = run("--max-train-samples", "320", "--max-test-samples", "100", "--epochs", "2", "--csv", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("trace     (run 0): epoch times ") and "after epoch 2" in lines[0]
    assert lines[1].startswith("minibatch (run 0): epoch times ")
    assert "--router-update trace: " in done.stdout and "--router-update minibatch: " in done.stdout
    assert "trace / minibatch: " in done.stdout
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["update"] for row in rows] == ["trace", "minibatch"]
    assert all(
        len(row["epoch_times_s"].split()) == 2 and 0 <= float(row["final_test_accuracy"]) <= 1 for row in rows
    )


def test_bad_counts_are_refused():
    done = run("--epochs", "0")
    assert done.returncode == 2 and "--epochs and --repeats must be >= 1" in done.stderr
