"""The shared interface: returns, traces, spaces, masks, seeding, state and bad arguments."""

from __future__ import annotations

import functools

import gymnasium
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents import (
    WPL,
    Dispatcher,
    EpsilonSchedule,
    QLearning,
    Reinforce,
    RouterSpaces,
    Trace,
    compute_returns,
)
from agents.base import as_generator, sample_from

AGENTS = {
    "wpl": WPL,
    "wpl-depth-floor": functools.partial(WPL, baseline="depth", min_prob=0.05),
    "reinforce-table": functools.partial(Reinforce, representation="table"),
    "reinforce-mlp": Reinforce,
    "reinforce-mlp-value": functools.partial(Reinforce, baseline="value", optimizer="sgd"),
    "qlearning-table": QLearning,
    "qlearning-mlp": functools.partial(QLearning, representation="mlp"),
    "dispatcher": Dispatcher,
}


def make_agent(name, spaces, seed=0, **sizes):
    obs_space, act_space = spaces(**sizes)
    return AGENTS[name](observation_space=obs_space, action_space=act_space, seed=seed)


# ------------------------------------------------------------------ returns
def test_returns_by_hand():
    # R_i = r_final + sum_{j>=i} gamma^(j-i) r_j with gamma = 0.5, r_final = 1
    returns = compute_returns([0.1, 0.2, 0.3], final_reward=1.0, gamma=0.5)
    np.testing.assert_allclose(returns, [1 + 0.1 + 0.5 * 0.2 + 0.25 * 0.3, 1 + 0.2 + 0.5 * 0.3, 1 + 0.3])


@settings(max_examples=50, deadline=None)
@given(
    rewards=st.lists(st.floats(-2, 2), max_size=6),
    final=st.floats(-1, 1),
    gamma=st.floats(0, 1),
)
def test_returns_match_a_plain_loop(rewards, final, gamma):
    expected = []
    for i in range(len(rewards)):
        total = final  # the final reward is not discounted (Algorithm 3)
        for j in range(i, len(rewards)):
            total += gamma ** (j - i) * rewards[j]
        expected.append(total)
    np.testing.assert_allclose(compute_returns(rewards, final, gamma), expected, atol=1e-12)


def test_returns_reject_a_bad_gamma():
    with pytest.raises(ValueError, match="gamma"):
        compute_returns([0.0], 0.0, gamma=1.5)


# ------------------------------------------------------------------ traces
def test_trace_splits_the_final_reward_off_the_last_env_reward(obs):
    trace = Trace.from_env_rewards(
        [obs(depth=0), obs(depth=1)],
        [0, 1],
        [0.25, 0.5 + 1.0],  # the env adds the final reward to the last decision's reward
        [{"final_reward": 0.0}, {"final_reward": 1.0, "sample_done": True}],
    )
    assert trace.rewards == [0.25, 0.5]
    assert trace.final_reward == 1.0
    # without the info key the rewards are kept as they are
    plain = Trace.from_env_rewards([obs()], [1], [-1.0], [{}])
    assert plain.rewards == [-1.0] and plain.final_reward == 0.0


def test_trace_needs_one_reward_per_decision(obs):
    with pytest.raises(ValueError, match="one observation, action and reward"):
        Trace(observations=[obs()], actions=[0, 1], rewards=[0.0])


# ------------------------------------------------------------------ spaces
def test_spaces_are_read_from_the_env_spaces(spaces):
    sizes = RouterSpaces.from_spaces(*spaces(num_actions=5, num_depths=3, num_tasks=7, width=9))
    assert sizes == RouterSpaces(num_actions=5, num_depths=3, num_tasks=7, observation_dim=9)


def test_mismatched_spaces_are_rejected(spaces):
    obs_space, _ = spaces(num_actions=3)
    with pytest.raises(ValueError, match="mismatched spaces"):
        WPL(observation_space=obs_space, action_space=gymnasium.spaces.Discrete(4))
    with pytest.raises(TypeError, match="Discrete action space"):
        WPL(observation_space=obs_space, action_space=gymnasium.spaces.Box(0, 1, (3,)))
    with pytest.raises(TypeError, match="misses the keys"):
        WPL(
            observation_space=gymnasium.spaces.Dict({"observation": obs_space["observation"]}),
            action_space=gymnasium.spaces.Discrete(3),
        )


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (WPL, {"lr": -0.1}, "lr"),
        (WPL, {"lr": 0.0}, "lr"),
        (WPL, {"gamma": 1.5}, "gamma"),
        (WPL, {"gamma": -0.1}, "gamma"),
        (WPL, {"return_average_rate": 2.0}, "return_average_rate"),
        (WPL, {"baseline": "q"}, "baseline"),
        (WPL, {"min_prob": 0.5}, "min_prob"),
        (Reinforce, {"lr": -1e-3}, "lr"),
        (Reinforce, {"lr": float("nan")}, "lr"),
        (Reinforce, {"gamma": 2.0}, "gamma"),
        (Reinforce, {"baseline": "learned"}, "baseline"),
        (Reinforce, {"baseline_rate": 0.0}, "baseline_rate"),
        (Reinforce, {"representation": "tree"}, "representation"),
        (Reinforce, {"optimizer": "rmsprop"}, "optimizer"),
        (Reinforce, {"hidden_width": 0}, "hidden_width"),
        (QLearning, {"lr": -0.5}, "lr"),
        (QLearning, {"gamma": -0.5}, "gamma"),
        (QLearning, {"epsilon": 1.5}, "epsilon"),
        (QLearning, {"epsilon": -0.1}, "epsilon"),
        (QLearning, {"representation": "tree"}, "representation"),
        (QLearning, {"optimizer": "rmsprop"}, "optimizer"),
        (Dispatcher, {"lr": -1.0}, "lr"),
    ],
)
def test_bad_hyper_parameters_raise_value_error(spaces, factory, kwargs, match):
    obs_space, act_space = spaces(num_actions=3)
    with pytest.raises(ValueError, match=match):
        factory(observation_space=obs_space, action_space=act_space, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": 1.2},
        {"end": -0.1},
        {"steps": 0},
        {"kind": "cosine"},
    ],
)
def test_bad_epsilon_schedules_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        EpsilonSchedule(**kwargs)


