"""Tianshou 2.x on the routing env (extra ``tianshou``): adapter, evaluation, learning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytestmark = pytest.mark.extras
pytest.importorskip(
    "tianshou", minversion="2.0", reason="needs the 'tianshou' extra: pip install 'routing-env[tianshou]'"
)

from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy  # noqa: E402
from tianshou.data import Batch  # noqa: E402
from tianshou.env import DummyVectorEnv, PettingZooEnv  # noqa: E402

import routing_env  # noqa: E402
from routing_env.integrations.tianshou import (  # noqa: E402
    evaluate_policy,
    masked_actor,
    tianshou_env,
    training_step_for_each_agent,
)

from .helpers import load_example, uniform_router_accuracy  # noqa: E402

SMALL = {"batch_size": 8, "hidden_width": 16, "filters": 8}


@pytest.fixture(scope="module")
def example():
    return load_example("tianshou_routers")


def test_adapter_is_tianshous_pettingzoo_env(digits):
    env = tianshou_env(routing_env.env(dataset=digits, router="per_task", **SMALL))
    assert isinstance(env, PettingZooEnv)
    assert env.agents == [f"router_{t}" for t in range(digits.num_tasks)]
    routing = env.env.unwrapped
    features = routing.num_decisions + routing.num_tasks  # one-hot depth and task (no v)
    assert env.observation_space["observation"].shape == (features,)

    obs, info = env.reset(seed=0)
    assert obs["agent_id"] == f"router_{routing.engine.task}"
    assert obs["obs"].shape == (features,) and len(obs["mask"]) == routing.num_actions
    for depth in range(routing.num_decisions):
        obs, rewards, terminated, truncated, info = env.step(0)
        assert terminated == (depth == routing.num_decisions - 1)
        assert info["correct"] in ((1, 0) if terminated else (-1,))  # never None in the buffer
    assert len(rewards) == len(env.agents)


@pytest.mark.parametrize("router", ["per_task", "single"])
@pytest.mark.parametrize("routing", ["layered", "recurrent"])
def test_adapter_routes_samples_in_the_configurations_it_takes(digits, router, routing):
    env = tianshou_env(routing_env.env(dataset=digits, router=router, routing=routing, **SMALL))
    obs, _ = env.reset(seed=0)
    for _ in range(3):  # samples, one episode each
        terminated = False
        while not terminated:
            obs, rewards, terminated, _, info = env.step(int(np.flatnonzero(obs["mask"])[0]))
        assert info["sample_done"] and info["correct"] in (0, 1) and set(rewards) <= {-1.0, 0.0, 1.0}
        obs, _ = env.reset()


def test_dispatched_configuration_is_refused(digits):
    with pytest.raises(ValueError, match="identical observation and action spaces"):
        tianshou_env(routing_env.env(dataset=digits, router="dispatched", **SMALL))
    with pytest.raises(TypeError, match="AEC env"):
        tianshou_env(object())


def test_collectors_continue_the_run_seed_restarts_it(digits):
    env = tianshou_env(routing_env.env(dataset=digits, router="single", **SMALL))
    venv = DummyVectorEnv([lambda: env])
    engine = env.env.unwrapped.engine

    def first_samples():
        venv.seed(7)  # the one seeded reset
        indices = [engine.sample_index]
        for _ in range(3):
            venv.reset()  # what collectors call per episode: no seed, the run goes on
            indices.append(engine.sample_index)
        return indices

    first = first_samples()
    assert len(set(first)) == len(first)  # unseeded resets drew new samples
    assert first_samples() == first  # seeding again restarted the run


def test_masked_actor_never_picks_a_masked_block():
    import torch

    net = torch.nn.Linear(3, 4)
    actor = masked_actor(net)
    mask = np.array([[False, True, False, True], [True, False, False, False]])
    logits, _ = actor(Batch(obs=np.ones((2, 3), dtype=np.float32), mask=mask))
    assert logits.shape == (2, 4)
    assert torch.all(logits[torch.as_tensor(~mask)] <= -1e8)
    probs = torch.softmax(logits, dim=-1)
    assert torch.allclose(probs[torch.as_tensor(~mask)], torch.zeros(int((~mask).sum())))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        masked_actor(object())


def test_training_step_flag_reaches_every_agent_policy(example, digits):
    env = tianshou_env(routing_env.env(dataset=digits, router="per_task", **SMALL))
    algorithm = example.build_algorithm(example.Args(), env)
    policies = algorithm.policy.policies
    assert all(isinstance(p, DiscreteActorPolicy) for p in policies.values())
    assert not any(p.is_within_training_step for p in policies.values())
    with training_step_for_each_agent(algorithm):
        assert all(p.is_within_training_step for p in policies.values())
    assert not any(p.is_within_training_step for p in policies.values())
    with pytest.raises(TypeError, match="multi-agent algorithm"), training_step_for_each_agent(object()):
        pass


def test_evaluate_policy_routes_the_test_split_and_returns_to_training(example, digits):
    from routing_env.datasets import subsample

    dataset = subsample(digits, max_train=None, max_test=50, seed=0)
    env = tianshou_env(routing_env.env(dataset=dataset, router="per_task", **SMALL))
    env.reset(seed=0)
    algorithm = example.build_algorithm(example.Args(), env)
    result = evaluate_policy(algorithm.policy, env)
    assert result["samples"] == len(dataset.test) == 50
    assert 0.0 <= result["accuracy"] <= 1.0
    assert env.env.unwrapped.engine.mode == "train"
    assert evaluate_policy(algorithm.policy, env, num_samples=20)["samples"] == 20
    with pytest.raises(ValueError, match="num_samples"):
        evaluate_policy(algorithm.policy, env, num_samples=0)


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
@pytest.mark.parametrize("algorithm", ["reinforce", "dqn"])
def test_example_runs_on_a_tiny_budget(example, algorithm):
    args = example.Args(algorithm=algorithm, num_samples=60, max_test_samples=30, hidden_width=16)
    summary = example.main(args)
    assert summary["train_samples"] >= 60
    assert summary["test_samples"] == 30
    assert 0.0 <= summary["test_accuracy"] <= 1.0


def test_example_rejects_bad_arguments(example):
    with pytest.raises(ValueError, match="--num-samples"):
        example.Args(num_samples=0)
    with pytest.raises(ValueError, match="--policy-lr"):
        example.Args(policy_lr=-1.0)


LEARNING_BUDGET = {"num_samples": 8000, "max_test_samples": 1000}


@pytest.mark.slow  # about 90 s since evaluate_policy scores its whole test subset: kept out of the few-minute default suite
def test_reinforce_routers_beat_a_uniformly_random_router(example):
    """Per-task Tianshou REINFORCE routers concentrate on task-specific routes, on which
    the blocks learn each task; uniformly random routes carry no task information and
    stay near the ~90% majority rate with the same budget (about 45 s)."""
    learned = example.main(example.Args(seed=0, **LEARNING_BUDGET))["test_accuracy"]
    uniform = uniform_router_accuracy(
        num_samples=LEARNING_BUDGET["num_samples"], max_test_samples=LEARNING_BUDGET["max_test_samples"]
    )
    assert uniform < 0.93
    assert learned > 0.93
    assert learned > uniform + 0.02


@pytest.mark.slow
def test_reinforce_without_learning_stays_near_the_majority_rate(example):
    """The control of the test above: with a zero learning rate the same pipeline
    (stochastic routes from the initial policies) does not leave the plateau, so the
    accuracy above is due to what the routers learned (about 45 s)."""
    args = dataclasses.replace(example.Args(seed=0, **LEARNING_BUDGET), policy_lr=0.0)
    assert example.main(args)["test_accuracy"] < 0.93
