"""benchmarks/evaluation.py: both ways of evaluating, timed and checked against each other."""

from __future__ import annotations

import subprocess

import pytest

from .example_scripts import run_benchmark


def run(*flags: str) -> subprocess.CompletedProcess[str]:
    return run_benchmark("evaluation.py", *flags)


def test_the_benchmark_times_routing_and_a_baseline_both_ways():
    done = run("--baselines", "task-specific-1-fc", "--train-samples", "128", "--rounds", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "digits-mtl: 3,590 test samples, 359 distinct inputs"
    assert [line.split(":")[0] for line in lines[1:]] == ["routing", "task-specific-1-fc"]
    assert all("s merged" in line and "same counts" in line for line in lines[1:])


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_an_unknown_baseline_is_refused():
    done = run("--baselines", "task-specific-9-fc")
    assert done.returncode == 2 and "unknown baselines ['task-specific-9-fc']" in done.stderr
