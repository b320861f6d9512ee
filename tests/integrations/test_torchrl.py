"""TorchRL on the routing env (extra ``torchrl``): its own wrapper, specs, rollouts, learning."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.extras
pytest.importorskip("torchrl", reason="needs the 'torchrl' extra: pip install 'routing-env[torchrl]'")

from torchrl.envs import PettingZooWrapper  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

import routing_env  # noqa: E402
from routing_env.datasets import subsample  # noqa: E402
from routing_env.integrations.torchrl import evaluate_policy, routing_env_of, torchrl_env  # noqa: E402

from .helpers import load_example  # noqa: E402

SMALL = {"batch_size": 8, "hidden_width": 16, "filters": 8}
CONFIGS = [
    (router, routing)
    for router in ("per_task", "single", "dispatched")
    for routing in ("layered", "recurrent")
]

# TorchRL warns that it was tested with another PettingZoo version (1.24.3; here 1.27)
pytestmark = pytest.mark.filterwarnings("ignore:PettingZoo in TorchRL is tested using version")


@pytest.fixture(scope="module")
def example():
    return load_example("torchrl_routers")


@pytest.mark.parametrize("return_state", [False, True], ids=["obs", "state"])
@pytest.mark.parametrize("router, routing", CONFIGS, ids=[f"{r}-{g}" for r, g in CONFIGS])
def test_torchrls_own_wrapper_takes_every_configuration(digits, router, routing, return_state):
    """No adapter of this project: TorchRL's PettingZooWrapper as a user would write it."""
    inner = routing_env.env(dataset=digits, router=router, routing=routing, **SMALL)
    env = PettingZooWrapper(env=inner, use_mask=True, return_state=return_state)
    check_env_specs(env, seed=0)
    rollout = env.rollout(40, break_when_any_done=False)  # random masked actions, resets included
    assert rollout.batch_size == torch.Size([40])
    routing_env_ = inner.unwrapped
    decisions = routing_env_.num_decisions + (1 if router == "dispatched" else 0)
    done = rollout["next", "done"].reshape(-1)
    assert int(done.sum()) == 40 // decisions  # one episode (one sample) per `decisions` frames
    for group in env.group_map:  # exactly one acting agent per frame, over all groups
        assert rollout[group, "mask"].shape[0] == 40
    acting = sum(rollout[group, "mask"].sum(-1) for group in env.group_map)
    assert (acting == 1).all()
    if return_state:
        state = rollout["state"]
        assert state.shape == (40, routing_env_.state_space.shape[0]) and (state != 0).any()


def test_torchrl_env_groups_the_routers(digits):
    env = torchrl_env(routing_env.env(dataset=digits, router="dispatched", num_routers=4, **SMALL))
    assert env.group_map == {"router": [f"router_{i}" for i in range(4)], "dispatcher": ["dispatcher_0"]}
    check_env_specs(env, seed=0)
    td = env.reset()
    assert td["router", "action_mask"].shape == (4, routing_env_of(env).num_actions)
    assert td["dispatcher", "mask"].all() and not td["router", "mask"].any()  # the dispatcher acts first
    assert routing_env_of(env) is env._env.unwrapped
    with pytest.raises(TypeError, match="AEC env"):
        torchrl_env(object())
    with pytest.raises(TypeError, match="routing env"):
        routing_env_of(object())


def test_rewards_reach_the_acting_router_in_its_frame(digits):
    env = torchrl_env(routing_env.env(dataset=digits, router="per_task", **SMALL))
    env.set_seed(0)
    rollout = env.rollout(30, break_when_any_done=False)
    reward = rollout["next", "router", "reward"].squeeze(-1)  # frames x routers
    mask = rollout["router", "mask"]
    assert (reward[~mask] == 0).all()  # only the acting router is rewarded
    last = rollout["next", "done"].reshape(-1)
    assert set(reward[mask][last].tolist()) <= {-1.0, 1.0} and (reward[mask][~last] == 0).all()
    info = rollout["next", "router", "info"]
    assert set(info.keys()) >= {"correct", "sample_done", "final_reward", "eval"}
    assert (info["sample_done"][mask] == last.float()).all()


def test_evaluate_policy_routes_the_test_split_and_returns_to_training(example, digits):
    dataset = subsample(digits, max_train=None, max_test=50, seed=0)
    env = torchrl_env(routing_env.env(dataset=dataset, router="per_task", **SMALL))
    env.set_seed(0)
    policy, _ = example.build_modules(example.Args(), env)
    result = evaluate_policy(env, policy)
    assert result["samples"] == len(dataset.test) == 50 and result["complete"]
    assert 0.0 <= result["accuracy"] <= 1.0 and not np.isnan(result["accuracy_per_task"]).any()
    assert routing_env_of(env).mode == "train"
    assert evaluate_policy(env, policy, num_samples=20)["samples"] == 20
    with pytest.raises(ValueError, match="num_samples"):
        evaluate_policy(env, policy, num_samples=0)


def test_example_runs_on_a_tiny_budget(example):
    args = example.Args(num_samples=32, samples_per_batch=16, max_test_samples=20)
    summary = example.main(args)
    assert summary["train_samples"] >= 32
    assert summary["test_samples"] == 20
    assert 0.0 <= summary["test_accuracy"] <= 1.0


def test_example_rejects_bad_arguments(example):
    with pytest.raises(ValueError, match="--num-samples"):
        example.Args(num_samples=0)
    with pytest.raises(ValueError, match="--policy-lr"):
        example.Args(policy_lr=-1.0)


def test_torchrl_integration_without_torchrl_names_the_extra(digits, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchrl", None)  # import torchrl -> ImportError
    with pytest.raises(ImportError, match=r"routing-env\[torchrl\]"):
        torchrl_env(routing_env.env(dataset=digits, **SMALL))


@pytest.mark.slow
def test_ppo_routers_learn_past_the_majority_rate(example):
    """Per-task routers trained by TorchRL's collector and PPO loss settle on
    task-specific routes, on which the blocks learn each task; the majority rate
    ("not c") is 0.900. The example's defaults, 1,000 test samples of the interleaved
    pass (4-7 minutes on 2 busy cores: TorchRL takes ~10 ms per frame here)."""
    summary = example.main(example.Args(seed=0, max_test_samples=1000))
    assert summary["train_samples"] >= 6000 and summary["test_samples"] == 1000
    assert summary["test_accuracy"] > 0.93, summary
