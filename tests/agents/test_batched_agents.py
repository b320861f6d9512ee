"""The batched path of REINFORCE, Q-learning and the dispatcher gives the per-sample results.

For every agent type and representation:

- ``act_batch`` on a batched observation takes the actions of ``act`` row by row on a
  clone (the reference is :meth:`RouterAgent.act_batch`, the default) and leaves the
  generator in the same state, greedy and sampled, with rows of different masks and
  depths. Exact for tables; for MLPs the logits of a many-row product may differ from
  a one-row product in the last bit, which could flip a sampled action only when a draw
  lies within that round-off of a boundary: the seeds here do not, and the
  probabilities are checked to agree to 1e-6.
- ``learn_batch`` makes the updates of ``learn`` trace after trace (the default
  :meth:`RouterAgent.learn_batch`): bit-identical state (tables, MLP weights and
  optimizer moments compared with ``torch.equal``/``np.array_equal``) and the same
  statistics.
- Tables never read ``obs["observation"]``; MLPs take ``device=`` and their state loads
  across devices (CUDA tests skip without a GPU).
- ``train_batched`` runs every agent type end to end on a digits subset in the
  per-task (layered and recurrent), single and dispatched configurations, and a run
  gives the same stats, agents and blocks as with the default (row-by-row) methods.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

import routing_env
from agents import (
    WPL,
    Dispatcher,
    EpsilonSchedule,
    MultiAgentRouter,
    QLearning,
    Reinforce,
    RouterAgent,
    TraceBatch,
    evaluate_batched,
    train_batched,
)
from agents.base import masked_argmax, observation_row, sample_from
from agents.networks import masked_argmax_rows, sample_rows
from routing_env import BatchObservation
from routing_env.datasets import subsample

NUM_ACTIONS, NUM_DEPTHS, NUM_TASKS, WIDTH, NUM_ROUTERS = 5, 3, 3, 6, 4
SCHEDULE = EpsilonSchedule(start=1.0, end=0.05, steps=40)

AGENTS = {
    "reinforce-table": functools.partial(Reinforce, representation="table", lr=0.1),
    "reinforce-table-value-sgd": functools.partial(
        Reinforce, representation="table", lr=0.1, optimizer="sgd", baseline="value", gamma=0.9
    ),
    "reinforce-mlp": functools.partial(Reinforce, representation="mlp", lr=1e-2),
    "reinforce-mlp-value": functools.partial(
        Reinforce, representation="mlp", lr=1e-2, baseline="value", gamma=0.9
    ),
    "reinforce-mlp-none-sgd": functools.partial(
        Reinforce, representation="mlp", lr=0.05, optimizer="sgd", baseline="none"
    ),
    "qlearning-table": functools.partial(
        QLearning, representation="table", lr=0.1, gamma=0.9, epsilon=SCHEDULE
    ),
    "qlearning-mlp": functools.partial(QLearning, representation="mlp", lr=1e-2, gamma=0.9, epsilon=SCHEDULE),
    "qlearning-mlp-sgd": functools.partial(
        QLearning, representation="mlp", lr=0.05, optimizer="sgd", epsilon=0.3
    ),
    "wpl-table": functools.partial(WPL, lr=0.1),
    "dispatcher": functools.partial(Dispatcher, lr=1e-2),
    "dispatcher-value": functools.partial(Dispatcher, lr=1e-2, baseline="value"),
}


def router_spaces(
    *, num_actions: int, num_depths: int = 1
) -> tuple[gymnasium.spaces.Dict, gymnasium.spaces.Discrete]:
    """A router's spaces as the routing env builds them (as in conftest.py)."""
    obs = gymnasium.spaces.Dict(
        {
            "observation": gymnasium.spaces.Box(-np.inf, np.inf, shape=(WIDTH,), dtype=np.float32),
            "task": gymnasium.spaces.Discrete(NUM_TASKS),
            "depth": gymnasium.spaces.Discrete(num_depths),
            "action_mask": gymnasium.spaces.Box(0, 1, shape=(num_actions,), dtype=np.int8),
        }
    )
    return obs, gymnasium.spaces.Discrete(num_actions)