def test_wrongly_typed_arguments_raise_type_error(spaces):
    obs_space, act_space = spaces(num_actions=3)
    with pytest.raises(TypeError, match="lr"):
        WPL(observation_space=obs_space, action_space=act_space, lr="fast")
    with pytest.raises(TypeError, match="seed"):
        WPL(observation_space=obs_space, action_space=act_space, seed="zero")
    with pytest.raises(TypeError, match="epsilon"):
        QLearning(observation_space=obs_space, action_space=act_space, epsilon=None)


# ------------------------------------------------------------------ acting
@settings(max_examples=30, deadline=None)
@given(
    probs=st.lists(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0]), min_size=1, max_size=6),
    seed=st.integers(0, 99),
)
def test_sampling_never_draws_a_zero_probability(probs, seed):
    p = np.asarray(probs, dtype=np.float64)
    if p.sum() == 0:
        p[-1] = 1.0
    p = p / p.sum()
    rng = as_generator(seed)
    draws = {sample_from(p, rng) for _ in range(50)}
    assert all(p[d] > 0 for d in draws)


@pytest.mark.parametrize("name", AGENTS)
def test_agents_never_pick_a_masked_action(name, spaces, obs):
    agent = make_agent(name, spaces, num_actions=5, num_depths=1 if name == "dispatcher" else 3, width=4)
    rng = np.random.default_rng(1)
    for _ in range(40):
        mask = (rng.random(5) < 0.4).astype(np.int8)
        mask[rng.integers(5)] = 1
        depth = 0 if name == "dispatcher" else int(rng.integers(3))
        o = obs(depth=depth, mask=mask, v=rng.normal(size=4))
        probs = agent.action_probs(o)
        assert probs.shape == (5,)
        assert np.all(probs[mask == 0] == 0)
        assert probs.sum() == pytest.approx(1.0)
        assert mask[agent.act(o)] == 1
        assert mask[agent.act(o, greedy=True)] == 1
        # learning from the decision keeps the masks respected afterwards
        agent.learn(Trace(observations=[o], actions=[agent.act(o)], rewards=[0.0], final_reward=1.0))


@pytest.mark.parametrize("name", AGENTS)
def test_agents_reject_malformed_observations(name, spaces, obs):
    agent = make_agent(name, spaces, num_actions=3, width=4)
    with pytest.raises(ValueError, match="length"):
        agent.act(obs(mask=[1, 1]))
    with pytest.raises(ValueError, match="allows no action"):
        agent.act(obs(mask=[0, 0, 0]))


@pytest.mark.parametrize("name", AGENTS)
def test_same_seed_same_actions(name, spaces, obs):
    actions = []
    for _ in range(2):
        agent = make_agent(name, spaces, seed=7, num_actions=4, width=4)
        o = obs(mask=[1, 1, 0, 1], v=[0.5, -1, 2, 0])
        actions.append([agent.act(o) for _ in range(30)])
    assert actions[0] == actions[1]
    assert len(set(actions[0])) > 1  # it does sample


@pytest.mark.parametrize("name", AGENTS)
def test_state_dict_round_trip(name, spaces, obs):
    num_depths = 1 if name == "dispatcher" else 2
    agent = make_agent(name, spaces, seed=3, num_actions=3, num_depths=num_depths, width=4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        observations = [obs(depth=d, mask=[1, 1, 1], v=rng.normal(size=4)) for d in range(num_depths)]
        actions = [agent.act(o) for o in observations]
        agent.learn(
            Trace(
                observations=observations,
                actions=actions,
                rewards=[0.1] * num_depths,
                final_reward=float(rng.choice([-1, 1])),
            )
        )
    clone = make_agent(name, spaces, seed=99, num_actions=3, num_depths=num_depths, width=4)
    clone.load_state_dict(agent.state_dict())
    probe = obs(depth=0, mask=[1, 1, 1], v=[1, 2, 3, 4])
    np.testing.assert_allclose(clone.action_probs(probe), agent.action_probs(probe))
    # the sampling generator travels with the state: the clone continues identically
    assert [clone.act(probe) for _ in range(10)] == [agent.act(probe) for _ in range(10)]


@pytest.mark.parametrize("name", ["wpl", "qlearning-table", "reinforce-table"])
def test_state_of_another_size_is_rejected(name, spaces):
    small = make_agent(name, spaces, num_actions=3)
    large = make_agent(name, spaces, num_actions=4)
    with pytest.raises(ValueError):
        large.load_state_dict(small.state_dict())
