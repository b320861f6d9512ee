"""REINFORCE: one SGD step by hand, returns against a plain loop, baselines, masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import Reinforce, Trace


def make_reinforce(spaces, num_actions=3, num_depths=1, **kwargs):
    obs_space, act_space = spaces(num_actions=num_actions, num_depths=num_depths)
    return Reinforce(observation_space=obs_space, action_space=act_space, seed=0, **kwargs)


def table(agent):
    return agent.policy_net.table_nA.detach().double().numpy()


def test_one_tabular_sgd_step_by_hand(spaces, obs):
    agent = make_reinforce(spaces, representation="table", optimizer="sgd", lr=0.1, baseline="none")
    o = obs(mask=[1, 1, 1])
    np.testing.assert_allclose(agent.action_probs(o), [1 / 3] * 3)
    agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=1.0))
    # d log softmax / d logits at the uniform policy = e_0 - pi = (2/3, -1/3, -1/3); step lr * R
    np.testing.assert_allclose(table(agent)[0], 0.1 * np.array([2 / 3, -1 / 3, -1 / 3]), rtol=1e-6)


def test_masked_logits_get_no_gradient(spaces, obs):
    agent = make_reinforce(spaces, representation="table", optimizer="sgd", lr=0.1, baseline="none")
    o = obs(mask=[1, 1, 0])
    agent.learn(Trace(observations=[o], actions=[1], rewards=[0.0], final_reward=-1.0))
    # pi = (0.5, 0.5, 0); gradient of -R log pi(1) with R = -1 pushes logit 1 down by lr * 0.5
    np.testing.assert_allclose(table(agent)[0], [0.05, -0.05, 0.0], rtol=1e-6)
    assert agent.action_probs(o)[2] == 0.0


def test_returns_and_update_of_a_three_decision_trace_match_a_plain_loop(spaces, obs):
    gamma, lr = 0.9, 0.05
    agent = make_reinforce(
        spaces, num_depths=3, representation="table", optimizer="sgd", lr=lr, baseline="none", gamma=gamma
    )
    observations = [obs(depth=d, mask=[1, 1, 1]) for d in range(3)]
    actions, rewards, final = [2, 0, 1], [0.1, -0.2, 0.3], -1.0
    stats = agent.learn(
        Trace(observations=observations, actions=actions, rewards=rewards, final_reward=final)
    )
    expected_rows = []
    returns = []
    for i in range(3):
        ret = final + sum(gamma ** (j - i) * rewards[j] for j in range(i, 3))
        returns.append(ret)
        grad = -np.full(3, 1 / 3)
        grad[actions[i]] += 1.0
        expected_rows.append(lr * ret * grad)  # each depth has its own row
    np.testing.assert_allclose(table(agent), expected_rows, rtol=1e-5, atol=1e-7)
    assert stats["mean_advantage"] == pytest.approx(np.mean(returns), rel=1e-6)


def test_average_baseline_is_read_before_it_is_updated(spaces, obs):
    agent = make_reinforce(spaces, representation="table", optimizer="sgd", lr=0.1, baseline_rate=0.5)
    o = obs(mask=[1, 1, 1])
    first = agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=1.0))
    assert first["mean_advantage"] == pytest.approx(1.0)  # baseline 0 before the update
    assert agent.average_return_n[0] == pytest.approx(0.5)
    second = agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=1.0))
    assert second["mean_advantage"] == pytest.approx(0.5)
    assert agent.average_return_n[0] == pytest.approx(0.75)


def test_value_baseline_is_fitted_to_the_returns(spaces, obs):
    agent = make_reinforce(spaces, representation="table", optimizer="sgd", lr=0.1, baseline="value")
    o = obs(mask=[1, 1, 1])
    stats = agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=1.0))
    assert stats["value_loss"] == pytest.approx(1.0)  # (V = 0 - R = 1)^2
    # d/dV (V - R)^2 = -2 at V = 0: one SGD step moves V to 0.2
    assert agent.value_net.table_nA.item() == pytest.approx(0.2)


def test_the_mlp_reads_the_representation_and_the_task(spaces, obs):
    obs_space, act_space = spaces(num_actions=3, num_depths=2, num_tasks=4, width=5)
    agent = Reinforce(observation_space=obs_space, action_space=act_space, seed=0)
    mlp = agent.policy_net.mlps[1]
    assert mlp[0].in_features == 5 + 4 and mlp[0].out_features == 64 and mlp[2].out_features == 3
    a = agent.action_probs(obs(depth=1, task=0, mask=[1, 1, 1], v=np.ones(5)))
    b = agent.action_probs(obs(depth=1, task=3, mask=[1, 1, 1], v=np.ones(5)))
    c = agent.action_probs(obs(depth=1, task=0, mask=[1, 1, 1], v=-np.ones(5)))
    assert not np.allclose(a, b) and not np.allclose(a, c)
    # the initial policy is close to uniform (small output layer)
    np.testing.assert_allclose(a, [1 / 3] * 3, atol=0.05)


def test_one_gradient_step_raises_the_probability_of_a_rewarded_action(spaces, obs):
    agent = make_reinforce(spaces, num_actions=4, lr=1e-2, baseline="none")
    o = obs(mask=[1, 1, 1, 1], v=[0.3, -0.1, 0.5, 1.0])
    before = agent.action_probs(o)
    agent.learn(Trace(observations=[o], actions=[2], rewards=[0.0], final_reward=1.0))
    assert agent.action_probs(o)[2] > before[2]


def test_building_an_agent_leaves_the_global_torch_generator_alone(spaces):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_reinforce(spaces, baseline="value")
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_same_seed_same_network(spaces, obs):
    o = obs(mask=[1, 1, 1], v=[1, 2, 3, 4])
    a = make_reinforce(spaces).action_probs(o)
    b = make_reinforce(spaces).action_probs(o)
    np.testing.assert_array_equal(a, b)