def make_agent(name: str, *, seed: int = 0, **kwargs: Any) -> RouterAgent:
    if name.startswith("dispatcher"):
        obs_space, act_space = router_spaces(num_actions=NUM_ROUTERS)
    else:
        obs_space, act_space = router_spaces(num_actions=NUM_ACTIONS, num_depths=NUM_DEPTHS)
    return AGENTS[name](observation_space=obs_space, action_space=act_space, seed=seed, **kwargs)


def decisions(agent: RouterAgent) -> int:
    return 1 if isinstance(agent, Dispatcher) else agent.num_depths


class Representations:
    """A lazy representation, as the batched env hands it out: counts how often it is read."""

    def __init__(self, v_BD: torch.Tensor) -> None:
        self.v_BD = v_BD
        self.reads = 0

    def __call__(self) -> torch.Tensor:
        self.reads += 1
        return self.v_BD


def batch_obs(
    rng: np.random.Generator,
    agent: RouterAgent,
    B: int,
    *,
    depth: int | None = None,
    kind: str = "batch",
    device: str = "cpu",
) -> tuple[Any, Representations]:
    """A batched observation of ``B`` rows with random masks, tasks, representations and
    (``depth=None``) depths; ``kind``: a :class:`BatchObservation`, or a plain dict of
    arrays (representations as a tensor, ``"dict"``, or a NumPy array, ``"dict-numpy"``)."""
    A = agent.num_actions
    mask_BA = (rng.random((B, A)) < 0.5).astype(np.int8)
    mask_BA[np.arange(B), rng.integers(A, size=B)] = 1  # every row allows something
    if isinstance(agent, Dispatcher):
        depth_B = np.zeros(B, dtype=np.int64)
    elif depth is None:
        depth_B = rng.integers(agent.num_depths, size=B)
    else:
        depth_B = np.full(B, depth, dtype=np.int64)
    task_B = rng.integers(NUM_TASKS, size=B)
    v_BD = torch.from_numpy(rng.normal(size=(B, WIDTH)).astype(np.float32)).to(device)
    lazy = Representations(v_BD)
    arrays = {"task": task_B, "depth": depth_B, "action_mask": mask_BA}
    if kind == "batch":
        obs = BatchObservation(
            **arrays,
            agent=np.zeros(B, dtype=np.int64),
            sample_index=np.arange(B),
            representation=lazy,
        )
    elif kind == "dict":
        obs = {"observation": v_BD, **arrays}
    else:
        obs = {"observation": v_BD.cpu().numpy(), **arrays}
    return obs, lazy


def trace_batch(
    rng: np.random.Generator, agent: RouterAgent, b: int, **kwargs: Any
) -> tuple[TraceBatch, list[Representations]]:
    """``b`` traces of ``n`` decisions (decision ``j`` at depth ``j``) with random allowed
    actions, and the lazy representations of the decisions."""
    n = decisions(agent)
    columns = [batch_obs(rng, agent, b, depth=j, **kwargs) for j in range(n)]
    observations = [obs for obs, _ in columns]
    actions = np.array(
        [[rng.choice(np.flatnonzero(obs["action_mask"][i])) for obs in observations] for i in range(b)],
        dtype=np.int64,
    ).reshape(b, n)
    traces = TraceBatch(
        observations=observations,
        actions=actions,
        rewards=rng.normal(0.0, 0.2, (b, n)),
        final_rewards=rng.choice([-1.0, 1.0], b),
    )
    return traces, [lazy for _, lazy in columns]


def pretrain(agent: RouterAgent, rng: np.random.Generator, traces: int = 30) -> None:
    """Per-sample learning so that the policy or Q values are not uniform."""
    batch, _ = trace_batch(rng, agent, traces)
    for i in range(traces):
        agent.learn(batch.trace(i))


def assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    """Bitwise equality of two (nested) state dicts: tensors, arrays and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.device == b.device, where
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{k}]")
    else:
        assert a == b, where


# ----------------------------------------------------------------- acting
@pytest.mark.parametrize("kind", ["batch", "dict", "dict-numpy"])
@pytest.mark.parametrize("depths", ["mixed", "one"])
@pytest.mark.parametrize("trained", [False, True], ids=["fresh", "trained"])
@pytest.mark.parametrize("name", list(AGENTS))
def test_act_batch_takes_the_actions_of_act_row_by_row(name, trained, depths, kind):
    rng = np.random.default_rng(1)
    agent = make_agent(name)
    if trained:
        pretrain(agent, rng)
    twin = copy.deepcopy(agent)
    for greedy in (False, True, False):
        obs, lazy = batch_obs(rng, agent, 64, depth=None if depths == "mixed" else 1, kind=kind)
        expected = RouterAgent.act_batch(twin, obs, greedy=greedy)  # the default: act row by row
        reads = lazy.reads
        got = agent.act_batch(obs, greedy=greedy)
        assert got.dtype == np.int64 and got.shape == (64,)
        assert got.tolist() == expected.tolist()
        assert agent.rng.bit_generator.state == twin.rng.bit_generator.state
        assert np.asarray(obs["action_mask"])[np.arange(64), got].all()
        if "table" in name and kind == "batch":
            assert lazy.reads == reads  # the batched path never asked for the representations


@pytest.mark.parametrize("name", [n for n in AGENTS if "mlp" in n or n.startswith("dispatcher")])
def test_mlp_batched_probabilities_agree_with_the_per_row_ones(name):
    """The many-row forward differs from the one-row forward by float round-off only."""
    rng = np.random.default_rng(2)
    agent = make_agent(name)
    pretrain(agent, rng)
    obs, _ = batch_obs(rng, agent, 64)
    rows = [observation_row(obs, i) for i in range(64)]
    if isinstance(agent, QLearning):
        got = agent.batch_q_values(obs)
        want = np.stack([agent.q_values(row) for row in rows])
    else:
        assert isinstance(agent, Reinforce)
        got = agent.batch_action_probs(obs)
        want = np.stack([agent.action_probs(row) for row in rows])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_sample_rows_and_masked_argmax_rows_are_the_per_row_helpers():
    rng = np.random.default_rng(3)
    probs = rng.random((500, 7)) * (rng.random((500, 7)) < 0.6)
    probs[:, 0] += 1e-3  # every row has mass
    probs[:5, -1] = 0.0  # zero-probability entries at the top end
    probs /= probs.sum(axis=1, keepdims=True)
    u = np.random.default_rng(4).random(500)
    u[:3] = 1.0 - 1e-17  # draws at the very top end
    one_by_one = [sample_from(p, _Fixed(x)) for p, x in zip(probs, u, strict=True)]
    assert sample_rows(probs, u).tolist() == one_by_one
    mask = probs > 0
    values = np.round(rng.normal(size=(500, 7)), 1)  # many ties
    values[:4] = -np.inf
    assert masked_argmax_rows(values, mask).tolist() == [
        masked_argmax(v, m) for v, m in zip(values, mask, strict=True)
    ]


class _Fixed:
    """A stand-in generator whose ``random()`` returns one given number."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    "name", ["reinforce-table", "qlearning-table", "reinforce-mlp", "qlearning-mlp", "wpl-table"]
)
def test_act_batch_names_the_bad_row(name):
    rng = np.random.default_rng(5)
    agent = make_agent(name)
    state = agent.rng.bit_generator.state
    obs, _ = batch_obs(rng, agent, 8, kind="dict")
    no_action = {**obs, "action_mask": obs["action_mask"].copy()}
    no_action["action_mask"][3] = 0
    with pytest.raises(ValueError, match="row 3 allows no action"):
        agent.act_batch(no_action)
    deep = {**obs, "depth": np.r_[np.zeros(5, dtype=np.int64), NUM_DEPTHS, 0, 0]}
    with pytest.raises(ValueError, match=rf"depth {NUM_DEPTHS} of row 5 is out of range"):
        agent.act_batch(deep)
    with pytest.raises(ValueError, match=r"action masks have shape \(8, 4\)"):
        agent.act_batch({**obs, "action_mask": obs["action_mask"][:, :4]})
    if name not in ("qlearning-table", "wpl-table"):  # the per-sample tables ignore the task as well
        with pytest.raises(ValueError, match="task 7 of row 2 is out of range"):
            agent.act_batch({**obs, "task": np.r_[0, 0, 7, np.zeros(5, dtype=np.int64)]})
    assert agent.rng.bit_generator.state == state  # nothing drawn


