"""Careless and hostile use of the env (issue 18): evaluation passes, copies, loads, bad options.

Each test here failed on the code before the fix it pins (see docs/reliability.md).
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import routing_env
from agents import WPL, MultiAgentRouter, evaluate
from agents.base import Trace
from routing_env import RoutingEnv, RoutingNetwork, fc_block
from routing_env.datasets import MultiTaskDataset, TaskSplit, subsample

from .helpers import random_choice, run_episodes


@pytest.fixture(scope="module")
def small(digits):
    return subsample(digits, max_train=400, max_test=50, seed=0)


def weights(env):
    return {k: v.detach().clone() for k, v in env.unwrapped.network.state_dict().items()}


def same_weights(a, b):
    return [k for k in a if not torch.equal(a[k], b[k])]


# ----------------------------------------------------------------- evaluation passes
def test_eval_mode_again_starts_a_new_pass_with_fresh_counts(small):
    """train_wpl evaluates greedily, then sampled, both with {"mode": "eval"}: the second
    figure must count the second pass only (it averaged both before)."""
    env = routing_env.env(dataset=small)
    router = MultiAgentRouter.from_env(env, router_factory=WPL, seed=0)
    env.reset(seed=0)
    evaluate(env, router, num_samples=len(small.test), greedy=True)
    first = env.unwrapped.evaluation()
    assert first["samples"] == len(small.test) and first["complete"]
    evaluate(env, router, num_samples=len(small.test), greedy=False)
    second = env.unwrapped.evaluation()
    assert second["samples"] == len(small.test) and second["complete"]
    per_task_totals = np.bincount(small.test.tasks_N.numpy(), minlength=small.num_tasks)
    # each per-task accuracy is a fraction of that task's test samples, not of twice as many
    for acc, n in zip(second["accuracy_per_task"], per_task_totals, strict=True):
        assert acc * n == pytest.approx(round(acc * n))


def test_evaluation_does_not_wrap_around_the_test_split(small):
    env = RoutingEnv(dataset=small)
    env.reset(seed=0)
    log = run_episodes(env, len(small.test), random_choice(0), options={"mode": "eval"})
    indices = [t[3]["sample_index"] for t in log if t[3].get("sample_done")]
    assert sorted(indices) == list(range(len(small.test)))  # each test sample once
    assert indices == env.engine.eval_order.tolist()  # in the pass's task-interleaved order
    result = env.evaluation()
    assert result["samples"] == len(small.test) and result["complete"]
    with pytest.raises(RuntimeError, match="evaluation pass is complete: all 50 test samples"):
        env.reset()
    assert env.evaluation()["samples"] == len(small.test)  # nothing double-counted
    env.reset(options={"mode": "eval"})  # a new pass
    assert env.evaluation()["samples"] == 0 and not env.evaluation()["complete"]


def test_an_episode_of_several_samples_ends_with_the_test_split(small):
    env = RoutingEnv(dataset=small, samples_per_episode=3)
    env.reset(seed=0)
    episodes = len(small.test) // 3 + 1  # the last episode holds 50 - 48 = 2 samples
    log = run_episodes(env, episodes, random_choice(0), options={"mode": "eval"})
    assert sum(1 for t in log if t[3].get("sample_done")) == len(small.test)
    assert env.evaluation()["samples"] == len(small.test)
    with pytest.raises(RuntimeError, match="evaluation pass is complete"):
        env.reset()


def test_evaluate_past_the_end_is_refused_not_double_counted(small):
    env = routing_env.env(dataset=small)
    router = MultiAgentRouter.from_env(env, router_factory=WPL, seed=0)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="evaluation pass is complete"):
        evaluate(env, router, num_samples=2 * len(small.test) + len(small.test) // 2)
    assert env.unwrapped.evaluation()["samples"] == len(small.test)


# ----------------------------------------------------------------- copies mid-minibatch
def drive(env, actions_rng, steps):
    """Take ``steps`` turns with actions drawn from ``actions_rng``; return the rewards seen."""
    seen = []
    for _ in range(steps):
        if not env.agents:
            env.reset()
        agent = env.agent_selection
        obs, reward, terminated, truncated, info = env.last()
        seen.append((agent, reward, info.get("sample_index")))
        action = (
            None if terminated or truncated else int(actions_rng.choice(np.flatnonzero(obs["action_mask"])))
        )
        env.step(action)
    return seen


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("router", ["per_task", "dispatched"])
def test_a_copy_mid_minibatch_trains_exactly_like_the_original(small, how, router):
    env = routing_env.env(
        dataset=small, router=router, batch_size=16, collaboration_reward=0.2, preset="paper", momentum=0.9
    )
    env.reset(seed=1)
    drive(env, np.random.default_rng(0), 17)  # mid-minibatch: a sample of the first minibatch in flight
    assert env.unwrapped.engine.updates == 0
    clone = copy.deepcopy(env) if how == "deepcopy" else pickle.loads(pickle.dumps(env))
    turns = 1000 if router == "per_task" else 1500  # every agent takes a last turn per episode
    a = drive(env, np.random.default_rng(1), turns)
    b = drive(clone, np.random.default_rng(1), turns)
    assert a == b
    assert env.unwrapped.engine.updates == clone.unwrapped.engine.updates >= 4
    assert same_weights(weights(env), weights(clone)) == []


def test_a_copy_of_a_trunk_with_dropout_trains_like_the_original(small):
    def network():
        trunk = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Dropout(0.5), nn.ReLU())
        layers = [[fc_block(32, 16) for _ in range(3)], [fc_block(16, 2, activation=False) for _ in range(3)]]
        return RoutingNetwork(trunk=trunk, layers=layers, input_shape=(1, 8, 8), output_size=2)

    env = routing_env.env(dataset=small, network=network(), batch_size=8)
    env.reset(seed=0)
    drive(env, np.random.default_rng(0), 5)
    clone = copy.deepcopy(env)
    rng = torch.get_rng_state()  # dropout draws from torch's global generator, shared by both
    a = drive(env, np.random.default_rng(1), 100)
    torch.set_rng_state(rng)
    b = drive(clone, np.random.default_rng(1), 100)
    assert a == b
    assert same_weights(weights(env), weights(clone)) == []


# ----------------------------------------------------------------- loads that fail change nothing
def full_state(env):
    e = env.engine
    return (
        weights(env),
        copy.deepcopy(e.optimizer.state_dict()),
        e.selections_nA.copy(),
        e._perm.copy(),
        (e.epoch, e.updates, e.samples_routed, e._cursor),
        e.np_random.bit_generator.state,
    )


def assert_same_state(a, b):
    assert same_weights(a[0], b[0]) == []
    oa, ob = a[1], b[1]
    assert oa["param_groups"] == ob["param_groups"]
    assert oa["state"].keys() == ob["state"].keys()
    for k in oa["state"]:
        for name, value in oa["state"][k].items():
            other = ob["state"][k][name]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other
    assert (a[2] == b[2]).all() and (a[3] == b[3]).all() and a[4] == b[4] and a[5] == b[5]


def trained_env(dataset, **kwargs):
    env = RoutingEnv(dataset=dataset, **{"batch_size": 8, "preset": "paper", "momentum": 0.9, **kwargs})
    run_episodes(env, 64, random_choice(0), seed=0)  # 8 updates, at a minibatch boundary
    return env


@pytest.mark.parametrize(
    "other, message",
    [
        ({"blocks_per_layer": 3}, "another env configuration: num_actions=3"),
        ({"routing": "recurrent"}, "another env configuration: routing='recurrent'"),
        ({"optimizer": "adam", "momentum": 0.0}, "another optimizer"),
        ({"hidden_width": 32}, "another network"),
    ],
    ids=["block-count", "recurrent-into-layered", "adam-into-sgd", "width"],
)
def test_a_failing_load_leaves_the_env_as_it_was(small, other, message):
    env = trained_env(small)
    state = trained_env(small, **other).state_dict()
    before = full_state(env)
    with pytest.raises(ValueError, match=message):
        env.load_state_dict(state)
    assert_same_state(before, full_state(env))


def test_a_load_failing_deep_inside_is_rolled_back(small):
    env = trained_env(small)
    state = trained_env(small).state_dict()
    # a corrupted optimizer entry passes the shape checks but fails while being applied
    state["engine"]["counters"]["updates"] = "many"
    before = full_state(env)
    with pytest.raises(ValueError, match="nothing was changed"):
        env.load_state_dict(state)
    assert_same_state(before, full_state(env))


def test_a_failing_load_into_a_new_env_leaves_it_unstarted(small):
    env = RoutingEnv(dataset=small)
    state = trained_env(small, hidden_width=32).state_dict()
    with pytest.raises(ValueError, match="another network"):
        env.load_state_dict(state)
    assert not env.engine.started


def test_a_good_load_still_works_after_a_refused_one(small):
    env = trained_env(small)
    with pytest.raises(ValueError):
        env.load_state_dict(trained_env(small, blocks_per_layer=3).state_dict())
    good = trained_env(small)
    run_episodes(good, 8, random_choice(5))
    env.load_state_dict(good.state_dict())
    assert same_weights(weights(env), weights(good)) == []


# ----------------------------------------------------------------- errors at the boundary
def test_observing_an_unknown_agent_names_the_agents(small):
    env = RoutingEnv(dataset=small)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"unknown agent 'router_99'.*router_0"):
        env.observe("router_99")


@pytest.mark.parametrize(
    "options, error, message",
    [
        (["eval"], TypeError, "options must be a dict"),
        ("eval", TypeError, "options must be a dict"),
        ({"Mode": "eval"}, ValueError, r"unknown reset option\(s\) \['Mode'\]"),
        ({"mode": "eval", "mdoe": "eval"}, ValueError, r"\['mdoe'\]"),
        ({1: "eval"}, ValueError, r"unknown reset option\(s\) \[1\]"),
        ({"mode": "test"}, ValueError, "'train' or 'eval'"),
    ],
)
def test_bad_reset_options_are_refused_before_anything_changes(small, options, error, message):
    env = RoutingEnv(dataset=small)
    run_episodes(env, 3, random_choice(0), seed=0)
    mode, routed = env.engine.mode, env.engine.samples_routed
    with pytest.raises(error, match=message):
        env.reset(options=options)
    assert env.engine.mode == mode == "train" and env.engine.samples_routed == routed


def test_other_unknown_reset_options_are_named_in_a_warning(small):
    env = RoutingEnv(dataset=small)
    env.reset(seed=0)
    with pytest.warns(UserWarning, match=r"reset options \['shuffle'\] are not used by this env"):
        env.reset(options={"shuffle": True})


def regression_data(target_fn):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 4, 4, generator=g)
    split = TaskSplit(x, torch.arange(40) % 2, target_fn(x))
    return MultiTaskDataset(name="reg", train=split, test=split, num_classes=(0, 0), mean=(0.5,), std=(0.3,))


class NaNBlock(nn.Module):
    def forward(self, v):
        return v[:, :1] * float("nan")


def nan_regression_env(on_nonfinite):
    data = regression_data(lambda x: x.mean(dim=(1, 2, 3)))
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    net = RoutingNetwork(trunk=trunk, layers=[[NaNBlock()]], input_shape=(1, 4, 4), output_size=1)
    return RoutingEnv(dataset=data, network=net, on_nonfinite=on_nonfinite)


def test_a_non_finite_regression_prediction_is_named_not_handed_out():
    env = nan_regression_env("raise")
    env.reset(seed=0)
    with pytest.raises(FloatingPointError, match=r"non-finite regression loss \(nan\) on train sample \d+"):
        env.step(0)


def test_a_non_finite_regression_prediction_can_be_skipped():
    env = nan_regression_env("skip")
    env.reset(seed=0)
    acting = env.agent_selection
    with pytest.warns(UserWarning, match="final reward is 0"):
        env.step(0)
    assert env.infos[acting]["sample_done"] and env.rewards == dict.fromkeys(env.possible_agents, 0.0)


def test_an_agent_refuses_a_non_finite_reward_clearly():
    with pytest.raises(ValueError, match="non-finite final reward nan"):
        Trace.from_env_rewards([{}], [0], [float("nan")], [{"final_reward": float("nan")}])
    with pytest.raises(ValueError, match=r"immediate reward\(s\) \[inf\] at decision\(s\) \[1\]"):
        Trace(observations=[{}, {}], actions=[0, 1], rewards=[0.0, float("inf")])
