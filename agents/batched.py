"""The batched routing loop: every agent acts on its rows of a minibatch at each depth.

The counterpart of :mod:`agents.multi` for a batched routing env
(:class:`routing_env.BatchedRoutingEnv`): an episode routes one minibatch; at each step
the rows of the batched observation are split by ``obs["agent"]`` and each learner
acts on its own rows (:meth:`~agents.base.RouterAgent.act_batch`); when the minibatch
is routed each learner learns from its traces in row order
(:meth:`~agents.base.RouterAgent.learn_batch`). The dispatcher, when there is one,
acts first and learns from the final reward of each sample it dispatched.

Only the env's public batched interface is used: ``reset``, ``step`` and
``possible_agents``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from agents.base import RouterAgent, TraceBatch
from agents.multi import RunStats, _check_num_samples, is_dispatcher

__all__ = ["evaluate_batched", "run_batch_episode", "train_batched"]


def run_batch_episode(
    env: Any,
    router: Mapping[str, RouterAgent],
    *,
    train: bool = True,
    greedy: bool = False,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> RunStats:
    """Route one minibatch with ``router`` (acting, and learning when ``train``).

    Args:
        env: A batched routing env (``reset`` returns a batched observation, ``step``
            returns ``(observation, rewards, done, info)``).
        router: The learner of every agent id of ``env.possible_agents``.
        train: Hand each learner its traces when the minibatch is routed.
        greedy: Act greedily instead of sampling.
        seed: Passed to ``env.reset`` (a seed starts a new run).
        options: Passed to ``env.reset`` (e.g. ``{"mode": "eval"}``).

    Returns:
        The minibatch's :class:`~agents.multi.RunStats`.
    """
    agent_ids = list(env.possible_agents)
    obs = env.reset(seed=seed, options=dict(options) if options is not None else None)
    # per agent: its rows, and per decision the observation, actions and rewards
    steps: dict[int, list[tuple[Any, np.ndarray, np.ndarray]]] = {}
    rows_of: dict[int, np.ndarray] = {}
    done = False
    info: dict[str, Any] = {}
    while not done:
        agent_B = np.asarray(obs["agent"])
        B = len(agent_B)
        actions = np.empty(B, dtype=np.int64)
        present = np.unique(agent_B)
        if len(present) == 1:
            groups = [(int(present[0]), np.arange(B), obs)]
        else:
            groups = []
            for k in present.tolist():
                rows = np.flatnonzero(agent_B == k)
                groups.append((k, rows, obs.select(rows)))
        for k, rows, sub in groups:
            actions[rows] = router[agent_ids[k]].act_batch(sub, greedy=greedy)
        next_obs, rewards, done, info = env.step(actions)
        for k, rows, sub in groups:
            rows_of.setdefault(k, rows)
            steps.setdefault(k, []).append((sub, actions[rows], np.asarray(rewards, dtype=np.float64)[rows]))
        obs = next_obs

    stats = _batch_stats(info, env)
    final_B = np.asarray(info["final_reward"], dtype=np.float64)
    if train:
        for k, decisions in steps.items():
            rows = rows_of[k]
            immediate = np.stack([r for _, _, r in decisions], axis=1)
            final = final_B[rows]
            if not is_dispatcher(agent_ids[k]):
                immediate[:, -1] -= final  # the env adds the final reward to the last decision's
            traces = TraceBatch(
                observations=[sub for sub, _, _ in decisions],
                actions=np.stack([a for _, a, _ in decisions], axis=1),
                rewards=immediate,
                final_rewards=final,
            )
            router[agent_ids[k]].learn_batch(traces)
            stats.traces_learned += len(traces)
    return stats


def _batch_stats(info: Mapping[str, Any], env: Any) -> RunStats:
    final = np.asarray(info["final_reward"], dtype=np.float64)
    stats = RunStats(num_samples=len(final), final_reward_sum=float(final.sum()), episodes=1)
    correct = info.get("correct")
    task = info.get("task")
    if correct is not None:
        correct = np.asarray(correct, dtype=bool)
        stats.num_judged = len(correct)
        stats.num_correct = int(correct.sum())
        if task is not None:
            task = np.asarray(task)
            for t in np.unique(task).tolist():
                rows = task == t
                stats.correct_per_task[int(t)] = [int(correct[rows].sum()), int(rows.sum())]
    return stats


def train_batched(
    env: Any,
    router: Mapping[str, RouterAgent],
    *,
    num_samples: int,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
    callback: Callable[[RunStats, RunStats], None] | None = None,
) -> RunStats:
    """Train ``router`` on minibatches until at least ``num_samples`` samples are routed.

    The batched counterpart of :func:`agents.multi.train` (same arguments and stats);
    whole minibatches are routed, so with ``num_samples`` a multiple of the batch size
    (or a whole epoch) exactly that many are.
    """
    _check_num_samples(num_samples)
    total = RunStats()
    first_options: Mapping[str, Any] | None = {"mode": "train"} if options is None else options
    first = True
    while total.num_samples < num_samples:
        episode = run_batch_episode(
            env, router, train=True, seed=seed if first else None, options=first_options if first else None
        )
        first = False
        total.merge(episode)
        if callback is not None:
            callback(episode, total)
    return total


def evaluate_batched(
    env: Any,
    router: Mapping[str, RouterAgent],
    *,
    num_samples: int | None = None,
    greedy: bool = True,
    options: Mapping[str, Any] | None = None,
) -> RunStats:
    """Route the test split (or ``num_samples`` of it) without learning.

    The first reset passes ``{"mode": "eval"}``, which starts a pass over the test
    split; with ``num_samples=None`` the whole split is routed once (until the env's
    ``eval_pass_complete``).
    """
    if num_samples is not None:
        _check_num_samples(num_samples)
    total = RunStats()
    first_options: Mapping[str, Any] = {"mode": "eval"} if options is None else options
    first = True
    while first or not (num_samples is None and env.eval_pass_complete):
        if num_samples is not None and total.num_samples >= num_samples:
            break
        episode = run_batch_episode(
            env, router, train=False, greedy=greedy, options=first_options if first else None
        )
        first = False
        total.merge(episode)
    return total
