"""``update="minibatch"``: one optimizer step per minibatch on the mean of its traces' losses.

The reference is the per-trace rule at fixed parameters: with the optimizer's step
switched off, :meth:`learn` on each trace in turn leaves each trace's gradient at the
same parameters, and the minibatch step must apply (once) their mean. This holds for
every neural agent: REINFORCE (table and MLP; average, value and no baseline), the
Q-learning MLP (whose targets come from the network at the start of the minibatch) and
the dispatcher. A minibatch of one trace is the per-trace update.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

from agents import Dispatcher, QLearning, Reinforce, RouterAgent, TraceBatch
from agents.networks import masked_argmax_rows

from .test_batched_agents import AGENTS, assert_same_state, make_agent, pretrain, trace_batch

NEURAL = [
    name
    for name in AGENTS
    if name.startswith(("reinforce", "dispatcher")) or name.startswith("qlearning-mlp")
]


def optimizer_of(agent: RouterAgent) -> torch.optim.Optimizer:
    assert isinstance(agent, (QLearning, Reinforce))
    return agent.optimizer


def record_steps(agent: RouterAgent, *, step: bool) -> list[list[torch.Tensor]]:
    """Record the gradients at each optimizer step of ``agent`` (``step=False``: and skip it)."""
    optimizer = optimizer_of(agent)
    real_step = optimizer.step
    recorded: list[list[torch.Tensor]] = []

    def recording_step(*args: Any, **kwargs: Any) -> Any:
        recorded.append(
            [
                torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                for group in optimizer.param_groups
                for p in group["params"]
            ]
        )
        return real_step(*args, **kwargs) if step else None

    optimizer.step = recording_step  # type: ignore[method-assign]
    return recorded


def with_update(name: str, update: str, **kwargs: Any) -> RouterAgent:
    return make_agent(name, update=update, **kwargs)


@pytest.mark.parametrize("name", NEURAL)
def test_one_step_on_the_mean_of_the_per_trace_gradients(name):
    rng = np.random.default_rng(11)
    agent = with_update(name, "minibatch")
    pretrain(agent, rng, traces=10)  # learn(): one trace at a time, the same either way
    reference = copy.deepcopy(agent)
    reference.update = "trace"
    traces, _ = trace_batch(rng, agent, 16)

    per_trace = record_steps(reference, step=False)
    expected_stats = RouterAgent.learn_batch(reference, traces)  # learn() on each trace, no step
    steps = record_steps(agent, step=True)
    before = [p.detach().clone() for p in torch.nn.ModuleList(networks(agent)).parameters()]
    stats = agent.learn_batch(traces)

    assert len(per_trace) == 16 and len(steps) == 1
    for got, *each in zip(steps[0], *per_trace, strict=True):
        torch.testing.assert_close(got, torch.stack(each).mean(dim=0), rtol=1e-5, atol=1e-7)
    after = list(torch.nn.ModuleList(networks(agent)).parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # it stepped
    assert stats.keys() == expected_stats.keys()
    for key in stats:
        assert stats[key] == pytest.approx(expected_stats[key], rel=1e-5, abs=1e-7), key
    # what does not depend on the networks advances as trace by trace
    if isinstance(agent, Reinforce):
        assert isinstance(reference, Reinforce)
        np.testing.assert_array_equal(agent.average_return_n, reference.average_return_n)
    else:
        assert isinstance(agent, QLearning) and isinstance(reference, QLearning)
        assert agent.traces_learned == reference.traces_learned
        assert agent.epsilon == reference.epsilon


def networks(agent: RouterAgent) -> list[torch.nn.Module]:
    if isinstance(agent, QLearning):
        assert agent.q_net is not None
        return [agent.q_net]
    assert isinstance(agent, Reinforce)
    return [agent.policy_net] + ([] if agent.value_net is None else [agent.value_net])


@pytest.mark.parametrize("name", NEURAL)
def test_a_minibatch_of_one_trace_is_the_trace_update(name):
    rng = np.random.default_rng(12)
    agent = with_update(name, "minibatch")
    pretrain(agent, rng, traces=5)
    twin = copy.deepcopy(agent)
    twin.update = "trace"
    for _ in range(3):
        traces, _ = trace_batch(rng, agent, 1)
        got, want = agent.learn_batch(traces), twin.learn_batch(traces)
        assert got.keys() == want.keys()
        for key in got:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-7), key
    for a, b in zip(networks(agent), networks(twin), strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["reinforce-mlp", "qlearning-mlp", "dispatcher"])
def test_learn_on_one_trace_ignores_the_update_option(name):
    """The AEC path hands one trace at a time: ``learn`` is the same rule either way."""
    rng = np.random.default_rng(13)
    agent, twin = with_update(name, "minibatch"), with_update(name, "trace")
    traces, _ = trace_batch(rng, agent, 6)
    for i in range(6):
        assert agent.learn(traces.trace(i)) == twin.learn(traces.trace(i))
    assert_same_state(agent.state_dict(), twin.state_dict())


def test_minibatch_learns_a_fixed_best_route():
    """Sanity of the rule itself: Q-learning by minibatch steps finds the one rewarded last action."""
    agent = with_update("qlearning-mlp", "minibatch")
    rng = np.random.default_rng(14)
    for _ in range(150):
        traces, _ = trace_batch(rng, agent, 32)
        rewarded = traces.actions[:, -1] == 0
        agent.learn_batch(
            TraceBatch(
                observations=traces.observations,
                actions=traces.actions,
                rewards=np.zeros_like(traces.rewards),
                final_rewards=np.where(rewarded, 1.0, -1.0),
            )
        )
    traces, _ = trace_batch(rng, agent, 64)
    last = traces.observations[-1]
    mask_BA = np.asarray(last["action_mask"]).astype(bool)
    greedy = masked_argmax_rows(agent.batch_q_values(last), mask_BA)
    assert mask_BA[:, 0].any() and (greedy[mask_BA[:, 0]] == 0).all()


def test_bad_update_options_are_refused():
    with pytest.raises(ValueError, match="update must be one of"):
        make_agent("reinforce-mlp", update="batch")
    with pytest.raises(ValueError, match="needs representation='mlp'"):
        make_agent("qlearning-table", update="minibatch")
    assert isinstance(make_agent("dispatcher", update="minibatch"), Dispatcher)
    assert make_agent("dispatcher", update="minibatch").update == "minibatch"  # type: ignore[attr-defined]
