"""Q-learning: one Watkins update on a two-state problem by hand, epsilon schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents import EpsilonSchedule, QLearning, Trace


def make_q(spaces, num_actions=3, num_depths=2, **kwargs):
    obs_space, act_space = spaces(num_actions=num_actions, num_depths=num_depths)
    return QLearning(observation_space=obs_space, action_space=act_space, seed=0, **kwargs)


def test_one_update_on_a_two_state_problem_by_hand(spaces, obs):
    """State 0 (depth 0) -> state 1 (depth 1) -> end. The bootstrap takes the max over the
    actions allowed in state 1 only (action 2, worth 9, is masked there)."""
    agent = make_q(spaces, lr=0.5, gamma=0.9)
    agent.q_nA[1] = [0.5, 2.0, 9.0]
    o0, o1 = obs(depth=0, mask=[1, 1, 1]), obs(depth=1, mask=[1, 1, 0])
    agent.learn(Trace(observations=[o0, o1], actions=[1, 0], rewards=[0.1, 0.2], final_reward=1.0))
    # Q(0, 1) += 0.5 * (0.1 + 0.9 * max(0.5, 2.0) - 0) = 0.95
    assert agent.q_nA[0, 1] == pytest.approx(0.95)
    # the last decision is terminal: Q(1, 0) += 0.5 * (0.2 + 1.0 - 0.5) = 0.85
    assert agent.q_nA[1, 0] == pytest.approx(0.85)
    # nothing else moved
    np.testing.assert_array_equal(agent.q_nA[0, [0, 2]], [0.0, 0.0])
    np.testing.assert_array_equal(agent.q_nA[1, 1:], [2.0, 9.0])


def test_the_mlp_fits_the_same_targets(spaces, obs):
    agent = make_q(spaces, representation="mlp", lr=1e-2, gamma=0.9)
    o0, o1 = obs(depth=0, mask=[1, 1, 1], v=[1, 0, 0, 0]), obs(depth=1, mask=[1, 1, 0], v=[0, 1, 0, 0])
    trace = Trace(observations=[o0, o1], actions=[1, 0], rewards=[0.1, 0.2], final_reward=1.0)
    first = agent.learn(trace)["td_error"]
    for _ in range(300):
        last = agent.learn(trace)["td_error"]
    assert last < 0.05 < first
    # the terminal decision converges to r + r_final
    assert agent.q_values(o1)[0] == pytest.approx(1.2, abs=0.05)
    # and the first to r + gamma * max over the allowed actions of state 1
    q1 = agent.q_values(o1)
    assert agent.q_values(o0)[1] == pytest.approx(0.1 + 0.9 * q1[:2].max(), abs=0.05)


def test_epsilon_greedy_probabilities(spaces, obs):
    agent = make_q(spaces, num_actions=4, epsilon=0.2)
    agent.q_nA[0] = [1.0, 3.0, 3.0, 5.0]
    o = obs(mask=[1, 1, 1, 0])
    # action 3 is masked; actions 1 and 2 tie for the greedy value and share 0.8
    np.testing.assert_allclose(agent.action_probs(o), [0.2 / 3, 0.2 / 3 + 0.4, 0.2 / 3 + 0.4, 0.0])
    assert agent.greedy_action(o) == 1


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (EpsilonSchedule(start=1.0, end=0.1, steps=10, kind="linear"), [1.0, 0.55, 0.1, 0.1]),
        (
            EpsilonSchedule(start=1.0, end=0.1, steps=10, kind="exponential"),
            [1.0, 0.1 + 0.9 * math.exp(-0.5), 0.1 + 0.9 * math.exp(-1), 0.1 + 0.9 * math.exp(-2)],
        ),
        (EpsilonSchedule.constant(0.3), [0.3] * 4),
    ],
)
def test_epsilon_schedules(schedule, expected):
    np.testing.assert_allclose([schedule(t) for t in (0, 5, 10, 20)], expected)


def test_epsilon_decays_with_the_traces_learned(spaces, obs):
    agent = make_q(spaces, num_depths=1, epsilon=EpsilonSchedule(start=1.0, end=0.0, steps=4))
    o = obs(mask=[1, 1, 1])
    assert agent.epsilon == 1.0
    for _ in range(2):
        agent.learn(Trace(observations=[o], actions=[0], rewards=[0.0], final_reward=1.0))
    assert agent.epsilon == pytest.approx(0.5)
    agent.act(o)  # acting does not advance the schedule
    assert agent.epsilon == pytest.approx(0.5)
