"""Every algorithm trains end-to-end on digits-MTL through the real routing env.

The fast tests use a small network and budget: they check that training runs
through the public AEC API in every configuration and changes what the agents do.
The slow test trains long enough for per-task WPL to find task-specific routes.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

import routing_env
from agents import (
    WPL,
    Dispatcher,
    EpsilonSchedule,
    MultiAgentRouter,
    QLearning,
    Reinforce,
    RouterAgent,
    evaluate,
    evaluate_batched,
    train,
    train_batched,
)

SMALL_NETWORK = {"hidden_width": 16, "filters": 8, "batch_size": 16, "optimizer": "adam", "lr": 1e-3}

ALGORITHMS = {
    "wpl": functools.partial(WPL, lr=0.3),
    "reinforce-table": functools.partial(Reinforce, representation="table", lr=0.1),
    "reinforce-mlp": functools.partial(Reinforce, lr=1e-2),
    "qlearning-table": functools.partial(QLearning, lr=0.1, epsilon=0.2),
    "qlearning-mlp": functools.partial(
        QLearning, representation="mlp", lr=1e-2, epsilon=EpsilonSchedule(start=1.0, end=0.1, steps=200)
    ),
}

CONFIGS = [("per_task", name) for name in ALGORITHMS] + [
    ("single", "reinforce-mlp"),
    ("single", "qlearning-table"),
    ("dispatched", "reinforce-mlp"),
    ("per_task-recurrent", "wpl"),
]


def learned_arrays(learner):
    """The learned numbers of an agent's state (the sampling generator's state excluded)."""
    out = []

    def collect(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key not in ("rng", "optimizer"):
                    collect(item)
        elif isinstance(value, torch.Tensor):
            out.append(value.detach().numpy().copy())
        elif isinstance(value, np.ndarray):
            out.append(value.copy())

    collect(learner.state_dict())
    return out


def changed(before, after):
    return any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize(("config", "algorithm"), CONFIGS, ids=[f"{c}-{a}" for c, a in CONFIGS])
def test_trains_end_to_end_on_digits(config, algorithm):
    router_config, _, routing = config.partition("-")
    env = routing_env.env(router=router_config, routing=routing or "layered", **SMALL_NETWORK)
    router = MultiAgentRouter.from_env(
        env,
        router_factory=ALGORITHMS[algorithm],
        dispatcher_factory=functools.partial(Dispatcher, lr=1e-2),
        seed=0,
    )
    before = {agent_id: learned_arrays(learner) for agent_id, learner in router.items()}
    stats = train(env, router, num_samples=300, seed=0)
    assert stats.num_samples >= 300
    expected_traces = 2 * stats.num_samples if router_config == "dispatched" else stats.num_samples
    assert stats.traces_learned == expected_traces
    assert 0.0 <= stats.accuracy <= 1.0
    # every agent routed samples in 300 (all ten tasks occur) and learned from them
    learned = {
        agent_id for agent_id, learner in router.items() if changed(before[agent_id], learned_arrays(learner))
    }
    assert learned == set(router)
    evaluation = evaluate(env, router, num_samples=100)
    assert evaluation.num_samples == 100 and 0.0 <= evaluation.accuracy <= 1.0


class UniformRouter(RouterAgent):
    """Picks uniformly among the allowed blocks and never learns."""

    def action_probs(self, obs):
        _, mask = self.check_observation(obs)
        return mask / mask.sum()

    def learn(self, trace):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@pytest.mark.slow
def test_per_task_wpl_beats_a_uniformly_random_router():
    """A uniformly random (stochastic) router cannot beat the ~90% majority rate of these
    one-vs-rest tasks: its routes carry no task information. Per-task WPL converges to
    task-specific routes, on which the blocks learn each task (about a minute)."""
    budget, test_size = 60_000, 3590
    accuracy = {}
    for name, factory, greedy in [
        ("wpl", functools.partial(WPL, lr=0.3), True),
        ("uniform", UniformRouter, False),
    ]:
        env = routing_env.env(router="per_task", optimizer="adam", lr=1e-3)
        router = MultiAgentRouter.from_env(env, router_factory=factory, seed=0)
        train(env, router, num_samples=budget, seed=0)
        accuracy[name] = evaluate(env, router, num_samples=test_size, greedy=greedy).accuracy
    assert accuracy["uniform"] < 0.91
    assert accuracy["wpl"] > 0.95
    assert accuracy["wpl"] > accuracy["uniform"] + 0.04


class _Scale(nn.Module):
    """A trunk that flattens its input; its one parameter (trained at a negligible rate)
    gives the env's block optimizer something to hold."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x.flatten(1) * self.scale


def _expert_network(dataset):
    """One frozen linear classifier per task, block t fitted (least squares) to task t only:
    routing task t through block t is right, any other block answers another question."""
    x = dataset.normalize(dataset.train.inputs_NCHW).flatten(1).double()
    features = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    blocks = []
    for t in range(dataset.num_tasks):
        rows = dataset.train.tasks_N == t
        sign = 2.0 * dataset.train.targets_N[rows].double() - 1.0
        w = torch.linalg.lstsq(features[rows], sign[:, None]).solution[:, 0]
        block = nn.Linear(x.shape[1], 2)
        with torch.no_grad():
            block.weight.zero_()
            block.bias.zero_()
            block.weight[1] = w[:-1].float()
            block.bias[1] = w[-1].float()
        blocks.append(block.requires_grad_(False))
    return routing_env.RoutingNetwork(
        trunk=_Scale(), layers=[blocks], input_shape=dataset.input_shape, output_size=2
    )


@pytest.mark.parametrize("path", ["batched", "aec"])
def test_wpl_learns_to_route_each_task_to_its_expert_in_the_env(digits, path):
    """WPL routing learns in the real env, and the test fails if the sign of its update is
    flipped: with frozen per-task expert blocks, the right routes are known and only the
    routers learn. Correct WPL sends (nearly) every task to its expert (about 0.95);
    the same learner with the sign flipped ends on wrong experts (about 0.81)."""
    results = {}
    for sign in (1.0, -1.0):
        kwargs = dict(dataset=digits, network=_expert_network(digits), optimizer="sgd", lr=1e-9)
        env = routing_env.batched_env(**kwargs) if path == "batched" else routing_env.env(**kwargs)
        router = MultiAgentRouter.from_env(env, router_factory=functools.partial(WPL, lr=0.3), seed=0)
        for learner in router.values():
            learner.lr = sign * 0.3  # the control: WPL's update with its sign flipped
        epochs = 3 if path == "batched" else 1
        for epoch in range(epochs):
            run = train_batched if path == "batched" else train
            run(env, router, num_samples=len(digits.train), seed=0 if epoch == 0 else None)
        if path == "batched":
            accuracy = evaluate_batched(env, router).accuracy
        else:
            accuracy = evaluate(env, router, num_samples=len(digits.test)).accuracy
        routes = [int(router[f"router_{t}"].policy_nA[0].argmax()) for t in range(digits.num_tasks)]
        results[sign] = accuracy, sum(route == t for t, route in enumerate(routes))
    (right, own), (flipped, flipped_own) = results[1.0], results[-1.0]
    assert right > 0.92 and own >= 7
    assert flipped < 0.86 and flipped_own <= 2
