"""The multi-agent container and the AEC loop: which traces reach which learner."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import torch

import routing_env
from agents import (
    WPL,
    Dispatcher,
    MultiAgentRouter,
    QLearning,
    Reinforce,
    RouterAgent,
    Trace,
    evaluate,
    run_episode,
    train,
)


class Spy(RouterAgent):
    """Acts uniformly over the allowed actions and records what it is given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.traces: list[Trace] = []
        self.greedy_calls = 0

    def action_probs(self, obs):
        _, mask = self.check_observation(obs)
        return mask / mask.sum()

    def greedy_action(self, obs):
        self.greedy_calls += 1
        return super().greedy_action(obs)

    def learn(self, trace):
        self.traces.append(trace)
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def spy_router(env):
    return MultiAgentRouter.from_env(env, router_factory=Spy, dispatcher_factory=Spy, seed=0)


def all_traces(router, agents=None):
    return [t for a, learner in router.items() if agents is None or a in agents for t in learner.traces]


# ------------------------------------------------------------------ fake env
def coin(task, route, router_index, rng):
    return bool(rng.random() < 0.5)


def test_each_sample_becomes_one_trace_of_its_agent(fake_routing_env):
    env = fake_routing_env(
        correct=coin, num_tasks=3, layer_sizes=(3, 2), samples_per_episode=5, immediate_reward=0.25
    )
    router = spy_router(env)
    stats = run_episode(env, router, seed=0)
    assert stats.num_samples == 5 == stats.traces_learned
    traces = all_traces(router)
    assert len(traces) == 5
    for agent_id, learner in router.items():
        for trace in learner.traces:
            assert len(trace) == 2
            assert [o["depth"] for o in trace.observations] == [0, 1]
            assert {o["task"] for o in trace.observations} == {int(agent_id.split("_")[1])}
            # the env's reward of the last decision was 0.25 + r_final: it is split
            assert trace.rewards == [0.25, 0.25]
            assert trace.final_reward in (-1.0, 1.0)
            assert trace.infos[-1]["sample_done"] and not trace.infos[0]["sample_done"]
            assert trace.final_reward == (1.0 if trace.infos[-1]["correct"] else -1.0)
    assert stats.num_correct == sum(t.final_reward > 0 for t in traces)


def test_dispatched_traces(fake_routing_env):
    env = fake_routing_env(
        correct=coin, num_tasks=2, router="dispatched", num_routers=3, samples_per_episode=4
    )
    router = spy_router(env)
    assert list(router) == ["dispatcher_0", "router_0", "router_1", "router_2"]
    stats = run_episode(env, router, seed=1)
    dispatcher_traces = router["dispatcher_0"].traces
    router_traces = all_traces(router, ["router_0", "router_1", "router_2"])
    assert stats.num_samples == 4 == len(router_traces) == len(dispatcher_traces)
    assert all(len(trace) == 1 for trace in dispatcher_traces)
    # the dispatcher's reward is the final reward of the sample it dispatched
    assert sorted(t.rewards[0] + t.final_reward for t in dispatcher_traces) == sorted(
        t.final_reward for t in router_traces
    )


def test_evaluate_acts_greedily_and_does_not_learn(fake_routing_env):
    env = fake_routing_env(correct=coin)
    router = spy_router(env)
    stats = evaluate(env, router, num_samples=6)
    assert stats.num_samples == 6 and stats.traces_learned == 0
    assert all_traces(router) == []
    assert sum(learner.greedy_calls for learner in router.values()) == 6 * 2


def test_train_stops_after_the_requested_samples(fake_routing_env):
    env = fake_routing_env(correct=coin, samples_per_episode=3)
    seen = []
    stats = train(env, spy_router(env), num_samples=10, seed=0, callback=lambda ep, total: seen.append(ep))
    assert stats.num_samples == 12 and stats.episodes == 4 == len(seen)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_train_and_evaluate_reject_a_bad_budget(fake_routing_env, bad):
    env = fake_routing_env(correct=coin)
    with pytest.raises(ValueError, match="num_samples"):
        train(env, spy_router(env), num_samples=bad)
    with pytest.raises(ValueError, match="num_samples"):
        evaluate(env, spy_router(env), num_samples=bad)


