"""Every algorithm learns a toy routing problem whose best route is known.

Two tasks; two depths (3 blocks at depth 0, 2 at depth 1, of 3 actions). A sample is
correct with probability ``0.2 + 0.4 * (number of depths on its task's best route)``:
1.0 on the best route, 0.6 one block off, 0.2 otherwise. A greedy policy scores 100%
only when both agents' greedy routes are their tasks' best routes.

Tabular Q-learning is tested on a one-depth version: with the depth as its only
state, every depth-0 target is ``max_a' Q(depth 1, a')`` whatever the depth-0 action
was, so when only the final reward depends on the depth-0 choice its table cannot
tell those actions apart (a limitation of the paper's tabular representation, not of
the implementation). The MLP variant sees the representation, which reflects the
blocks applied so far, and learns both depths.
"""

from __future__ import annotations

import functools

import pytest

from agents import WPL, EpsilonSchedule, MultiAgentRouter, QLearning, Reinforce, evaluate, train

BEST = {0: (2, 1), 1: (0, 0)}


def closer_is_better(task, route, router_index, rng):
    matches = sum(int(a == b) for a, b in zip(route, BEST[task], strict=False))
    return bool(rng.random() < 0.2 + 0.4 * matches * 2 / len(route))


LEARNERS = {
    # the paper's weighting makes the boundary absorbing: at lr 0.1 one seed in six locks
    # into a route one block off before it has seen enough samples; at 0.03 none does
    "wpl": (functools.partial(WPL, lr=0.03), (3, 2), 1500),
    "wpl-abdallah-lesser": (functools.partial(WPL, lr=0.1, weighting="abdallah-lesser"), (3, 2), 1500),
    "reinforce-table": (functools.partial(Reinforce, representation="table", lr=0.1), (3, 2), 1000),
    "reinforce-mlp": (functools.partial(Reinforce, lr=1e-2), (3, 2), 1000),
    "reinforce-mlp-value": (functools.partial(Reinforce, lr=1e-2, baseline="value"), (3, 2), 1000),
    "qlearning-table": (functools.partial(QLearning, lr=0.1, epsilon=0.2), (3,), 500),
    "qlearning-mlp": (
        functools.partial(
            QLearning, representation="mlp", lr=1e-2, epsilon=EpsilonSchedule(start=1.0, end=0.05, steps=500)
        ),
        (3, 2),
        1500,
    ),
}


@pytest.mark.parametrize("name", LEARNERS)
def test_learns_the_best_route_of_each_task(name, fake_routing_env):
    factory, layer_sizes, budget = LEARNERS[name]
    env = fake_routing_env(correct=closer_is_better, num_tasks=2, layer_sizes=layer_sizes)
    router = MultiAgentRouter.from_env(env, router_factory=factory, seed=0)
    before = evaluate(env, router, num_samples=50)
    assert before.accuracy < 0.9  # the greedy policy does not start on both best routes
    train(env, router, num_samples=budget, seed=0)
    after = evaluate(env, router, num_samples=50)
    assert after.accuracy == 1.0
    assert set(after.accuracy_per_task) == {0, 1}


def test_the_per_action_average_does_not_find_it(fake_routing_env):
    """Why WPL's default ``baseline`` is ``"depth"``: with one historical average per
    ``(depth, action)`` each average tracks its own action's return, so on this
    stationary problem the gradient fades before the best route is found (6 of 6
    seeds fail with this budget; the default finds it on all of them)."""
    accuracy = {}
    for baseline in ("action", "depth"):
        env = fake_routing_env(correct=closer_is_better, num_tasks=2, layer_sizes=(3, 2))
        wpl = functools.partial(
            WPL, lr=0.1, baseline=baseline, return_average_rate=0.01, weighting="abdallah-lesser"
        )
        router = MultiAgentRouter.from_env(env, router_factory=wpl, seed=0)
        train(env, router, num_samples=1500, seed=0)
        accuracy[baseline] = evaluate(env, router, num_samples=50).accuracy
    # the same budget and rates: the default finds both best routes, the per-action one does
    # not (so this test fails for a WPL that learns nothing, not only for one that learns)
    assert accuracy["depth"] == 1.0
    assert accuracy["action"] < 0.9
