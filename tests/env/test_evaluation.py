"""Evaluation passes cover every task from their first samples (issue 15).

The test splits are stored task by task; a pass routes them in the engine's fixed,
task-interleaved order, so stopping early still scores every task in proportion. The end
of a pass (no wrap-around, no double counting, a clear error) is pinned in test_faults.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

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


# ------------------------------------------- the trunk runs once per distinct test input
@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "sampled"])
def test_duplicate_test_inputs_run_the_trunk_once_and_score_as_before(digits, greedy):
    """Digits-MTL holds each test image once per task (10 copies): evaluation runs the
    trunk on each distinct image of a minibatch once, and every number (accuracies, the
    sampled routes' generator draws) is what running it on every row gives."""
    import functools

    from agents import WPL, MultiAgentRouter, evaluate_batched, train_batched

    def run(merge):
        benv = routing_env.batched_env(
            dataset=digits, batch_size=32, eval_batch_size=200, merge_duplicate_inputs=merge
        )
        router = MultiAgentRouter.from_env(benv, router_factory=functools.partial(WPL, lr=0.3), seed=0)
        train_batched(benv, router, num_samples=640, seed=0)  # batch norm's running stats move
        rows = []
        hook = benv.engine.network.trunk.register_forward_hook(lambda m, i, o: rows.append(len(o)))
        evaluate_batched(benv, router, greedy=greedy)
        hook.remove()
        rngs = [learner.rng.bit_generator.state for learner in router.values()]
        return benv.evaluation(), sum(rows), rngs

    with_dedup, rows_dedup, rngs_dedup = run(True)
    without, rows_all, rngs_all = run(False)
    assert with_dedup == without and rngs_dedup == rngs_all
    assert with_dedup["complete"] and rows_all == len(digits.test)
    # 200 interleaved samples hold 20 images x 10 tasks; the last minibatch is partial
    distinct = len(np.unique(digits.test.inputs_NCHW.reshape(len(digits.test), -1).numpy(), axis=0))
    assert distinct * 10 == len(digits.test) and rows_dedup == distinct


def test_the_aec_env_scores_the_same_with_and_without_merged_duplicates(digits):
    def run(merge):
        env = routing_env.env(dataset=digits, merge_duplicate_inputs=merge)
        env.reset(seed=0)
        run_episodes(env, 256, random_choice(0))
        run_episodes(env, len(digits.test), random_choice(1), options={"mode": "eval"})
        return env.unwrapped.evaluation()

    result = run(True)
    assert result == run(False) and result["complete"]


def test_each_test_sample_maps_to_the_first_sample_with_its_bytes(digits):
    first = digits.test.first_occurrence_N
    x = digits.test.inputs_NCHW.reshape(len(digits.test), -1)
    assert first is not None and (x[first] == x).all()
    _, expected = np.unique(x.numpy(), axis=0, return_index=True)
    assert sorted(set(first.tolist())) == sorted(expected.tolist())
    assert (first <= np.arange(len(x))).all()


def test_merge_duplicate_inputs_must_be_a_bool():
    with pytest.raises(ValueError, match="merge_duplicate_inputs must be a bool"):
        routing_env.TrainingConfig(merge_duplicate_inputs=1)


def test_a_test_split_without_duplicates_runs_the_trunk_on_every_row(digits):
    import dataclasses

    from routing_env.datasets.base import TaskSplit

    task0 = digits.test.tasks_N == 0  # each image once, given to the tasks in turn
    n = int(task0.sum())
    split = TaskSplit(
        inputs_NCHW=digits.test.inputs_NCHW[task0],
        tasks_N=torch.arange(n) % digits.num_tasks,
        targets_N=digits.test.targets_N[task0],
    )
    assert split.first_occurrence_N is None
    rows = []
    env = routing_env.batched_env(dataset=dataclasses.replace(digits, test=split))
    env.engine.network.trunk.register_forward_hook(lambda m, i, o: rows.append(len(o)))
    env.reset(seed=0, options={"mode": "eval"})
    assert rows == [min(n, env.engine.training.eval_batch_size)]
