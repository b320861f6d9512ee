"""RLlib's multi-agent API on the routing env (extra ``rllib``): adapter, evaluation, learning."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.extras
pytest.importorskip("ray.rllib", reason="needs the 'rllib' extra: pip install 'routing-env[rllib]'")

from ray.rllib.env.wrappers.pettingzoo_env import PettingZooEnv  # noqa: E402

import routing_env  # noqa: E402
from routing_env.integrations.rllib import (  # noqa: E402
    OBSERVATIONS_KEY,
    RoutingPettingZooEnv,
    evaluate_modules,
    rllib_env,
    routing_env_of,
)

from .helpers import load_example, uniform_router_accuracy  # noqa: E402

pytestmark = pytest.mark.xdist_group("ray")  # the tests that start Ray share one xdist worker

SMALL = {"batch_size": 8, "hidden_width": 16, "filters": 8}

# each example run registers RLlib's env id with gymnasium again
pytestmark = pytest.mark.filterwarnings("ignore:.*Overriding environment rllib-multi-agent-env:UserWarning")


@pytest.fixture(scope="module")
def example():
    return load_example("rllib_routers")


@pytest.mark.parametrize("router", ["per_task", "single", "dispatched"])
def test_every_agent_is_known_from_the_start(digits, router):
    inner = routing_env.env(dataset=digits, router=router, **SMALL)
    env = rllib_env(inner)
    assert isinstance(env, PettingZooEnv)
    assert sorted(env.possible_agents) == sorted(inner.possible_agents)
    assert set(env.observation_spaces) == set(env.action_spaces) == set(inner.possible_agents)
    # every agent is listed from reset, so RLlib's own adapter sees them all too
    stock = PettingZooEnv(routing_env.env(dataset=digits, router=router, **SMALL))
    assert sorted(stock.agents) == sorted(inner.possible_agents)


CONFIGS = [
    (router, routing)
    for router in ("per_task", "single", "dispatched")
    for routing in ("layered", "recurrent")
]


@pytest.mark.parametrize("router, routing", CONFIGS, ids=[f"{r}-{g}" for r, g in CONFIGS])
def test_adapter_routes_samples_in_every_configuration(digits, router, routing):
    env = rllib_env(routing_env.env(dataset=digits, router=router, routing=routing, **SMALL))
    obs, _ = env.reset(seed=0)
    episodes = 0
    while episodes < 3:
        assert len(obs) == 1  # one agent acts at a time
        actions = {agent: int(np.flatnonzero(o["action_mask"])[0]) for agent, o in obs.items()}
        obs, rewards, terminateds, _, infos = env.step(actions)
        if terminateds["__all__"]:
            episodes += 1
            # every agent's terminated turn is reported; the sample's router has the +1/-1
            assert set(obs) == set(env.possible_agents)
            router_rewards = [rewards[a] for a in rewards if a.startswith("router_") and rewards[a]]
            assert len(router_rewards) == 1 and router_rewards[0] in (-1.0, 1.0)
            obs, _ = env.reset()


def test_adapter_episode(digits):
    env = rllib_env(routing_env.env(dataset=digits, router="per_task", **SMALL))
    routing = env.env.unwrapped
    obs, infos = env.reset(seed=0)
    (agent,) = obs
    assert agent == f"router_{routing.engine.task}"
    assert set(obs[agent]) == {OBSERVATIONS_KEY, "action_mask"}
    assert obs[agent]["action_mask"].dtype == np.float32
    assert env.observation_spaces[agent].contains(obs[agent])
    for depth in range(routing.num_decisions):
        obs, rewards, terminateds, truncateds, infos = env.step({agent: 0})
        assert terminateds["__all__"] == (depth == routing.num_decisions - 1)
    assert infos[agent]["sample_done"] and rewards[agent] in (-1.0, 1.0)


def test_rllib_env_rejects_non_aec():
    with pytest.raises(TypeError, match="AEC env"):
        rllib_env(object())
    with pytest.raises(ValueError, match="num_env_runners=0"):
        routing_env_of(object())


def test_example_runs_trains_and_evaluates_on_a_tiny_budget(example):
    args = example.Args(num_samples=60, samples_per_iteration=30, max_test_samples=30, hidden_width=16)
    summary = example.main(args)
    assert summary["iterations"] == 2 and summary["train_samples"] >= 60
    assert summary["test_samples"] == 30
    assert 0.0 <= summary["test_accuracy"] <= 1.0


def test_evaluate_modules_validates_num_samples(digits):
    env = rllib_env(routing_env.env(dataset=digits, **SMALL))
    with pytest.raises(ValueError, match="num_samples"):
        evaluate_modules(env, {}, num_samples=0)
    assert isinstance(env, RoutingPettingZooEnv)


@pytest.mark.slow  # about 160 s since evaluate_modules scores its whole test subset: kept out of the few-minute default suite
def test_ppo_routers_beat_a_uniformly_random_router(example):
    """Per-task PPO modules (one per router, in this process) concentrate on
    task-specific routes, on which the blocks learn each task; uniformly random routes
    stay near the ~90% majority rate with the same budget (about 75 s)."""
    budget = {"num_samples": 10_000, "max_test_samples": 1000}
    learned = example.main(example.Args(seed=0, **budget))["test_accuracy"]
    uniform = uniform_router_accuracy(**budget)
    assert uniform < 0.93
    assert learned > 0.93
    assert learned > uniform + 0.02