def test_same_seeds_same_training(fake_routing_env):
    states = []
    for _ in range(2):
        env = fake_routing_env(correct=coin, samples_per_episode=2)
        router = MultiAgentRouter.from_env(env, router_factory=functools.partial(WPL, lr=0.1), seed=5)
        train(env, router, num_samples=40, seed=5)
        states.append(router.state_dict())
    for agent_id in states[0]:
        np.testing.assert_array_equal(states[0][agent_id]["policy"], states[1][agent_id]["policy"])


def test_agents_get_independent_generators(fake_routing_env):
    env = fake_routing_env(correct=coin, num_tasks=2)
    router = MultiAgentRouter.from_env(env, router_factory=WPL, seed=0)
    env.reset(seed=0)
    o = env.observe(env.agent_selection)
    draws = [[router[a].act(o) for _ in range(20)] for a in ("router_0", "router_1")]
    assert draws[0] != draws[1]


def test_container_state_round_trip_and_checks(fake_routing_env):
    env = fake_routing_env(correct=coin, num_tasks=2)
    router = MultiAgentRouter.from_env(env, router_factory=functools.partial(WPL, lr=0.2), seed=0)
    train(env, router, num_samples=30, seed=0)
    clone = MultiAgentRouter.from_env(env, router_factory=functools.partial(WPL, lr=0.2), seed=1)
    clone.load_state_dict(router.state_dict())
    np.testing.assert_array_equal(clone["router_1"].policy, router["router_1"].policy)
    with pytest.raises(ValueError, match="agents"):
        clone.load_state_dict({"router_0": router.state_dict()["router_0"]})
    with pytest.raises(KeyError, match="router_7"):
        router["router_7"]
    with pytest.raises(TypeError, match="RouterAgent"):
        MultiAgentRouter({"router_0": object()})
    with pytest.raises(ValueError, match="at least one"):
        MultiAgentRouter({})


def test_from_env_passes_the_device_to_the_factories_that_take_one(fake_routing_env):
    env = fake_routing_env(correct=coin, num_tasks=2, router="dispatched")
    seen: list[Any] = []

    def spy_with_device(*, device: Any = "cpu", **kwargs: Any) -> Spy:
        seen.append(device)
        return Spy(**kwargs)

    # a plain function and a partial of an MLP agent get it; WPL and a **kwargs-only Spy do not
    router = MultiAgentRouter.from_env(
        env,
        router_factory=spy_with_device,
        dispatcher_factory=functools.partial(Dispatcher, lr=0.1),
        seed=0,
        device="meta",
    )
    assert seen == ["meta", "meta"]
    assert router["dispatcher_0"].device == torch.device("meta")
    for factory in (WPL, Spy, functools.partial(WPL, lr=0.2)):
        router = MultiAgentRouter.from_env(
            env, router_factory=factory, dispatcher_factory=Spy, seed=0, device="meta"
        )
        assert isinstance(router["router_0"], RouterAgent)
    # every MLP agent, and the table ones, which accept (and ignore) a device
    for factory in (
        functools.partial(Reinforce, representation="mlp"),
        functools.partial(QLearning, representation="mlp"),
        functools.partial(QLearning, representation="table"),
    ):
        router = MultiAgentRouter.from_env(env, router_factory=factory, seed=0, device=torch.device("meta"))
        assert {learner.device for learner in router.values()} == {torch.device("meta")}
    # a partial that binds its own device keeps it; None passes nothing (the factories' default)
    own = functools.partial(Reinforce, representation="mlp", device="cpu")
    router = MultiAgentRouter.from_env(env, router_factory=own, seed=0, device="meta")
    assert router["router_0"].device == torch.device("cpu") and router["dispatcher_0"].device.type == "meta"
    router = MultiAgentRouter.from_env(env, router_factory=spy_with_device, seed=0)
    assert seen[-2:] == ["cpu", "cpu"]


