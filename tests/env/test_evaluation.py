"""Evaluation passes cover every task from their first samples (issue 15).

The test splits are stored task by task; a pass routes them in the engine's fixed,
task-interleaved order, so stopping early still scores every task in proportion. The end
of a pass (no wrap-around, no double counting, a clear error) is pinned in test_faults.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import routing_env
from routing_env.engine import interleaved_order

from .helpers import random_choice, run_episodes


def prefix_counts(tasks_N: np.ndarray, order: np.ndarray) -> np.ndarray:
    """counts[m - 1, t]: samples of task t among the first m of the order."""
    num_tasks = int(tasks_N.max()) + 1
    return np.cumsum(np.eye(num_tasks, dtype=np.int64)[tasks_N[order]], axis=0)


def test_interleaved_order_of_equal_tasks_keeps_every_prefix_within_one_sample():
    tasks = np.repeat(np.arange(10), 359)  # digits-MTL's test split: 10 tasks, stored by task
    order = interleaved_order(tasks)
    assert sorted(order.tolist()) == list(range(len(tasks)))
    assert tasks[order[:20]].tolist() == list(range(10)) * 2
    counts = prefix_counts(tasks, order)
    m = np.arange(1, len(tasks) + 1)[:, None]
    assert np.abs(counts - m / 10).max() <= 1.0


@pytest.mark.parametrize("seed", range(5))
def test_interleaved_order_of_unequal_tasks_is_proportional_and_keeps_each_tasks_order(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 80, size=rng.integers(2, 12))
    tasks = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))  # any stored order
    order = interleaved_order(tasks)
    assert sorted(order.tolist()) == list(range(len(tasks)))
    for t in range(len(sizes)):  # each task's samples keep their stored order
        positions = order[tasks[order] == t]
        assert (np.diff(positions) > 0).all()
    counts = prefix_counts(tasks, order)
    m = np.arange(1, len(tasks) + 1)[:, None]
    share = sizes / sizes.sum()
    bound = 0.5 + 0.5 * (len(sizes) - 1) * share  # the bound documented in interleaved_order
    assert (np.abs(counts - m * share) <= bound + 1e-9).all()


def test_a_pass_stopped_early_scores_every_task(digits):
    """The issue's case: 1,000 of 3,590 test samples scored tasks 0-2 and NaN for the rest."""
    env = routing_env.env(dataset=digits)
    env.reset(seed=0)
    log = run_episodes(env, 1000, random_choice(0), options={"mode": "eval"})
    result = env.unwrapped.evaluation()
    assert result["samples"] == 1000 and not result["complete"] and not env.unwrapped.eval_pass_complete
    assert not np.isnan(result["accuracy_per_task"]).any()
    scored = np.bincount([t[3]["task"] for t in log if t[3]["sample_done"]], minlength=digits.num_tasks)
    assert scored.tolist() == [100] * digits.num_tasks


def test_every_pass_routes_the_same_order_and_the_whole_split_once(digits):
    env = routing_env.env(dataset=digits, router="single", samples_per_episode=500)
    env.reset(seed=0)
    passes = []
    for _ in range(2):
        log = run_episodes(env, 8, random_choice(0), options={"mode": "eval"})  # 8 x 500 > 3,590
        passes.append([t[3]["sample_index"] for t in log if t[3]["sample_done"]])
        assert env.unwrapped.eval_pass_complete
        assert env.unwrapped.evaluation()["samples"] == len(digits.test)
        with pytest.raises(RuntimeError, match="evaluation pass is complete"):
            env.reset()
    assert passes[0] == passes[1] == env.unwrapped.engine.eval_order.tolist()
    assert sorted(passes[0]) == list(range(len(digits.test)))