def test_an_empty_batch_takes_no_action():
    agent = make_agent("reinforce-mlp")
    obs, _ = batch_obs(np.random.default_rng(0), agent, 0, kind="dict")
    assert agent.act_batch(obs).shape == (0,)


# ----------------------------------------------------------------- learning
@pytest.mark.parametrize("kind", ["batch", "dict-numpy"])
@pytest.mark.parametrize("name", list(AGENTS))
def test_learn_batch_makes_the_updates_of_learn_trace_by_trace(name, kind):
    rng = np.random.default_rng(6)
    agent = make_agent(name)
    pretrain(agent, rng, traces=10)
    twin = copy.deepcopy(agent)
    for b in (24, 1, 17):  # several minibatches: optimizer moments and averages carry over
        traces, lazies = trace_batch(rng, agent, b, kind=kind)
        got = agent.learn_batch(traces)
        if "table" in name:  # the representations were never read
            assert [lazy.reads for lazy in lazies] == [0] * len(lazies)
        expected = RouterAgent.learn_batch(twin, traces)  # the default: learn on each trace in turn
        assert got == expected
        assert_same_state(agent.state_dict(), twin.state_dict())
    # and the agents act the same afterwards
    obs, _ = batch_obs(rng, agent, 32)
    assert agent.act_batch(obs).tolist() == RouterAgent.act_batch(twin, obs).tolist()


@pytest.mark.parametrize(
    "name", ["reinforce-table", "reinforce-mlp", "qlearning-table", "qlearning-mlp", "wpl-table"]
)
def test_a_masked_action_in_a_trace_batch_is_named_and_changes_nothing(name):
    rng = np.random.default_rng(7)
    agent = make_agent(name)
    pretrain(agent, rng, traces=5)
    traces, _ = trace_batch(rng, agent, 6, kind="dict")
    mask = traces.observations[1]["action_mask"]
    mask[4] = 0
    mask[4, (traces.actions[4, 1] + 1) % NUM_ACTIONS] = 1  # allowed: only another action
    before = copy.deepcopy(agent.state_dict())
    with pytest.raises(
        ValueError, match=r"trace 4 holds action \d at decision 1, which its observation masks"
    ):
        agent.learn_batch(traces)
    assert_same_state(agent.state_dict(), before)


def test_learn_batch_of_traces_without_decisions_learns_nothing():
    agent = make_agent("qlearning-table")
    empty = TraceBatch(
        observations=[],
        actions=np.zeros((3, 0), dtype=np.int64),
        rewards=np.zeros((3, 0)),
        final_rewards=np.zeros(3),
    )
    assert agent.learn_batch(empty) == {} and agent.traces_learned == 0


# ----------------------------------------------------------------- devices
@pytest.mark.parametrize("name", ["reinforce-mlp-value", "qlearning-mlp", "dispatcher"])
def test_state_dicts_are_cpu_copies_that_later_learning_leaves_alone(name):
    rng = np.random.default_rng(8)
    agent = make_agent(name, device=torch.device("cpu"))
    pretrain(agent, rng, traces=5)
    saved = agent.state_dict()
    snapshot = copy.deepcopy(saved)
    pretrain(agent, rng, traces=5)  # Adam's moments are updated in place
    assert_same_state(saved, snapshot)
    fresh = make_agent(name, seed=99)
    fresh.load_state_dict(saved)
    assert_same_state(fresh.state_dict(), saved)