# ------------------------------------------------------------------ the routing env
@pytest.fixture(scope="module")
def small_env_kwargs():
    return {"hidden_width": 16, "filters": 8, "batch_size": 16}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("per_task", [f"router_{t}" for t in range(10)]),
        ("single", ["router_0"]),
        ("dispatched", ["dispatcher_0"] + [f"router_{t}" for t in range(10)]),
    ],
)
def test_from_env_builds_one_learner_per_routing_env_agent(config, expected, small_env_kwargs):
    env = routing_env.env(router=config, **small_env_kwargs)
    router = MultiAgentRouter.from_env(env, router_factory=WPL, seed=0)
    assert list(router) == expected
    for agent_id, learner in router.items():
        assert isinstance(learner, Dispatcher if agent_id.startswith("dispatcher") else WPL)
        assert learner.num_actions == env.action_space(agent_id).n


@pytest.mark.parametrize("routing", ["layered", "recurrent"])
def test_routing_env_traces(routing, small_env_kwargs):
    env = routing_env.env(
        router="per_task",
        routing=routing,
        collaboration_reward=0.5,
        samples_per_episode=3,
        **small_env_kwargs,
    )
    router = spy_router(env)
    stats = train(env, router, num_samples=30, seed=0)
    traces = all_traces(router)
    assert len(traces) == stats.num_samples == 30
    n = env.unwrapped.num_decisions
    for agent_id, learner in router.items():
        for trace in learner.traces:
            assert len(trace) == n
            assert [o["depth"] for o in trace.observations] == list(range(n))
            assert {o["task"] for o in trace.observations} == {int(agent_id.split("_")[1])}
            assert trace.final_reward in (-1.0, 1.0)
            # immediate rewards are the collaboration rewards the infos report
            np.testing.assert_allclose(trace.rewards, [i["collaboration_reward"] for i in trace.infos])
            assert all(0.0 <= r <= 0.5 for r in trace.rewards)


def test_routing_env_dispatched_traces(small_env_kwargs):
    env = routing_env.env(router="dispatched", **small_env_kwargs)
    router = spy_router(env)
    stats = train(env, router, num_samples=12, seed=0)
    assert stats.traces_learned == 24
    dispatched = router["dispatcher_0"].traces
    assert len(dispatched) == 12 and all(len(t) == 1 for t in dispatched)
    assert {t.rewards[0] + t.final_reward for t in dispatched} <= {-1.0, 1.0}


def test_routing_env_evaluation_matches_the_env_report(small_env_kwargs):
    env = routing_env.env(router="per_task", **small_env_kwargs)
    router = MultiAgentRouter.from_env(
        env, router_factory=functools.partial(Reinforce, representation="table"), seed=0
    )
    train(env, router, num_samples=50, seed=0)
    stats = evaluate(env, router, num_samples=200)
    report = env.unwrapped.evaluation()
    assert report["samples"] == stats.num_samples == 200
    assert report["accuracy"] == pytest.approx(stats.accuracy)
    # and training resumes in train mode
    after = train(env, router, num_samples=5)
    assert after.num_samples == 5


def test_the_former_keyword_names_still_work(fake_routing_env):
    env = fake_routing_env(correct=coin, num_tasks=2)
    old = MultiAgentRouter.from_env(env, router=functools.partial(WPL, lr=0.1), seed=0)
    new = MultiAgentRouter.from_env(env, router_factory=functools.partial(WPL, lr=0.1), seed=0)
    assert [type(old[a]) for a in old] == [type(new[a]) for a in new] == [WPL, WPL]
    with pytest.raises(TypeError, match="router_factory= only"):
        MultiAgentRouter.from_env(env, router=WPL, router_factory=WPL)
    # run_episode(train=...) is run_episode(learn=...), with a warning
    with pytest.warns(DeprecationWarning, match="learn="):
        stats = run_episode(env, old, train=False, seed=0)
    assert stats.traces_learned == 0
    assert run_episode(env, new, learn=True, seed=0).traces_learned > 0
