"""routing_env.optim: the one optimizer factory and the one learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

import routing_env
from routing_env import baselines
from routing_env.datasets import digits_mtl, subsample
from routing_env.optim import StepDecay, make_optimizer


def test_make_optimizer_builds_sgd_and_adam_with_their_settings():
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer(params, name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["weight_decay"] == 1e-4
    adam = make_optimizer(params, name="adam", lr=1e-3)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="rmsprop"):
        make_optimizer(params, name="rmsprop", lr=1e-3)
    with pytest.raises(ValueError, match="momentum applies to 'sgd' only"):
        make_optimizer(params, name="adam", lr=1e-3, momentum=0.9)


def test_step_decay_in_place_and_from_the_initial_rate_agree():
    schedule = StepDecay(every=3, factor=0.5)
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], name="sgd", lr=0.8)
    for epoch in range(10):
        assert optimizer.param_groups[0]["lr"] == schedule.lr_at(0.8, epoch)  # exact: halving is exact
        schedule.step(optimizer, epoch=epoch + 1)
    assert schedule.lr_at(0.8, 9) == 0.1
    assert StepDecay(every=None).lr_at(0.8, 100) == 0.8
    with pytest.raises(ValueError, match="lr_decay_every"):
        StepDecay(every=0)
    with pytest.raises(ValueError, match="lr_decay_factor"):
        StepDecay(every=1, factor=0.0)


def test_the_env_and_the_baselines_decay_on_the_same_epochs():
    data = subsample(digits_mtl(), max_train=20, max_test=10)
    env = routing_env.RoutingEnv(dataset=data, batch_size=10, lr=0.8, lr_decay_every=2, lr_decay_factor=0.5)
    env.reset(seed=0)
    model = baselines.build_baseline("task-specific-1-fc", dataset=data)
    optimizer = baselines.model_optimizer(model, optimizer="adam", lr=0.8)
    schedule = env.training.lr_schedule
    env_lrs, baseline_lrs = [], []
    for epoch in range(5):
        for i in range(len(data.train)):  # one epoch: every training sample routed once
            for _agent in env.agent_iter():
                obs, _, terminated, truncated, _ = env.last()
                env.step(None if terminated or truncated else int(obs["task"]) % env.num_actions)
            if i == len(data.train) - 1:  # the epoch's last sample: read its rate before the next draw
                env_lrs.append(env.block_lr)
            env.reset()  # the next sample (the first of the next epoch decays the rate when due)
        baseline_lrs.append(optimizer.param_groups[0]["lr"])  # the rate this epoch trains with
        schedule.step(optimizer, epoch=epoch + 1)
    assert env_lrs == baseline_lrs == [0.8, 0.8, 0.4, 0.4, 0.2]


def test_the_baselines_former_optimizer_name_still_works():
    with pytest.warns(DeprecationWarning, match="model_optimizer"):
        old = baselines.make_optimizer
    assert old is baselines.model_optimizer
