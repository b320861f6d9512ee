"""WPL: hand-computed updates (both gradient signs), the projections, masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents import WPL, Trace, floor_projection, simplex_projection


def make_wpl(spaces, num_actions=3, num_depths=1, **kwargs):
    obs_space, act_space = spaces(num_actions=num_actions, num_depths=num_depths)
    return WPL(observation_space=obs_space, action_space=act_space, seed=0, **kwargs)


# ------------------------------------------------------------------ projections
def test_simplex_projection_clips_then_normalizes():
    np.testing.assert_allclose(simplex_projection(np.array([0.7, 0.5, -0.1])), [0.7 / 1.2, 0.5 / 1.2, 0.0])
    np.testing.assert_allclose(simplex_projection(np.array([1.4, 0.5, 0.1])), [1 / 1.6, 0.5 / 1.6, 0.1 / 1.6])
    # masked entries are zeroed before normalizing
    np.testing.assert_allclose(
        simplex_projection(np.array([0.2, 0.2, 0.6]), np.array([1, 1, 0])), [0.5, 0.5, 0.0]
    )
    # everything clipped to 0: uniform over the allowed actions instead of 0/0
    np.testing.assert_allclose(
        simplex_projection(np.array([-0.1, -0.2, 0.4]), np.array([1, 1, 0])), [0.5, 0.5, 0]
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-2, 2), min_size=1, max_size=6))
def test_simplex_projection_gives_a_distribution(values):
    p = simplex_projection(np.asarray(values))
    assert np.all(p >= 0) and p.sum() == pytest.approx(1.0)


def test_floor_projection_by_hand():
    # (0.9, 0.1, 0.0) with floor 0.05: the last entry rises by 0.05 and, the projection being
    # Euclidean, the two others pay 0.025 each: (0.875, 0.075, 0.05)
    np.testing.assert_allclose(floor_projection(np.array([0.9, 0.1, 0.0]), 0.05), [0.875, 0.075, 0.05])
    feasible = np.array([0.5, 0.3, 0.2])
    np.testing.assert_allclose(floor_projection(feasible, 0.1), feasible)  # identity when feasible
    np.testing.assert_allclose(
        floor_projection(np.array([1.0, 0.0, 0.0]), 0.25, np.array([1, 1, 0])), [0.75, 0.25, 0]
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=6), st.floats(0, 0.15))
def test_floor_projection_respects_the_floor(values, floor):
    p = simplex_projection(np.asarray(values))
    q = floor_projection(p, floor)
    assert np.all(q >= floor - 1e-12) and q.sum() == pytest.approx(1.0)
    # it is the closest such point: no feasible vertex-mix is nearer than q
    assert np.linalg.norm(q - p) <= np.linalg.norm(np.full_like(p, 1 / len(p)) - p) + 1e-9


# ------------------------------------------------------------------ one update
def key(baseline, depth, action):
    """Where the historical average of (depth, action) lives for each baseline."""
    return (depth, action) if baseline == "action" else (depth,)


@pytest.mark.parametrize("baseline", ["depth", "action"])
def test_one_update_with_a_positive_gradient_by_hand(spaces, obs, baseline):
    agent = make_wpl(spaces, lr=0.1, baseline=baseline, weighting="abdallah-lesser")
    o = obs(mask=[1, 1, 1])
    assert agent.action_probs(o) == pytest.approx([1 / 3] * 3)
    agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=1.0))
    # R = 1; avg = 0.9 * 0 + 0.1 * 1 = 0.1; Delta = 1 - 0.1 = 0.9 > 0 -> * (1 - pi) = 0.9 * 2/3 = 0.6
    # pi_0 = 1/3 + 0.1 * 0.6 = 0.39333..; projection divides by 1.06
    assert agent.average_return[key(baseline, 0, 0)] == pytest.approx(0.1)
    expected = np.array([0.39333333333, 1 / 3, 1 / 3]) / 1.06
    np.testing.assert_allclose(agent.policy[0], expected)
    np.testing.assert_allclose(expected, [0.37106918, 0.31446541, 0.31446541], atol=1e-8)


@pytest.mark.parametrize("baseline", ["depth", "action"])
def test_one_update_with_a_negative_gradient_by_hand(spaces, obs, baseline):
    agent = make_wpl(spaces, lr=0.1, baseline=baseline, weighting="abdallah-lesser")
    o = obs(mask=[1, 1, 1])
    agent.act(o)  # the first observation of depth 0 initializes its row
    agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=-1.0))
    # R = -1; avg = -0.1; Delta = -0.9 < 0 -> * pi = -0.9 / 3 = -0.3; pi_0 = 1/3 - 0.03; sum = 0.97
    expected = np.array([1 / 3 - 0.03, 1 / 3, 1 / 3]) / 0.97
    np.testing.assert_allclose(agent.policy[0], expected)
    np.testing.assert_allclose(expected, [0.31271478, 0.34364261, 0.34364261], atol=1e-8)


@pytest.mark.parametrize(("final_reward", "weight"), [(1.0, 0.2), (-1.0, 0.8)])
def test_the_weight_is_one_minus_pi_for_positive_and_pi_for_negative_gradients(
    spaces, obs, final_reward, weight
):
    """weighting="abdallah-lesser" (appendix 7.4), not Algorithm 3's: at pi(a) = 0.8 a positive
    gradient is scaled by 1 - 0.8 = 0.2 and a negative one by 0.8."""
    agent = make_wpl(spaces, num_actions=2, lr=0.1, weighting="abdallah-lesser")
    o = obs(mask=[1, 1])
    agent.act(o)
    agent.policy_nA[0] = [0.8, 0.2]
    agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=final_reward))
    delta = 0.9 * final_reward  # R - ((1 - lr) * 0 + lr * R)
    moved = np.array([0.8 + 0.1 * delta * weight, 0.2])
    np.testing.assert_allclose(agent.policy[0], moved / moved.sum())


@pytest.mark.parametrize("final_reward, weight", [(1.0, 0.8), (-1.0, 0.2)])
def test_the_default_is_algorithm3_as_printed(spaces, obs, final_reward, weight):
    """The default, weighting="paper": at pi(a) = 0.8 a positive gradient is scaled by 0.8
    and a negative one by 1 - 0.8 = 0.2 (section 3.1.2 and Algorithm 3, not appendix 7.4)."""
    agent = make_wpl(spaces, num_actions=2, lr=0.1)
    assert agent.weighting == "paper"
    o = obs(mask=[1, 1])
    agent.act(o)
    agent.policy_nA[0] = [0.8, 0.2]
    agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=final_reward))
    moved = np.array([0.8 + 0.1 * 0.9 * final_reward * weight, 0.2])
    np.testing.assert_allclose(agent.policy[0], moved / moved.sum())
    for name in ("printed", "appendix", "algorithm3"):  # the names of before are not taken silently
        with pytest.raises(ValueError, match="weighting must be 'paper'"):
            make_wpl(spaces, weighting=name)


def test_the_unweighted_ablation_drops_the_weights(spaces, obs):
    agent = make_wpl(spaces, num_actions=2, lr=0.1, weighted=False)
    o = obs(mask=[1, 1])
    agent.act(o)
    agent.policy_nA[0] = [0.8, 0.2]
    agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=-1.0))
    moved = np.array([0.8 - 0.1 * 0.9, 0.2])
    np.testing.assert_allclose(agent.policy[0], moved / moved.sum())


@pytest.mark.parametrize("baseline", ["depth", "action"])
def test_a_two_decision_trace_by_hand(spaces, obs, baseline):
    """Each depth has its own row and average; returns add r_final undiscounted."""
    agent = make_wpl(spaces, num_actions=2, num_depths=2, lr=0.5, gamma=0.5, baseline=baseline)
    o0, o1 = obs(depth=0, mask=[1, 1]), obs(depth=1, mask=[1, 1])
    agent.act(o0), agent.act(o1)
    agent.average_return[key(baseline, 1, 1)] = 2.0  # a history at depth 1
    agent.learn(Trace(observations=[o0, o1], actions=[0, 1], rewards=[0.2, 0.4], final_reward=1.0))
    # R_0 = 1 + 0.2 + 0.5 * 0.4 = 1.4; avg = 0.7; Delta = 0.7 > 0 -> * (1 - 0.5) = 0.35
    # pi_0 = (0.5 + 0.5 * 0.35, 0.5) / 1.175
    assert agent.average_return[key(baseline, 0, 0)] == pytest.approx(0.7)
    np.testing.assert_allclose(agent.policy[0], np.array([0.675, 0.5]) / 1.175)
    # R_1 = 1 + 0.4 = 1.4; avg = 0.5 * 2 + 0.5 * 1.4 = 1.7; Delta = -0.3 < 0 -> * 0.5 = -0.15
    # pi_1 = (0.5, 0.5 - 0.5 * 0.15) / 0.925
    assert agent.average_return[key(baseline, 1, 1)] == pytest.approx(1.7)
    np.testing.assert_allclose(agent.policy[1], np.array([0.5, 0.425]) / 0.925)


def test_depth_baseline_shares_one_average_per_depth(spaces, obs):
    agent = make_wpl(spaces, num_actions=2, lr=0.1, weighting="abdallah-lesser")
    assert agent.baseline == "depth"  # the default
    o = obs(mask=[1, 1])
    agent.act(o)
    agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=1.0))
    agent.learn(Trace(observations=[o], actions=[1], rewards=[0.0], final_reward=1.0))
    assert agent.average_return.shape == (1,)
    # 0.1 after the first trace, then 0.9 * 0.1 + 0.1 * 1 = 0.19: action 1 saw action 0's history
    assert agent.average_return[0] == pytest.approx(0.19)
    # first update: pi = (0.5 + 0.1 * 0.9 * 0.5, 0.5) / 1.045
    first = np.array([0.545, 0.5]) / 1.045
    # second: Delta = 1 - 0.19 = 0.81, weighted by 1 - pi(1)
    second = first + [0.0, 0.1 * 0.81 * (1 - first[1])]
    np.testing.assert_allclose(agent.policy[0], second / second.sum())


def test_action_baseline_keeps_one_average_per_action(spaces, obs):
    agent = make_wpl(spaces, num_actions=2, lr=0.1, baseline="action")
    o = obs(mask=[1, 1])
    agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=1.0))
    agent.learn(Trace(observations=[o], actions=[1], rewards=[0.0], final_reward=1.0))
    np.testing.assert_allclose(agent.average_return, [[0.1, 0.1]])


def test_a_slower_return_average(spaces, obs):
    agent = make_wpl(spaces, num_actions=2, lr=0.1, return_average_rate=0.01)
    o = obs(mask=[1, 1])
    agent.act(o)
    agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=1.0))
    assert agent.average_return[0] == pytest.approx(0.01)
    # Delta = 0.99 * (1 - 0.5) = 0.495
    np.testing.assert_allclose(agent.policy[0], np.array([0.5 + 0.0495, 0.5]) / 1.0495)


# ------------------------------------------------------------------ masks
@pytest.mark.parametrize("baseline", ["depth", "action"])
def test_a_return_average_rate_of_one_never_learns_and_warns(spaces, obs, baseline):
    # beta = lr (the paper's coupling) at lr = 1: TR becomes R before Delta = R - TR is taken
    with pytest.warns(UserWarning, match="never learns"):
        agent = make_wpl(spaces, lr=1.0, baseline=baseline)
    o = obs(mask=[1, 1, 1])
    for action, final in [(0, 1.0), (1, -1.0), (2, 1.0), (0, -1.0)]:
        agent.learn(Trace(observations=[o], actions=[action], rewards=[0.0], final_reward=final))
    np.testing.assert_allclose(agent.policy[0], [1 / 3] * 3)
    # a smaller return average rate with the same lr learns
    moving = make_wpl(spaces, lr=1.0, return_average_rate=0.1, baseline=baseline)
    moving.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=1.0))
    assert moving.policy[0][0] > 1 / 3


def test_rows_start_uniform_over_the_allowed_actions(spaces, obs):
    agent = make_wpl(spaces, num_actions=4, num_depths=2)
    np.testing.assert_allclose(agent.action_probs(obs(depth=0, mask=[1, 1, 0, 0])), [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(agent.action_probs(obs(depth=1, mask=[1, 1, 1, 0])), [1 / 3] * 3 + [0])


def test_masked_actions_keep_probability_zero_through_learning(spaces, obs):
    agent = make_wpl(spaces, num_actions=4, lr=0.5)
    o = obs(mask=[1, 1, 0, 0])
    for reward in [-1.0, -1.0, 1.0, -1.0] * 5:
        agent.learn(Trace(observations=[o], actions=[agent.act(o)], rewards=[0.0], final_reward=reward))
        assert np.all(agent.policy[0, 2:] == 0.0)
        assert agent.policy[0].sum() == pytest.approx(1.0)


def test_an_action_allowed_later_joins_the_row(spaces, obs):
    agent = make_wpl(spaces, num_actions=3)
    agent.act(obs(mask=[1, 1, 0]))
    agent.policy_nA[0] = [0.8, 0.2, 0.0]
    probs = agent.action_probs(obs(mask=[1, 1, 1]))
    # the newcomer gets 1/3; the old entries share 2/3 in their old ratio
    np.testing.assert_allclose(probs, [0.8 * 2 / 3, 0.2 * 2 / 3, 1 / 3])
    # acting under a narrower mask renormalizes over it
    np.testing.assert_allclose(
        agent.action_probs(obs(mask=[0, 1, 1])), np.array([0, 0.2 * 2 / 3, 1 / 3]) / (7 / 15)
    )


def test_the_floor_keeps_every_allowed_action_alive(spaces, obs):
    agent = make_wpl(spaces, num_actions=3, lr=1.0, return_average_rate=0.01, min_prob=0.05)
    o = obs(mask=[1, 1, 1])
    for _ in range(30):
        agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=-1.0))
    assert agent.policy[0, 0] == pytest.approx(0.05)
    assert agent.policy[0].sum() == pytest.approx(1.0)


def test_wpl_rejects_a_trace_with_a_masked_action(spaces, obs):
    agent = make_wpl(spaces)
    with pytest.raises(ValueError, match="masks"):
        agent.learn(Trace(observations=[obs(mask=[1, 0, 1])], actions=[1], rewards=[0.0], final_reward=1.0))
