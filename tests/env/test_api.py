"""PettingZoo's own checkers over every router configuration."""

from __future__ import annotations

import pettingzoo
import pytest
from pettingzoo.test import api_test, seed_test

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


def test_registered_with_pettingzoo(digits):
    env = pettingzoo.make("aec", routing_env.ENV_ID, dataset=digits, router="single")
    env.reset(seed=0)
    assert env.agents == ["router_0"]
    assert isinstance(env.unwrapped, routing_env.RoutingEnv)


def test_spaces_are_cached_and_shared_by_routers(digits):
    env = routing_env.RoutingEnv(dataset=digits, router="dispatched")
    routers = [a for a in env.possible_agents if a.startswith("router_")]
    assert len(routers) == digits.num_tasks
    for a in routers:
        assert env.observation_space(a) is env.observation_space(routers[0])
        assert env.action_space(a) is env.action_space(routers[0])
    assert env.action_space("dispatcher_0").n == len(routers)
