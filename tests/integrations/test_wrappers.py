"""The PettingZoo wrappers of routing_env.integrations (no optional extra needed)."""

from __future__ import annotations

import importlib
import sys

import gymnasium
import numpy as np
import pytest
from pettingzoo.test import api_test
from pettingzoo.utils.wrappers import BaseWrapper

import routing_env
from routing_env.integrations import FlatObservation, InfoNoneAsSentinel, missing_extra

SMALL = {"batch_size": 8, "hidden_width": 16, "filters": 8}


@pytest.mark.parametrize("representation", [True, False], ids=["with_v", "depth_task_only"])
@pytest.mark.parametrize("router", ["per_task", "single", "dispatched"])
def test_flat_observation_passes_pettingzoo_api_test(digits, router, representation):
    env = FlatObservation(
        routing_env.env(dataset=digits, router=router, **SMALL), representation=representation
    )
    api_test(env, num_cycles=30)


def test_flat_observation_layout(digits):
    inner = routing_env.env(dataset=digits, router="per_task", **SMALL)
    env = FlatObservation(inner)
    routing = inner.unwrapped
    D, n, T, A = routing.observation_width, routing.num_decisions, routing.num_tasks, routing.num_actions
    space = env.observation_space("router_0")
    assert set(space.spaces) == {"observation", "action_mask"}
    assert space["observation"].shape == (D + n + T,)
    assert space["action_mask"].shape == (A,)
    # agents that shared a space object still do (Tianshou compares the spaces)
    assert all(env.observation_space(a) is space for a in env.possible_agents)

    env.reset(seed=3)
    agent = env.agent_selection
    raw, flat = inner.observe(agent), env.observe(agent)
    np.testing.assert_array_equal(flat["observation"][:D], raw["observation"])
    np.testing.assert_array_equal(flat["observation"][D : D + n], np.eye(n)[raw["depth"]])
    np.testing.assert_array_equal(flat["observation"][D + n :], np.eye(T)[raw["task"]])
    np.testing.assert_array_equal(flat["action_mask"], raw["action_mask"])
    assert space.contains(flat)

    env.step(0)  # depth 1: the one-hot moves
    assert env.observe(env.agent_selection)["observation"][D + 1] == 1.0


def test_flat_observation_without_representation_and_custom_key(digits):
    inner = routing_env.env(dataset=digits, router="single", **SMALL)
    env = FlatObservation(inner, observation_key="observations", representation=False, mask_dtype=np.float32)
    routing = inner.unwrapped
    space = env.observation_space("router_0")
    assert set(space.spaces) == {"observations", "action_mask"}
    assert space["observations"].shape == (routing.num_decisions + routing.num_tasks,)
    env.reset(seed=0)
    obs = env.observe("router_0")
    assert obs["action_mask"].dtype == np.float32
    assert obs["observations"].sum() == 2.0  # one-hot depth + one-hot task
    assert space.contains(obs)


def test_flat_observation_rejects_bad_input(digits):
    with pytest.raises(TypeError, match="AECEnv"):
        FlatObservation(gymnasium.make("CartPole-v1"))
    with pytest.raises(ValueError, match="observation_key"):
        FlatObservation(routing_env.env(dataset=digits, **SMALL), observation_key="action_mask")
    flat = FlatObservation(routing_env.env(dataset=digits, **SMALL))
    with pytest.raises(TypeError, match="observation space must be a Dict"):
        FlatObservation(flat)  # already flat: not a routing observation


class _NoneInInfos(BaseWrapper):
    """An env whose infos hold None, as the routing env's did before it reported -1."""

    @property
    def infos(self):
        return {a: {**i, "correct": None} for a, i in self.env.infos.items()}

    def last(self, observe=True):
        obs, reward, terminated, truncated, info = self.env.last(observe)
        return obs, reward, terminated, truncated, {**info, "correct": None}


def test_the_routing_env_has_no_none_in_its_infos(digits):
    env = routing_env.env(dataset=digits, router="per_task", **SMALL)
    env.reset(seed=0)
    for _ in range(env.unwrapped.num_decisions):
        env.step(0)
        assert not any(v is None for i in env.infos.values() for v in i.values())
    assert env.last()[4]["correct"] in (0, 1)


def test_info_none_as_sentinel(digits):
    inner = _NoneInInfos(routing_env.env(dataset=digits, router="per_task", **SMALL))
    env = InfoNoneAsSentinel(inner, sentinel=-1)
    env.reset(seed=0)
    agent = env.agent_selection
    env.step(0)
    assert inner.infos[agent]["correct"] is None
    assert env.infos[agent]["correct"] == -1
    assert env.last()[4]["correct"] == -1
    assert not any(v is None for i in env.infos.values() for v in i.values())
    with pytest.raises(ValueError, match="sentinel"):
        InfoNoneAsSentinel(inner, sentinel=None)


def test_missing_extra_names_the_extra():
    err = missing_extra(feature="x", extra="tianshou", package="tianshou>=2,<3")
    assert isinstance(err, ImportError)
    assert "pip install 'routing-env[tianshou]'" in str(err)


def test_tianshou_integration_without_tianshou_names_the_extra(digits, monkeypatch):
    from routing_env.integrations import tianshou as integration

    monkeypatch.setitem(sys.modules, "tianshou", None)  # import tianshou -> ImportError
    with pytest.raises(ImportError, match=r"routing-env\[tianshou\]"):
        integration.tianshou_env(routing_env.env(dataset=digits, **SMALL))


def test_rllib_integration_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.rllib.env.wrappers.pettingzoo_env", None)
    monkeypatch.delitem(sys.modules, "routing_env.integrations.rllib", raising=False)
    with pytest.raises(ImportError, match=r"routing-env\[rllib\]"):
        importlib.import_module("routing_env.integrations.rllib")
    monkeypatch.delitem(sys.modules, "routing_env.integrations.rllib", raising=False)