@pytest.mark.parametrize(
    "device, error, message",
    [
        ("tpu-ish", ValueError, "unknown device"),
        (3, TypeError, "device must be a string"),
        pytest.param(
            "cuda",
            ValueError,
            "CUDA, which is not available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here"),
        ),
    ],
)
@pytest.mark.parametrize("name", ["reinforce-mlp", "qlearning-mlp", "dispatcher"])
def test_a_bad_device_is_refused(name, device, error, message):
    with pytest.raises(error, match=message):
        make_agent(name, device=device)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize(
    "name", ["reinforce-mlp-value", "reinforce-table", "qlearning-mlp", "qlearning-mlp-sgd", "dispatcher"]
)
def test_agents_on_cuda_act_and_learn_on_the_gpu(name):
    rng = np.random.default_rng(9)
    gpu = make_agent(name, device="cuda")
    nets = [m for m in (getattr(gpu, "policy_net", None), getattr(gpu, "q_net", None)) if m is not None]
    assert {p.device.type for net in nets for p in net.parameters()} == {"cuda"}
    # the same initial weights as on the CPU, and the state is handed out on the CPU
    assert_same_state(make_agent(name).state_dict(), gpu.state_dict())
    traces, _ = trace_batch(rng, gpu, 16, kind="batch", device="cuda")  # CUDA representations
    twin = copy.deepcopy(gpu)
    stats = gpu.learn_batch(traces)
    expected = RouterAgent.learn_batch(twin, traces)  # learn() on NumPy observations, on the GPU
    assert stats.keys() == expected.keys()
    for key in stats:
        assert stats[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-6)
    got_state, want_state = gpu.state_dict(), twin.state_dict()
    for key in ("policy_net", "value_net", "q_net"):
        if got_state.get(key) is not None:
            for k in got_state[key]:
                torch.testing.assert_close(got_state[key][k], want_state[key][k], rtol=1e-6, atol=1e-6)
    obs, _ = batch_obs(rng, gpu, 64, device="cuda")
    assert gpu.act_batch(obs, greedy=True).tolist() == RouterAgent.act_batch(twin, obs, greedy=True).tolist()
    # CUDA representations into a CPU agent; a state saved from the GPU loads on the CPU and back
    cpu = make_agent(name)
    cpu.learn_batch(traces)
    cpu.load_state_dict(gpu.state_dict())
    assert_same_state(cpu.state_dict(), gpu.state_dict())
    gpu.load_state_dict(cpu.state_dict())
    assert {p.device.type for net in nets for p in net.parameters()} == {"cuda"}
    gpu.learn(traces.trace(0))  # the loaded optimizer state works with the GPU parameters
    probs = gpu.action_probs(observation_row(obs, 0))
    assert probs.dtype == np.float64 and probs.sum() == pytest.approx(1.0)


# ----------------------------------------------------------------- end to end
SMALL_NETWORK = {"hidden_width": 16, "filters": 8, "batch_size": 32, "optimizer": "adam", "lr": 1e-3}
END_TO_END = {
    "reinforce-table": functools.partial(Reinforce, representation="table", lr=0.1),
    "reinforce-mlp": functools.partial(Reinforce, representation="mlp", lr=1e-2),
    "qlearning-table": functools.partial(QLearning, lr=0.1, epsilon=0.2),
    "qlearning-mlp": functools.partial(QLearning, representation="mlp", lr=1e-2, epsilon=SCHEDULE),
}


@pytest.fixture(scope="module")
def small_digits(digits):
    return subsample(digits, max_train=320, max_test=64, seed=0)


def learned_arrays(learner: RouterAgent) -> list[np.ndarray]:
    state = learner.state_dict()
    out = []
    for key, value in state.items():
        if key in ("rng", "optimizer", "traces_learned") or value is None:
            continue
        values = value.values() if isinstance(value, dict) else [value]
        out += [np.array(v.numpy() if isinstance(v, torch.Tensor) else v, copy=True) for v in values]
    return out


