"""The batched routing game as a TorchRL EnvBase (extra ``torchrl``): specs, padding, the
same rewards and weights as the batched env, and TorchRL's PPO learning through it."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.extras
pytest.importorskip("torchrl", reason="needs the 'torchrl' extra: pip install 'routing-env[torchrl]'")

from torchrl.envs.utils import check_env_specs  # noqa: E402

import routing_env  # noqa: E402
from routing_env.datasets import split_validation, subsample  # noqa: E402
from routing_env.integrations.torchrl_batched import BatchedTorchRLEnv, evaluate_batched_policy  # noqa: E402

from .helpers import load_example  # noqa: E402

SMALL = {"batch_size": 8, "hidden_width": 16, "filters": 8}
CONFIGS = [
    (router, routing)
    for router in ("per_task", "single", "dispatched")
    for routing in ("layered", "recurrent")
]


@pytest.mark.parametrize("router, routing", CONFIGS, ids=[f"{r}-{g}" for r, g in CONFIGS])
def test_every_configuration_passes_torchrls_spec_check(digits, router, routing):
    env = BatchedTorchRLEnv(dataset=digits, router=router, routing=routing, **SMALL)
    assert env.batch_size == torch.Size([8]) and env.rows == 8
    check_env_specs(env, seed=0)
    steps = env.routing.num_decisions + (1 if router == "dispatched" else 0)
    rollout = env.rollout(3 * steps, break_when_any_done=False)  # random allowed actions, resets included
    assert rollout.batch_size == torch.Size([8, 3 * steps])
    done = rollout["next", "done"][..., 0]
    assert done[:, steps - 1 :: steps].all() and int(done.sum()) == 3 * 8  # every row, every episode
    assert rollout["valid"].all()
    assert (rollout["action_mask"].gather(-1, rollout["action"].unsqueeze(-1))).all()  # allowed actions only


def test_rewards_and_weights_are_the_batched_envs_under_the_same_routes(digits):
    """The adapter adds nothing: same seed, same actions -> same rewards and block weights."""
    plain = routing_env.batched_env(dataset=digits, router="per_task", eval_batch_size=8, **SMALL)
    wrapped = BatchedTorchRLEnv(dataset=digits, router="per_task", **SMALL)
    plain.reset(seed=3)
    wrapped.set_seed(3)
    td = wrapped.reset()
    rng = np.random.default_rng(0)
    for _ in range(4):  # four minibatches
        done = False
        while not done:
            mask = td["action_mask"].numpy()
            actions = np.array([rng.choice(np.flatnonzero(row)) for row in mask])
            _, rewards, done, _ = plain.step(actions)
            out = wrapped.step(td.set("action", torch.from_numpy(actions)))
            assert np.allclose(out["next", "reward"][:, 0].numpy(), rewards)
            assert bool(out["next", "done"].all()) == done
            td = out["next"] if not done else None
        plain.reset()
        td = wrapped.reset()
    for a, b in zip(plain.network.parameters(), wrapped.routing.network.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_short_last_minibatch_is_padded_and_marked_invalid(digits):
    small = subsample(digits, max_train=20, max_test=12, seed=0)  # 20 = 8 + 8 + 4
    env = BatchedTorchRLEnv(dataset=small, router="per_task", **SMALL)
    env.set_seed(0)
    sizes = []
    for _ in range(3):
        td = env.reset()
        sizes.append(int(td["valid"].sum()))
        assert td["action_mask"][~td["valid"]].sum(-1).eq(1).all()  # padding rows: action 0 only
        while True:
            td = env.step(td.set("action", td["action_mask"].float().argmax(-1)))
            reward = td["next", "reward"][:, 0]
            assert (reward[~td["valid"]] == 0).all()
            if bool(td["next", "done"].all()):
                break
            td = td["next"]
    assert sizes == [8, 8, 4]


def test_evaluation_routes_the_whole_split_and_goes_back_to_training(digits):
    data = split_validation(subsample(digits, max_train=64, max_test=30, seed=0), 0.25, seed=0)
    env = BatchedTorchRLEnv(dataset=data, router="per_task", **SMALL)
    env.set_seed(0)
    env.reset()
    from tensordict.nn import TensorDictModule

    first_allowed = TensorDictModule(
        lambda m: m.float().argmax(-1), in_keys=["action_mask"], out_keys=["action"]
    )
    test = evaluate_batched_policy(env, first_allowed)
    assert test["complete"] and test["samples"] == 30
    validation = evaluate_batched_policy(env, first_allowed, split="validation")
    assert validation["samples"] == len(data.validation)
    assert env.reset()["valid"].all() and env.routing.mode == "train"
    with pytest.raises(ValueError, match="mode must be"):
        env.set_mode("test")  # type: ignore[arg-type]


def test_bad_input_is_refused(digits):
    env = BatchedTorchRLEnv(dataset=digits, router="per_task", **SMALL)
    with pytest.raises(TypeError, match="not both"):
        BatchedTorchRLEnv(routing_env.batched_env(dataset=digits), router="single")
    env.set_seed(0)
    td = env.reset()
    bad = td.clone().set("action", torch.full((8,), 99))
    with pytest.raises(ValueError):
        env.step(bad)
    with pytest.raises(ValueError, match="no validation split"):
        env.set_mode("eval", split="validation")


@pytest.mark.slow
def test_torchrl_ppo_learns_through_the_batched_game(monkeypatch, capsys):
    """The example as printed: TorchRL's PPO routers end well above the 0.900 majority rate."""
    example = load_example("torchrl_batched_routers")
    monkeypatch.setattr(sys, "argv", ["torchrl_batched_routers.py"])
    summary = example.main(example.Args())
    assert summary["test_accuracy"] >= 0.95, summary
    assert summary["validation_accuracy"] >= 0.95, summary
    assert "greedy test accuracy" in capsys.readouterr().out


def test_the_example_runs_a_tiny_budget(monkeypatch):
    example = load_example("torchrl_batched_routers")
    summary = example.main(example.Args(num_samples=64, batch_size=32))
    assert summary["train_samples"] == 64 and 0.0 <= summary["test_accuracy"] <= 1.0
