"""PettingZoo's own checkers over every router configuration."""

from __future__ import annotations

import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import api_test, render_test, seed_test

# imported under other names so that pytest does not collect them as tests of this module
from pettingzoo.test.state_test import test_state as check_state
from pettingzoo.test.state_test import test_state_space as check_state_space

import routing_env

CONFIGS = {
    "per_task-layered": dict(router="per_task", routing="layered"),
    "single-layered": dict(router="single", routing="layered"),
    "dispatched-layered": dict(router="dispatched", routing="layered"),
    "per_task-recurrent": dict(router="per_task", routing="recurrent"),
    "single-recurrent": dict(router="single", routing="recurrent"),
    "dispatched-recurrent": dict(router="dispatched", routing="recurrent"),
    "per_task-layered-3_samples": dict(router="per_task", samples_per_episode=3),
    "dispatched-recurrent-3_samples": dict(router="dispatched", routing="recurrent", samples_per_episode=3),
    "dispatched-5_routers": dict(router="dispatched", num_routers=5),
    "per_task-recurrent-hidden_64": dict(routing="recurrent", hidden_width=64),
}


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_api(config, digits):
    env = routing_env.env(dataset=digits, batch_size=8, **config)
    api_test(env, num_cycles=50)


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_seed(config, digits):
    seed_test(lambda: routing_env.env(dataset=digits, batch_size=8, **config), num_cycles=50)


@pytest.mark.skipif(
    not hasattr(pettingzoo, "aec_registry"), reason="PettingZoo's registry exists from pettingzoo 1.27 on"
)
def test_registered_with_pettingzoo(digits):
    env = pettingzoo.make("aec", routing_env.ENV_ID, dataset=digits, router="single")
    env.reset(seed=0)
    assert env.agents == ["router_0"]
    assert isinstance(env.unwrapped, routing_env.RoutingEnv)
    per_task = pettingzoo.make("aec", "routing_env/Routing-v0", dataset=digits)
    per_task.reset(seed=0)
    assert per_task.agents == per_task.possible_agents == [f"router_{t}" for t in range(digits.num_tasks)]


def test_spaces_are_cached_and_shared_by_routers(digits):
    env = routing_env.RoutingEnv(dataset=digits, router="dispatched")
    routers = [a for a in env.possible_agents if a.startswith("router_")]
    assert len(routers) == digits.num_tasks
    for a in routers:
        assert env.observation_space(a) is env.observation_space(routers[0])
        assert env.action_space(a) is env.action_space(routers[0])
    assert env.action_space("dispatcher_0").n == len(routers)


LAYERED = {name: config for name, config in CONFIGS.items() if config.get("routing", "layered") == "layered"}


# PettingZoo's state test samples actions without the mask, which the recurrent variant
# refuses (not every block fits every depth); the state itself is tested below for both
@pytest.mark.parametrize("config", list(LAYERED.values()), ids=list(LAYERED))
def test_state(config, digits):
    def make():
        return routing_env.env(dataset=digits, batch_size=8, **config)

    check_state_space(make())
    check_state(make(), num_cycles=30)


def test_state_is_the_representation_task_and_depth(digits):
    env = routing_env.env(dataset=digits, batch_size=8, routing="recurrent")
    raw = env.unwrapped
    env.reset(seed=0)
    width, tasks = raw.observation_width, raw.num_tasks
    assert raw.state_space.shape == (width + tasks + raw.num_decisions,)
    for depth in range(raw.num_decisions):
        obs, *_ = env.last()
        state = env.state()
        assert raw.state_space.contains(state)
        np.testing.assert_array_equal(state[:width], obs["observation"])
        assert state[width + obs["task"]] == 1.0 and state[width : width + tasks].sum() == 1.0
        assert state[width + tasks + depth] == 1.0 and state[width + tasks :].sum() == 1.0
        env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    assert not env.state().any()  # the sample is routed: no current sample


def test_render_test_passes_and_human_prints_the_ansi_line(digits, capsys):
    render_test(lambda render_mode: routing_env.env(dataset=digits, batch_size=8, render_mode=render_mode))
    capsys.readouterr()
    ansi = routing_env.env(dataset=digits, render_mode="ansi")
    human = routing_env.env(dataset=digits, render_mode="human")
    for env in (ansi, human):
        env.reset(seed=0)
    line = ansi.render()
    assert human.render() is None
    assert capsys.readouterr().out == line + "\n" and "task" in line
    with pytest.raises(ValueError, match="render_mode must be None, 'ansi' or 'human'"):
        routing_env.env(dataset=digits, render_mode="rgb_array")