@pytest.mark.parametrize("config", ["per_task", "single", "dispatched", "per_task-recurrent"])
@pytest.mark.parametrize("name", list(END_TO_END))
def test_train_batched_runs_every_agent_type_on_digits(small_digits, monkeypatch, name, config):
    config, _, routing = config.partition("-")
    benv = routing_env.batched_env(
        dataset=small_digits, router=config, routing=routing or "layered", **SMALL_NETWORK
    )
    router = MultiAgentRouter.from_env(
        benv,
        router_factory=END_TO_END[name],
        dispatcher_factory=functools.partial(Dispatcher, lr=1e-2),
        seed=0,
    )
    reads = []
    original = benv.engine.batch_representation
    monkeypatch.setattr(benv.engine, "batch_representation", lambda *a: reads.append(1) or original(*a))
    before = {agent_id: learned_arrays(learner) for agent_id, learner in router.items()}
    stats = train_batched(benv, router, num_samples=96, seed=0)
    assert stats.num_samples == 96 and stats.episodes == 3
    assert stats.traces_learned == (2 if config == "dispatched" else 1) * 96
    assert stats.num_judged == 96 and 0 <= stats.num_correct <= 96
    assert sum(n for _, n in stats.correct_per_task.values()) == 96
    assert np.isfinite(stats.final_reward_sum) and abs(stats.final_reward_sum) <= 96
    changed = {
        agent_id
        for agent_id, learner in router.items()
        if any(
            not np.array_equal(a, b) for a, b in zip(before[agent_id], learned_arrays(learner), strict=True)
        )
    }
    assert changed == set(router)  # every agent routed samples and learned from them
    if "table" in name and config != "dispatched":  # the dispatcher is an MLP
        assert reads == []
    evaluation = evaluate_batched(benv, router)
    assert evaluation.num_samples == 64 and 0.0 <= evaluation.accuracy <= 1.0


def test_one_table_q_learning_minibatch_by_hand():
    """One trace of table Q-learning updates by hand, through learn_batch."""
    agent = make_agent("qlearning-table")
    assert isinstance(agent, QLearning)
    obs = [
        {
            "task": np.zeros(1, dtype=np.int64),
            "depth": np.full(1, d),
            "action_mask": np.ones((1, NUM_ACTIONS), dtype=np.int8),
            "observation": np.zeros((1, WIDTH), dtype=np.float32),
        }
        for d in range(NUM_DEPTHS)
    ]
    agent.q_nA[1] = [0.5, 2.0, -1.0, 0.0, 0.0]
    traces = TraceBatch(
        observations=obs,
        actions=np.array([[0, 2, 1]]),
        rewards=np.array([[0.1, 0.2, 0.3]]),
        final_rewards=np.array([1.0]),
    )
    agent.learn_batch(traces)
    # Q(0, 0) <- 0 + 0.1 * (0.1 + 0.9 * max Q(1, .) - 0) with Q(1, .) before its own update
    assert agent.q_nA[0, 0] == pytest.approx(0.1 * (0.1 + 0.9 * 2.0))
    # Q(1, 2) <- -1 + 0.1 * (0.2 + 0.9 * max Q(2, .) - (-1)); the last decision adds r_final
    assert agent.q_nA[1, 2] == pytest.approx(-1.0 + 0.1 * (0.2 + 0.9 * 0.0 + 1.0))
    assert agent.q_nA[2, 1] == pytest.approx(0.1 * (0.3 + 1.0))


@pytest.mark.parametrize("config", ["per_task", "dispatched"])
@pytest.mark.parametrize("name", list(END_TO_END))
def test_a_batched_run_is_the_run_of_the_default_row_by_row_methods(small_digits, name, config):
    """The overrides change the speed, not the run: the same stats, agents and blocks as
    with the default act_batch/learn_batch (row by row, trace by trace)."""
    runs = []
    for default in (False, True):
        benv = routing_env.batched_env(dataset=small_digits, router=config, **SMALL_NETWORK)
        router = MultiAgentRouter.from_env(
            benv,
            router_factory=END_TO_END[name],
            dispatcher_factory=functools.partial(Dispatcher, lr=1e-2),
            seed=0,
        )
        if default:
            for learner in router.values():
                learner.act_batch = functools.partial(RouterAgent.act_batch, learner)
                learner.learn_batch = functools.partial(RouterAgent.learn_batch, learner)
        stats = train_batched(benv, router, num_samples=64, seed=0)
        evaluation = evaluate_batched(benv, router, greedy=False)
        runs.append((stats, evaluation, router.state_dict(), benv.network.state_dict()))
    (stats, evaluation, agents, blocks), (want_stats, want_evaluation, want_agents, want_blocks) = runs
    assert stats == want_stats and evaluation == want_evaluation
    assert_same_state(agents, want_agents)
    assert_same_state(dict(blocks), dict(want_blocks))
