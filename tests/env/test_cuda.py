"""The env and the game analysis with the network on a CUDA device (skipped without one).

With ``device="cuda"`` the network lives on the GPU while observations, rewards and
masks still come back as NumPy; the NumPy fast path is off (it is for CPU float32
parameters only) and every block call goes through torch. The runs must agree with the
same runs on CPU up to float rounding.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import routing_env
from agents import WPL, MultiAgentRouter, evaluate, train
from routing_env.game import analyze_game

from .helpers import random_choice, run_episodes

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _full_float32():
    """Compare CPU and GPU arithmetic at float32: no TF32 convolutions or matrix products."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def make_env(digits, device: str, **config):
    return routing_env.env(
        dataset=digits, batch_size=16, hidden_width=16, optimizer="adam", lr=3e-3, device=device, **config
    )


@pytest.mark.parametrize("routing", ["layered", "recurrent"])
def test_env_on_cuda_gives_the_cpu_run(digits, routing):
    logs = {}
    for device in ("cpu", "cuda"):
        env = make_env(digits, device, routing=routing)
        logs[device] = run_episodes(env, 80, random_choice(0), seed=0)  # 5 block updates
        network = env.unwrapped.network
        assert {p.device.type for p in network.parameters()} == {device}
        assert env.unwrapped.engine.updates == 5
    cpu, gpu = logs["cpu"], logs["cuda"]
    assert [(a, act) for a, _, _, _, act, _ in cpu] == [(a, act) for a, _, _, _, act, _ in gpu]
    for (_, r_cpu, _, _, _, obs_cpu), (_, r_gpu, _, _, _, obs_gpu) in zip(cpu, gpu, strict=True):
        assert isinstance(obs_gpu["observation"], np.ndarray)
        assert obs_gpu["observation"].dtype == obs_cpu["observation"].dtype
        np.testing.assert_allclose(obs_gpu["observation"], obs_cpu["observation"], rtol=1e-3, atol=1e-4)
        np.testing.assert_array_equal(obs_gpu["action_mask"], obs_cpu["action_mask"])
        assert r_gpu == pytest.approx(r_cpu)


def test_wpl_trains_and_evaluates_on_cuda(digits):
    env = make_env(digits, "cuda")
    router = MultiAgentRouter.from_env(env, router_factory=functools.partial(WPL, lr=0.3), seed=0)
    stats = train(env, router, num_samples=1500, seed=0)
    assert stats.num_samples >= 1500
    result = evaluate(env, router, num_samples=len(digits.test))
    assert 0.9 <= result.accuracy <= 1.0  # at least the majority rate ("not c": 90%)
    assert env.unwrapped.engine.updates >= 1500 // 16


def test_game_analysis_on_cuda_matches_cpu(digits):
    results = {}
    for device in ("cpu", "cuda"):
        env = make_env(digits, device)
        router = MultiAgentRouter.from_env(env, router_factory=functools.partial(WPL, lr=0.3), seed=0)
        train(env, router, num_samples=300, seed=0)
        results[device] = analyze_game(env, router, max_samples_per_task=10)
    cpu, gpu = results["cpu"].summary(), results["cuda"].summary()
    # cross-fitted NashConv picks each fold's best path on the other fold: a near-tie may
    # flip with float rounding, so it is only checked to exist
    held_out = "nash_conv_heldout"
    assert np.isfinite(gpu.pop(held_out)) and np.isfinite(cpu.pop(held_out))
    assert gpu == pytest.approx(cpu, abs=1e-3)


def test_a_seed_gives_the_same_weights_on_cpu_and_cuda_and_leaves_cudas_generator(digits):
    weights = {}
    for device in ("cpu", "cuda"):
        env = make_env(digits, device)
        cuda_state = torch.cuda.get_rng_state()
        env.reset(seed=3)
        assert torch.equal(torch.cuda.get_rng_state(), cuda_state)  # no global side effect
        network = env.unwrapped.network
        weights[device] = {k: v.detach().cpu() for k, v in network.named_parameters()}
    assert all(torch.equal(weights["cpu"][k], weights["cuda"][k]) for k in weights["cpu"])
    # (the reset has already run the first minibatch through the trunk, so batch-norm
    # running statistics differ by float rounding; the parameters must be identical)
