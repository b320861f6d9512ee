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

from agents.base import RouterAgent, TraceBatch, select_rows
from agents.multi import RunStats, _check_num_samples, _train_loop, is_dispatcher, learn_flag

__all__ = ["evaluate_batched", "run_batch_episode", "train_batched"]


def run_batch_episode(
    env: Any,
    router: Mapping[str, RouterAgent],
    *,
    learn: bool = True,
    greedy: bool = False,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
    train: bool | None = None,
) -> RunStats:
    """Route one minibatch with ``router`` (acting, and learning when ``learn``).

    Args:
        env: A batched routing env (``reset`` returns a batched observation, ``step``
            returns ``(observation, rewards, done, info)``).
        router: The learner of every agent id of ``env.possible_agents``.
        learn: Hand each learner its traces when the minibatch is routed.
        greedy: Act greedily instead of sampling.
        seed: Passed to ``env.reset`` (a seed starts a new run).
        options: Passed to ``env.reset`` (e.g. ``{"mode": "eval"}``).
        train: The former name of ``learn``, kept for code that passes it (warns).

    Returns:
        The minibatch's :class:`~agents.multi.RunStats`.
    """
    learn = learn_flag(learn, train)
    agent_ids = list(env.possible_agents)
    obs = env.reset(seed=seed, options=dict(options) if options is not None else None)
    steps: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = []  # (obs, agent_B, actions, rewards)
    done = False
    info: dict[str, Any] = {}
    while not done:
        agent_B = np.asarray(obs["agent"])
        actions = _act(router, agent_ids, obs, agent_B, greedy)
        next_obs, rewards, done, info = env.step(actions)
        steps.append((obs, agent_B, actions, np.asarray(rewards, dtype=np.float64)))
        obs = next_obs

    stats = _batch_stats(info)
    if learn:
        final_B = np.asarray(info["final_reward"], dtype=np.float64)
        for group in _trace_groups(steps):
            observations = [step[0] for step in group]
            agent_B = group[0][1]
            rewards = np.stack([step[3] for step in group], axis=1)
            final = final_B.copy()
            dispatcher_rows = np.array([is_dispatcher(agent_ids[k]) for k in agent_B.tolist()], dtype=bool)
            # the env adds the final reward to a router's last decision: split it off, as
            # Trace.from_env_rewards does; the dispatcher gets it as its decision's reward
            rewards[~dispatcher_rows, -1] -= final[~dispatcher_rows]
            rewards[dispatcher_rows, -1] += final[dispatcher_rows]
            final[dispatcher_rows] = 0.0
            traces = TraceBatch(
                observations=observations,
                actions=np.stack([step[2] for step in group], axis=1),
                rewards=rewards,
                final_rewards=final,
            )
            for learners, owner_B, rows in _by_class(router, agent_ids, agent_B):
                part = traces if rows is None else traces.select(rows)
                type(learners[0]).learn_group(learners, part, owner_B)
            stats.traces_learned += len(traces)
    return stats


def _by_class(
    router: Mapping[str, RouterAgent], agent_ids: list[str], agent_B: np.ndarray
) -> list[tuple[list[RouterAgent], np.ndarray, np.ndarray | None]]:
    """The rows' learners grouped by class: (learners, owner index per row, rows or None for all)."""
    present, owner = np.unique(agent_B, return_inverse=True)
    learners = [router[agent_ids[k]] for k in present.tolist()]
    classes = {type(learner) for learner in learners}
    if len(classes) == 1:
        return [(learners, owner.reshape(-1), None)]
    groups: list[tuple[list[RouterAgent], np.ndarray, np.ndarray | None]] = []
    for cls in classes:
        ks = [i for i, learner in enumerate(learners) if type(learner) is cls]
        rows = np.flatnonzero(np.isin(owner, ks))
        remap = np.full(len(learners), -1, dtype=np.int64)
        remap[ks] = np.arange(len(ks))
        groups.append(([learners[i] for i in ks], remap[owner[rows]], rows))
    return groups


def _act(
    router: Mapping[str, RouterAgent], agent_ids: list[str], obs: Any, agent_B: np.ndarray, greedy: bool
) -> np.ndarray:
    actions = np.empty(len(agent_B), dtype=np.int64)
    for learners, owner_B, rows in _by_class(router, agent_ids, agent_B):
        sub = obs if rows is None else select_rows(obs, rows)
        chosen = type(learners[0]).act_group(learners, sub, owner_B, greedy=greedy)
        if rows is None:
            actions = chosen
        else:
            actions[rows] = chosen
    return actions


def _trace_groups(
    steps: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]],
) -> list[list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]]]:
    """Consecutive steps in which every row has the same agent: each group holds one trace
    per row (the dispatcher's single decision, then the routers' decisions)."""
    groups: list[list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]]] = []
    for step in steps:
        if groups and np.array_equal(groups[-1][0][1], step[1]):
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


def _batch_stats(info: Mapping[str, Any]) -> RunStats:
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
    return _train_loop(
        run_batch_episode, env, router, num_samples=num_samples, seed=seed, options=options, callback=callback
    )


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
            env, router, learn=False, greedy=greedy, options=first_options if first else None
        )
        first = False
        total.merge(episode)
    return total
