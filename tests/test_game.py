"""Game analysis: synthetic payoff tables, a handcrafted network with a known equilibrium,
consistency with the network's forward pass and with the env's own evaluation."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

import routing_env
from agents import WPL, MultiAgentRouter, evaluate, train
from routing_env.datasets import MultiTaskDataset, TaskSplit
from routing_env.game import (
    RouteDistribution,
    TaskGame,
    analyze_game,
    analyze_task_games,
    expand_task_game,
)
from routing_env.network import RoutingNetwork


class TablePolicy:
    """A fixed tabular policy ``table[depth, action]`` (renormalized over the mask)."""

    def __init__(self, table) -> None:
        self.table = np.asarray(table, dtype=np.float64)

    def action_probs(self, obs):
        p = self.table[int(obs["depth"])] * np.asarray(obs["action_mask"], dtype=np.float64)
        return p / p.sum()


# ------------------------------------------------------------------ synthetic games
def game(task, rewards_NP, probs_P, agent):
    rewards = np.asarray(rewards_NP, dtype=np.float64)
    paths = np.arange(rewards.shape[1])[:, None]
    return TaskGame(
        task=task,
        paths_Pn=paths,
        rewards_NP=rewards,
        routes={agent: RouteDistribution.from_probs(np.asarray(probs_P)[None, :], rewards)},
        weights={agent: np.ones(len(rewards))},
    )


# task 0: path 0 always right, path 1 always wrong, path 2 right on half the samples
R0 = [[1, -1, 1], [1, -1, -1], [1, -1, 1], [1, -1, -1]]
# task 1: path 2 is best (3 of 4, and on both halves of the samples), path 0 worst
R1 = [[-1, 1, 1], [-1, -1, 1], [-1, -1, 1], [-1, -1, -1]]


def test_synthetic_equilibrium_has_zero_nash_conv():
    result = analyze_task_games(
        [game(0, R0, [1, 0, 0], "router_0"), game(1, R1, [0, 0, 1], "router_1")], eps=0.01
    )
    assert result.nash_conv == pytest.approx(0.0)
    assert result.num_pure == 2 and result.mean_entropy == pytest.approx(0.0)
    a0, a1 = result.agent("router_0"), result.agent("router_1")
    assert a0.value == pytest.approx(1.0) and a1.value == pytest.approx(0.5)
    assert a0.best == {0: (0,)} and a1.best == {1: (2,)}
    assert result.value == pytest.approx(0.75)


def test_synthetic_uniform_policies():
    result = analyze_task_games([game(0, R0, [1 / 3] * 3, "router_0"), game(1, R1, [1 / 3] * 3, "router_1")])
    a0, a1 = result.agent("router_0"), result.agent("router_1")
    assert a0.value == pytest.approx(0.0)  # (1 - 1 + 0) / 3
    assert a0.best_response_value == pytest.approx(1.0) and a0.gain == pytest.approx(1.0)
    assert a1.value == pytest.approx(np.mean(R1))  # uniform over the paths
    assert a1.gain == pytest.approx(0.5 - np.mean(R1))
    assert result.nash_conv == pytest.approx(a0.gain + a1.gain)
    assert a0.entropy == pytest.approx(math.log(3)) and not a0.pure
    assert a0.max_prob == pytest.approx(1 / 3)
    # standard errors: sample sd / sqrt(N) of the per-sample gains
    d1 = np.asarray(R1, dtype=float)[:, 2] - np.asarray(R1, dtype=float).mean(axis=1)
    assert a1.gain_se == pytest.approx(d1.std(ddof=1) / 2)
    assert result.nash_conv_se == pytest.approx(math.hypot(a0.gain_se, a1.gain_se))
    # cross-fitted: path 2 is best on both halves of task 1, path 0 on both of task 0
    assert a1.gain_heldout == pytest.approx(a1.gain) and a0.gain_heldout == pytest.approx(a0.gain)


def test_heldout_gain_removes_the_winners_curse():
    # 200 paths of pure noise: every path is worth 0 in expectation, so the true gain is 0
    plug_in, heldout = [], []
    for seed in range(20):
        rewards = np.random.default_rng(seed).choice([-1.0, 1.0], size=(100, 200))
        a = analyze_task_games([game(0, rewards, np.full(200, 1 / 200), "router_0")]).agent("router_0")
        plug_in.append(a.gain)
        heldout.append(a.gain_heldout)
    assert min(plug_in) > 0.2  # the plug-in maximum always looks like a real gain (~3 SE)
    assert abs(np.mean(heldout)) < 0.1  # the cross-fitted one is unbiased (sd of the mean ~0.03)


def test_dispatched_synthetic_game():
    # one task, two routers: router_0 always right, router_1 always wrong; dispatch 50/50
    rewards = np.array([[1.0, -1.0]] * 4)
    good = RouteDistribution.from_probs(np.array([[1.0, 0.0]]), rewards)
    bad = RouteDistribution.from_probs(np.array([[0.0, 1.0]]), rewards)
    g = TaskGame(
        task=0,
        paths_Pn=np.array([[0], [1]]),
        rewards_NP=rewards,
        routes={"router_0": good, "router_1": bad},
        weights={"router_0": np.full(4, 0.5), "router_1": np.full(4, 0.5)},
    )
    result = analyze_task_games([g], agents=["router_0", "router_1"], dispatcher="dispatcher_0")
    d = result.agent("dispatcher_0")
    assert d.value == pytest.approx(0.0) and d.best_response_value == pytest.approx(1.0)
    assert d.gain == pytest.approx(1.0) and d.best == {0: 0}
    assert d.entropy == pytest.approx(math.log(2)) and not d.pure
    assert result.agent("router_0").gain == pytest.approx(0.0)
    assert result.agent("router_1").gain == pytest.approx(2.0)  # -1 -> +1 on its samples
    assert result.agent("router_1").weight == pytest.approx(2.0)
    assert result.nash_conv == pytest.approx(3.0)
    with pytest.raises(ValueError, match="sum to 1"):
        bad_weights = TaskGame(
            task=0, paths_Pn=g.paths_Pn, rewards_NP=rewards, routes=g.routes,
            weights={"router_0": np.full(4, 0.5), "router_1": np.full(4, 0.2)},
        )  # fmt: skip
        analyze_task_games([bad_weights], agents=["router_0", "router_1"], dispatcher="dispatcher_0")


# ------------------------------------------------------------------ a handcrafted network
def linear(weight, bias=(0.0, 0.0)):
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return layer


def handcrafted():
    """Two tasks on 2-pixel inputs: task 0 asks argmax, task 1 argmin.

    Depth 0: block 0 = identity, block 1 = zero map (then every prediction is class 0).
    Depth 1: block 0 = identity, block 1 = swap. So task 0's best path is (0, 0) (always
    right) and task 1's is (0, 1) (always right); (0, 1) / (0, 0) are always wrong for
    them, and paths through the zero block are right exactly when the label is 0.
    """
    identity, zero, swap = [[1, 0], [0, 1]], [[0, 0], [0, 0]], [[0, 1], [1, 0]]
    network = RoutingNetwork(
        trunk=nn.Flatten(),
        layers=[[linear(identity), linear(zero)], [linear(identity), linear(swap)]],
        input_shape=(1, 1, 2),
        output_size=2,
    )
    rng = np.random.default_rng(0)

    def split(n):
        x = rng.random((2 * n, 1, 1, 2)).astype(np.float32)
        tasks = np.repeat([0, 1], n)
        targets = np.where(tasks == 0, x[:, 0, 0].argmax(1), x[:, 0, 0].argmin(1))
        return TaskSplit(
            inputs_NCHW=torch.from_numpy(x),
            tasks_N=torch.from_numpy(tasks),
            targets_N=torch.from_numpy(targets),
        )

    dataset = MultiTaskDataset(
        name="handcrafted", train=split(20), test=split(40), num_classes=(2, 2), mean=(0.5,), std=(1.0,)
    )
    return network, dataset


def test_handcrafted_payoffs_are_the_known_ones():
    network, dataset = handcrafted()
    g0 = expand_task_game(network, dataset, task=0)
    g1 = expand_task_game(network, dataset, task=1)
    assert g0.paths_Pn.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    targets0 = dataset.test.targets_N[dataset.test.tasks_N == 0].numpy()
    label0 = np.where(targets0 == 0, 1.0, -1.0)
    assert np.array_equal(g0.rewards_NP[:, 0], np.ones(40))
    assert np.array_equal(g0.rewards_NP[:, 1], -np.ones(40))
    assert np.array_equal(g0.rewards_NP[:, 2], label0) and np.array_equal(g0.rewards_NP[:, 3], label0)
    assert np.array_equal(g1.rewards_NP[:, 1], np.ones(40))
    assert np.array_equal(g1.rewards_NP[:, 0], -np.ones(40))


def test_handcrafted_equilibrium_and_deviations():
    network, dataset = handcrafted()
    equilibrium = {"router_0": TablePolicy([[1, 0], [1, 0]]), "router_1": TablePolicy([[1, 0], [0, 1]])}
    games = [
        expand_task_game(network, dataset, task=t, policies={f"router_{t}": equilibrium[f"router_{t}"]})
        for t in (0, 1)
    ]
    result = analyze_task_games(games)
    assert result.nash_conv == pytest.approx(0.0) and result.nash_conv_heldout == pytest.approx(0.0)
    assert result.num_pure == 2 and result.value == pytest.approx(1.0)
    assert result.agent("router_0").best == {0: (0, 0)} and result.agent("router_1").best == {1: (0, 1)}

    # router_1 plays the best path of task 0 (always wrong for task 1): it alone can gain, by 2
    wrong = {"router_0": equilibrium["router_0"], "router_1": TablePolicy([[1, 0], [1, 0]])}
    games = [
        expand_task_game(network, dataset, task=t, policies={f"router_{t}": wrong[f"router_{t}"]})
        for t in (0, 1)
    ]
    result = analyze_task_games(games)
    assert result.agent("router_0").gain == pytest.approx(0.0)
    assert result.agent("router_1").gain == pytest.approx(2.0) and result.nash_conv == pytest.approx(2.0)

    # a mixed policy: values are exact expectations over the four paths
    mixed = TablePolicy([[0.5, 0.5], [0.75, 0.25]])
    g0 = expand_task_game(network, dataset, task=0, policies={"router_0": mixed})
    path_probs = np.array([0.5 * 0.75, 0.5 * 0.25, 0.5 * 0.75, 0.5 * 0.25])
    expected = RouteDistribution.from_probs(path_probs[None], g0.rewards_NP)
    got = g0.routes["router_0"]
    assert np.allclose(got.value_N, expected.value_N) and np.allclose(got.entropy_N, expected.entropy_N)
    assert np.allclose(got.max_prob_N, 0.375)


def test_expand_restores_mode_and_rejects_bad_input():
    network, dataset = handcrafted()
    network.train()
    expand_task_game(network, dataset, task=0)
    assert network.training
    with pytest.raises(ValueError, match="task"):
        expand_task_game(network, dataset, task=2)
    with pytest.raises(ValueError, match="split"):
        expand_task_game(network, dataset, task=0, split="val")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="other than"):
        expand_task_game(network, dataset, task=0, indices=np.array([0, 79]))
    with pytest.raises(ValueError, match="at least one"):
        analyze_task_games([])
    with pytest.raises(ValueError, match="eps"):
        analyze_task_games([game(0, R0, [1, 0, 0], "router_0")], eps=1.0)


# ------------------------------------------------------------------ the routing env
def small_env(digits, **config):
    return routing_env.env(
        dataset=digits, batch_size=16, hidden_width=16, optimizer="adam", lr=3e-3, **config
    )


@pytest.mark.parametrize("routing", ["layered", "recurrent"])
def test_payoffs_match_the_networks_forward(digits, routing):
    env = small_env(digits, routing=routing)
    env.reset(seed=0)
    network = env.unwrapped.network
    indices = np.flatnonzero(digits.test.tasks_N.numpy() == 3)[:25]
    g = expand_task_game(network, digits, task=3, indices=indices)
    # every valid route is enumerated exactly once
    assert len({tuple(p) for p in g.paths_Pn.tolist()}) == len(g.paths_Pn)
    if routing == "layered":
        assert len(g.paths_Pn) == 1000
    rng = np.random.default_rng(0)
    picks = rng.choice(len(g.paths_Pn), size=20, replace=False)
    network.eval()
    with torch.no_grad():
        x = digits.normalize(digits.test.inputs_NCHW[torch.from_numpy(indices)])
        targets = digits.test.targets_N[torch.from_numpy(indices)]
        for p in picks:
            routes = torch.from_numpy(np.tile(g.paths_Pn[p], (len(indices), 1)))
            correct = network(x, routes).argmax(dim=1) == targets
            assert np.array_equal(g.rewards_NP[:, p], np.where(correct.numpy(), 1.0, -1.0))


def test_top_route_value_matches_the_envs_greedy_evaluation(digits):
    env = small_env(digits)
    router = MultiAgentRouter.from_env(env, router_factory=functools.partial(WPL, lr=0.3), seed=0)
    train(env, router, num_samples=600, seed=0)
    result = analyze_game(env, router)
    evaluate(env, router, num_samples=len(digits.test))  # greedy: the argmax of each depth
    accuracy = env.unwrapped.evaluation()["accuracy"]
    top = np.mean([a.top_route_value for a in result.agents])  # 359 test samples per task
    assert top == pytest.approx(2 * accuracy - 1)
    assert result.num_samples == len(digits.test) and result.num_paths == 1000
    assert result.nash_conv >= -1e-9 and all(a.gain >= -1e-9 for a in result.agents)
    assert all(a.gain_se >= 0 for a in result.agents)


def test_analysis_does_not_change_training(digits):
    states = []
    for analyze in (False, True):
        env = small_env(digits)
        router = MultiAgentRouter.from_env(env, seed=0)
        train(env, router, num_samples=100, seed=0)
        if analyze:
            analyze_game(env, router, max_samples_per_task=5)
        train(env, router, num_samples=100)
        states.append((router.state_dict(), env.unwrapped.network.state_dict()))
    for key, value in states[0][1].items():
        assert torch.equal(value, states[1][1][key]), key
    for agent, state in states[0][0].items():
        assert np.array_equal(state["policy"], states[1][0][agent]["policy"]), agent


def test_per_sample_agrees_for_tabular_policies(digits):
    env = small_env(digits)
    router = MultiAgentRouter.from_env(env, seed=1)
    train(env, router, num_samples=300, seed=0)
    a = analyze_game(env, router, max_samples_per_task=8)
    b = analyze_game(env, router, max_samples_per_task=8, per_sample=True)
    assert a.summary() == pytest.approx(b.summary())


@pytest.mark.parametrize("config", ["single", "dispatched"])
def test_interacting_configurations(digits, config):
    env = small_env(digits, router=config)
    router = MultiAgentRouter.from_env(env, seed=0)
    train(env, router, num_samples=100, seed=0)
    result = analyze_game(env, router, max_samples_per_task=6)
    ids = [a.agent for a in result.agents]
    if config == "single":
        assert ids == ["router_0"]
        assert set(result.agents[0].best) == set(range(10))  # a best path per task
    else:
        assert ids[0] == "dispatcher_0" and len(ids) == 11
        assert sum(a.weight for a in result.agents[1:]) == pytest.approx(60)  # dispatch probabilities
    assert math.isfinite(result.nash_conv) and result.num_samples == 60
    with pytest.raises(ValueError, match="no policy"):
        analyze_game(env, {"router_5": router["router_0"]})


def test_analyze_game_rejects_other_envs():
    with pytest.raises(TypeError, match="RoutingEnv"):
        analyze_game(object(), {})
