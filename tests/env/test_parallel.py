"""routing_env.parallel_env: the same game under PettingZoo's parallel API, every agent observing every step."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

import routing_env
from routing_env.datasets import subsample

CONFIGS = {
    "per_task-layered": dict(router="per_task"),
    "single-layered": dict(router="single"),
    "dispatched-layered": dict(router="dispatched"),
    "per_task-recurrent": dict(routing="recurrent"),
    "single-recurrent": dict(router="single", routing="recurrent"),
    "dispatched-recurrent-3_samples": dict(router="dispatched", routing="recurrent", samples_per_episode=3),
}


@pytest.fixture(scope="module")
def small(digits):
    return subsample(digits, max_train=200, max_test=50)


@pytest.mark.parametrize("flat", [False, True], ids=["dict", "flat"])
@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_pettingzoo_parallel_checks_pass_in_every_configuration(small, config, flat):
    # a flat Box hides the mask from PettingZoo's sampler: the first allowed action replaces a masked one
    invalid = "first_valid" if flat else "raise"
    parallel_api_test(
        routing_env.parallel_env(dataset=small, batch_size=8, flat=flat, invalid_action=invalid, **config),
        num_cycles=50,
    )
    parallel_seed_test(
        lambda: routing_env.parallel_env(
            dataset=small, batch_size=8, flat=flat, invalid_action="first_valid", **config
        ),
        num_cycles=50,
    )


def test_one_agent_acts_the_others_are_idle_and_the_rewards_are_the_aec_envs(small):
    """The same routes give the same rewards and weights as the AEC env."""
    par = routing_env.parallel_env(dataset=small, batch_size=8)
    aec = routing_env.env(dataset=small, batch_size=8)
    observations, infos = par.reset(seed=3)
    aec.reset(seed=3)
    rng = np.random.default_rng(0)
    total_par, total_aec = 0.0, 0.0
    for episode in range(40):
        if episode:
            observations, infos = par.reset()
            aec.reset()
        while par.agents:
            acting = [a for a in par.agents if observations[a]["idle"] == 0]
            assert acting == [aec.agent_selection]  # exactly one agent decides, the AEC env's
            assert all(
                infos[a]["idle"] == 1 and infos[a]["action_mask"].tolist()[:1] == [1]
                for a in par.agents
                if a not in acting
            )
            np.testing.assert_array_equal(
                infos[acting[0]]["action_mask"], observations[acting[0]]["action_mask"]
            )
            action = int(rng.choice(np.flatnonzero(observations[acting[0]]["action_mask"])))
            actions = {a: (action if a in acting else 0) for a in par.agents}
            observations, rewards, terminations, truncations, infos = par.step(actions)
            assert all(rewards[a] == 0.0 for a in rewards if a not in acting)
            total_par += sum(rewards.values())
            aec.step(action)
            total_aec += sum(aec.rewards.values())
            while aec.agents and (aec.terminations[aec.agent_selection]):
                aec.step(None)
        assert all(terminations.values()) and not par.agents
    assert total_par == pytest.approx(total_aec)
    a, b = par.aec_env.state_dict(), aec.unwrapped.state_dict()
    for name, tensor in a["engine"]["network"].items():
        assert bool((tensor == b["engine"]["network"][name]).all()), name


def test_the_flat_observation_is_the_dict_in_order(small):
    flat = routing_env.parallel_env(dataset=small, batch_size=8, flat=True)
    plain = routing_env.parallel_env(dataset=small, batch_size=8)
    vectors, _ = flat.reset(seed=0)
    dicts, _ = plain.reset(seed=0)
    acting = next(a for a in plain.agents if dicts[a]["idle"] == 0)
    d = dicts[acting]
    width, tasks, depths = len(d["observation"]), 10, 3
    v = vectors[acting]
    assert flat.observation_space(acting).contains(v) and v.shape == (width + tasks + depths + 10 + 1,)
    np.testing.assert_array_equal(v[:width], d["observation"])
    assert v[width + d["task"]] == 1.0 and v[width + tasks + d["depth"]] == 1.0
    np.testing.assert_array_equal(v[width + tasks + depths : -1], d["action_mask"])
    assert v[-1] == 0.0 and all(vectors[a][-1] == 1.0 for a in flat.agents if a != acting)


def test_a_masked_action_of_the_acting_agent_raises_or_is_replaced(small):
    env = routing_env.parallel_env(dataset=small, batch_size=8, routing="recurrent")
    observations, _ = env.reset(seed=0)
    acting = next(a for a in env.agents if observations[a]["idle"] == 0)
    with pytest.raises(ValueError, match="needs an action for"):
        env.step({})
    while True:  # to a depth where some action is masked
        mask = observations[acting]["action_mask"]
        if not mask.all():
            break
        observations, *_ = env.step({a: 0 for a in env.agents})
        acting = next(a for a in env.agents if observations[a]["idle"] == 0)
    masked = int(np.flatnonzero(mask == 0)[0])
    with pytest.raises(ValueError, match="masked"):
        env.step({a: masked for a in env.agents})
    replacing = routing_env.parallel_env(
        dataset=small, batch_size=8, routing="recurrent", invalid_action="first_valid"
    )
    with pytest.raises(ValueError, match="invalid_action"):
        routing_env.parallel_env(dataset=small, invalid_action="skip")
    assert replacing.invalid_action == "first_valid"
