"""The batched routing path: the same game as the AEC env, one depth of a minibatch per step.

Equivalence with the AEC env (same rewards, bit-identical weights with the same routes),
evaluation, bad input that changes nothing, checkpoints across paths, copies.
"""

from __future__ import annotations

import copy
import functools
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import routing_env
from agents import WPL, MultiAgentRouter, evaluate_batched, train_batched
from agents.base import TraceBatch, observation_row
from routing_env import BatchedRoutingEnv, RoutingEnv, RoutingNetwork, fc_block
from routing_env.datasets import subsample

from .helpers import run_episodes

CONFIGS = [
    ("per_task", "layered"),
    ("per_task", "recurrent"),
    ("single", "layered"),
    ("single", "recurrent"),
    ("dispatched", "layered"),
    ("dispatched", "recurrent"),
]


@pytest.fixture(scope="module")
def small(digits):
    return subsample(digits, max_train=320, max_test=100, seed=0)


def weights(env):
    return {k: v.detach().clone() for k, v in env.network.state_dict().items()}


def differing(a, b):
    return [k for k in a if not torch.equal(a[k], b[k])]


class FixedRoutes:
    """A pure routing policy per (task, depth, mask), the same in both paths: the first
    valid action of a per-task random preference order."""

    def __init__(self, num_tasks, num_decisions, num_actions, num_routers, seed=0):
        rng = np.random.default_rng(seed)
        self.order = rng.permuted(np.tile(np.arange(num_actions), (num_tasks, num_decisions, 1)), axis=2)
        self.num_routers = num_routers

    def dispatch(self, task):
        return (task * 7 + 3) % self.num_routers

    def route(self, task, depth, mask):
        order = self.order[task, depth]
        return int(order[np.flatnonzero(np.asarray(mask)[order])[0]])

    def aec(self, agent, obs):
        if agent.startswith("dispatcher"):
            return self.dispatch(int(obs["task"]))
        return self.route(int(obs["task"]), int(obs["depth"]), obs["action_mask"])

    def batch(self, obs, dispatching):
        if dispatching:
            return self.dispatch(np.asarray(obs["task"]))
        return np.array(
            [
                self.route(t, d, m)
                for t, d, m in zip(obs["task"], obs["depth"], obs["action_mask"], strict=True)
            ]
        )


def drive_batched(benv, policy, num_samples, *, seed=None, options=None):
    """Route ``num_samples`` samples; return {sample_index: [reward per router decision]}."""
    rewards: dict[int, list[float]] = {}
    routed, first = 0, True
    while routed < num_samples:
        obs = benv.reset(seed=seed if first else None, options=options if first else None)
        first = False
        done = False
        while not done:
            dispatching = (
                benv.dispatcher is not None
                and benv.batch.depth == 0
                and obs["action_mask"].shape[1] == len(benv.routers)
                and (obs["agent"] == benv.possible_agents.index(benv.dispatcher)).all()
            )
            actions = policy.batch(obs, dispatching)
            index = obs["sample_index"]
            obs, r, done, info = benv.step(actions)
            if not dispatching:
                for s, value in zip(index, r, strict=True):
                    rewards.setdefault(int(s), []).append(float(value))
        routed += len(r)
    return rewards


def aec_rewards(log):
    rewards: dict[int, list[float]] = {}
    for agent, reward, _, info, *_ in log:
        # an agent that did not act in the episode has sample_index -1 (its terminated turn)
        if not agent.startswith("dispatcher") and info["sample_index"] >= 0:
            rewards.setdefault(int(info["sample_index"]), []).append(float(reward))
    return rewards


@pytest.mark.parametrize("router, routing", CONFIGS, ids=[f"{r}-{g}" for r, g in CONFIGS])
def test_same_routes_give_the_same_rewards_and_bit_identical_weights(small, router, routing):
    kwargs = dict(
        dataset=small,
        router=router,
        routing=routing,
        batch_size=16,
        collaboration_reward=0.3,
        preset="paper",
        momentum=0.9,
    )
    aec = RoutingEnv(**kwargs)
    policy = FixedRoutes(small.num_tasks, aec.num_decisions, aec.num_actions, len(aec.routers))
    n = len(small.train) + 48  # an epoch and three minibatches: across the epoch boundary
    log = run_episodes(aec, n, policy.aec, seed=3)
    benv = routing_env.batched_env(**kwargs)
    batched = drive_batched(benv, policy, n, seed=3)
    assert batched == aec_rewards(log)
    assert any(r[0] > 0 for r in batched.values())  # the collaboration reward is exercised
    assert benv.engine.updates == aec.engine.updates == n // 16
    assert (benv.engine.selections_nA == aec.engine.selections_nA).all()
    assert differing(weights(aec), weights(benv)) == []


@pytest.mark.parametrize("router, routing", CONFIGS[:3], ids=[f"{r}-{g}" for r, g in CONFIGS[:3]])
def test_evaluation_matches_the_aec_env_over_the_whole_test_split(small, router, routing):
    kwargs = dict(dataset=small, router=router, routing=routing, batch_size=32)
    aec = RoutingEnv(**kwargs)
    policy = FixedRoutes(small.num_tasks, aec.num_decisions, aec.num_actions, len(aec.routers))
    run_episodes(aec, 64, policy.aec, seed=0)
    aec_log = run_episodes(aec, len(small.test), policy.aec, options={"mode": "eval"})
    benv = routing_env.batched_env(**kwargs)
    drive_batched(benv, policy, 64, seed=0)
    batched = drive_batched(benv, policy, len(small.test), options={"mode": "eval"})
    assert batched == aec_rewards(aec_log)
    # both paths route the test split in the engine's task-interleaved order
    order = aec.engine.eval_order.tolist()
    assert list(batched) == list(aec_rewards(aec_log)) == order != sorted(order)
    assert benv.evaluation() == aec.evaluation()
    assert benv.evaluation()["complete"] and benv.eval_pass_complete
    with pytest.raises(RuntimeError, match="evaluation pass is complete"):
        benv.reset()


def test_observations_are_the_aec_observations(small):
    kwargs = dict(dataset=small, batch_size=8, routing="recurrent")
    aec = RoutingEnv(**kwargs)
    policy = FixedRoutes(small.num_tasks, aec.num_decisions, aec.num_actions, 1)
    log = run_episodes(aec, 8, policy.aec, seed=1)
    aec_rows = [obs for *_, action, obs in log if action is not None]
    benv = routing_env.batched_env(**kwargs)
    obs = benv.reset(seed=1)
    rows = []
    while obs is not None:
        for i in range(obs.size):
            rows.append(observation_row(obs, i))
        obs, *_ = benv.step(policy.batch(obs, False))
    # the AEC env routes sample by sample, the batched one depth by depth
    by_sample = [rows[d * 8 + i] for i in range(8) for d in range(aec.num_decisions)]
    assert len(by_sample) == len(aec_rows)
    for got, want in zip(by_sample, aec_rows, strict=True):
        assert got["task"] == want["task"] and got["depth"] == want["depth"]
        np.testing.assert_array_equal(got["action_mask"], want["action_mask"])
        np.testing.assert_allclose(got["observation"], want["observation"], rtol=1e-5, atol=1e-6)


def test_tabular_agents_never_make_the_env_compute_representations(small, monkeypatch):
    benv = routing_env.batched_env(dataset=small, batch_size=32)
    router = MultiAgentRouter.from_env(benv, router_factory=WPL, seed=0)
    calls = []
    original = benv.engine.batch_representation
    monkeypatch.setattr(benv.engine, "batch_representation", lambda *a: calls.append(1) or original(*a))
    train_batched(benv, router, num_samples=96, seed=0)
    evaluate_batched(benv, router)
    assert calls == []


# ----------------------------------------------------------------- bad input changes nothing
def state_of(benv):
    e = benv.engine
    return (
        weights(benv),
        e.selections_nA.copy(),
        e.updates,
        e.batch_masks(benv.batch).copy(),
        benv.batch.depth,
        benv.batch.routes_Bn.copy(),
        torch.get_rng_state(),
        e.np_random.bit_generator.state,
    )


def assert_same(a, b):
    assert differing(a[0], b[0]) == []
    assert (a[1] == b[1]).all() and a[2] == b[2] and (a[3] == b[3]).all() and a[4] == b[4]
    assert (a[5] == b[5]).all() and torch.equal(a[6], b[6]) and a[7] == b[7]


@pytest.mark.parametrize(
    "make_actions, error, message",
    [
        (lambda m: np.zeros(len(m) - 1, dtype=np.int64), ValueError, r"one action per sample.*shape \(16,\)"),
        (lambda m: np.zeros(len(m), dtype=np.float32), TypeError, "must be integers"),
        (lambda m: np.zeros(len(m), dtype=bool), TypeError, "must be integers"),
        (
            lambda m: np.r_[np.zeros(5, dtype=np.int64), 99, np.zeros(len(m) - 6, dtype=np.int64)],
            ValueError,
            r"action 99 of sample 5 \(sample index \d+\) is out of range; expected ints in \[0, 10\)",
        ),
        (
            lambda m: np.r_[np.zeros(3, dtype=np.int64), -1, np.zeros(len(m) - 4, dtype=np.int64)],
            ValueError,
            "action -1 of sample 3",
        ),
        (lambda m: torch.zeros(len(m), dtype=torch.int64), None, None),
    ],
    ids=["short", "float", "bool", "out-of-range", "negative", "tensor-ok"],
)
def test_bad_actions_name_the_sample_and_change_nothing(small, make_actions, error, message):
    benv = routing_env.batched_env(dataset=small, batch_size=16, collaboration_reward=0.2)
    obs = benv.reset(seed=0)
    obs, *_ = benv.step(np.zeros(16, dtype=np.int64))
    before = state_of(benv)
    actions = make_actions(obs["action_mask"])
    if error is None:
        benv.step(actions)
        return
    with pytest.raises(error, match=message):
        benv.step(actions)
    assert_same(before, state_of(benv))
    benv.step(np.zeros(16, dtype=np.int64))  # and the game goes on


def test_a_masked_action_names_the_sample_and_what_was_allowed(small):
    benv = routing_env.batched_env(dataset=small, batch_size=16, routing="recurrent")
    obs = benv.reset(seed=0)
    obs, *_ = benv.step(np.full(16, benv.pass_action))
    obs, *_ = benv.step(np.full(16, benv.pass_action))
    # last depth: only the classifiers are allowed; block 0 of the first layer is not one
    before = state_of(benv)
    actions = np.array([int(np.flatnonzero(m)[0]) for m in obs["action_mask"]])
    actions[7] = int(np.flatnonzero(obs["action_mask"][7] == 0)[0])
    with pytest.raises(
        ValueError, match=r"of sample 7 \(sample index \d+, task \d+\) is masked at depth 2; allowed: \["
    ):
        benv.step(actions)
    assert_same(before, state_of(benv))


class NaNFor(nn.Module):
    """An fc block whose output is NaN for inputs with a large first feature."""

    def __init__(self, width):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, v):
        out = self.linear(v)
        return torch.where(v[:, :1] > 1e9, torch.full_like(out, float("nan")), out)


def test_a_non_finite_block_output_names_the_sample_and_changes_nothing(small):
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(64, 16))
    net = RoutingNetwork(
        trunk=trunk,
        layers=[[NaNFor(16), fc_block(16, 16)], [fc_block(16, 2, activation=False)]],
        input_shape=(1, 8, 8),
        output_size=2,
    )
    benv = BatchedRoutingEnv(dataset=small, network=net, batch_size=16)
    benv.reset(seed=0)
    with torch.no_grad():
        benv.batch.groups[0][1][4, 0] = 1e10  # sample 4's representation now trips the block
    before = state_of(benv)
    with pytest.raises(
        FloatingPointError, match=r"block 0 \(depth 0, action 0\) for sample 4 .*nothing was changed"
    ):
        benv.step(np.zeros(16, dtype=np.int64))
    assert_same(before, state_of(benv))


# ----------------------------------------------------------------- checkpoints, copies, sharing
def make_env(kind, **kwargs):
    """The AEC env (``"aec"``) or the batched one (``"batched"``) with ``kwargs``."""
    return RoutingEnv(**kwargs) if kind == "aec" else routing_env.batched_env(**kwargs)


def advance(env, kind, num_samples, seed=None):
    """Train ``env`` (of ``kind``) on ``num_samples`` samples along fixed routes."""
    policy = FixedRoutes(env.dataset.num_tasks, 3, 10, 10)
    if kind == "aec":
        run_episodes(env, num_samples, policy.aec, seed=seed)
    else:
        drive_batched(env, policy, num_samples, seed=seed)


def resume_across_paths(tmp_path, kwargs, writer, reader, num_samples):
    """Train a ``writer`` env on ``num_samples`` samples, checkpoint it and train as many
    again; a ``reader`` env loaded from the checkpoint trains as many too. Returns the
    writer's weights and the resumed env."""
    env = make_env(writer, **kwargs)
    advance(env, writer, num_samples, seed=2)
    path = tmp_path / "ckpt.pt"
    torch.save(env.state_dict(), path)
    advance(env, writer, num_samples)
    straight = weights(env)
    resumed = make_env(reader, **kwargs)
    resumed.load_state_dict(torch.load(path, weights_only=True))
    advance(resumed, reader, num_samples)
    return straight, resumed


@pytest.mark.parametrize("writer, reader", [("batched", "batched"), ("aec", "batched"), ("batched", "aec")])
def test_checkpoints_resume_across_paths(small, tmp_path, writer, reader):
    kwargs = dict(dataset=small, batch_size=16, collaboration_reward=0.1, preset="paper", momentum=0.9)
    straight, resumed = resume_across_paths(tmp_path, kwargs, writer, reader, 64)
    assert differing(straight, weights(resumed)) == []


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_mid_minibatch_goes_on_exactly_like_the_original(small, how):
    benv = routing_env.batched_env(dataset=small, batch_size=16, collaboration_reward=0.3)
    policy = FixedRoutes(small.num_tasks, 3, 10, 10)
    drive_batched(benv, policy, 32, seed=0)
    obs = benv.reset()
    benv.step(policy.batch(obs, False))  # one depth into a minibatch: its graph is pending
    clone = copy.deepcopy(benv) if how == "deepcopy" else pickle.loads(pickle.dumps(benv))
    for env in (benv, clone):
        obs = env._observe()
        while obs is not None:
            obs, *_ = env.step(policy.batch(obs, False))
    assert benv.engine.updates == clone.engine.updates == 3
    assert differing(weights(benv), weights(clone)) == []


def test_the_aec_env_and_the_batched_env_share_one_run(small):
    aec = routing_env.env(dataset=small, batch_size=16)
    benv = BatchedRoutingEnv(env=aec)
    policy = FixedRoutes(small.num_tasks, 3, 10, 10)
    drive_batched(benv, policy, 32, seed=0)
    assert aec.unwrapped.engine.updates == 2
    run_episodes(aec, 16, policy.aec)  # the AEC env goes on with the next minibatch
    assert aec.unwrapped.engine.updates == 3 and aec.unwrapped.engine.samples_routed == 48
    with pytest.raises(TypeError, match="either env= or the env's arguments"):
        BatchedRoutingEnv(env=aec, batch_size=3)


# ----------------------------------------------------------------- WPL on the batched path
def test_wpl_act_batch_is_act_row_by_row(small):
    benv = routing_env.batched_env(dataset=small, batch_size=64, routing="recurrent")
    router = MultiAgentRouter.from_env(benv, router_factory=functools.partial(WPL, lr=0.3), seed=0)
    train_batched(benv, router, num_samples=128, seed=0)  # rows have learned their masks
    obs = benv.reset()
    for greedy in (False, True):
        for agent_id, learner in router.items():
            rows = np.flatnonzero(obs["agent"] == benv.possible_agents.index(agent_id))
            twin = copy.deepcopy(learner)
            sub = obs.select(rows)
            batched = learner.act_batch(sub, greedy=greedy)
            one_by_one = [twin.act(observation_row(sub, i), greedy=greedy) for i in range(len(rows))]
            assert batched.tolist() == one_by_one
            assert learner.rng.bit_generator.state == twin.rng.bit_generator.state


def test_wpl_learn_batch_is_learn_trace_by_trace(small):
    env = RoutingEnv(dataset=small)
    agent = WPL(
        observation_space=env.observation_space("router_0"), action_space=env.action_space("router_0"), lr=0.3
    )
    twin = copy.deepcopy(agent)
    rng = np.random.default_rng(0)
    b, n, A = 40, 3, env.num_actions
    masks = [np.ones((b, A), dtype=np.int8) for _ in range(n)]
    masks[1][:20, 7:] = 0  # two masks at depth 1: rows learn new actions midway
    obs = [
        {
            "task": np.zeros(b, dtype=np.int64),
            "depth": np.full(b, d),
            "action_mask": masks[d],
            "observation": torch.zeros(b, 4),
        }
        for d in range(n)
    ]
    actions = np.stack([[int(rng.choice(np.flatnonzero(masks[d][i]))) for d in range(n)] for i in range(b)])
    traces = TraceBatch(
        observations=obs,
        actions=actions,
        rewards=rng.normal(0, 0.1, (b, n)),
        final_rewards=rng.choice([-1.0, 1.0], b),
    )
    agent.learn_batch(traces)
    for i in range(b):
        twin.learn(traces.trace(i))
    assert np.array_equal(agent.policy_nA, twin.policy_nA)
    assert np.array_equal(agent.average_return, twin.average_return)


@pytest.mark.slow
def test_batched_wpl_learns_digits_like_the_aec_path(digits):
    """Same seed, same settings: both paths end in the same accuracy band on digits-MTL."""
    kwargs = dict(dataset=digits, batch_size=64, optimizer="adam", lr=1e-3, lr_decay_every=10)
    wpl = functools.partial(WPL, lr=0.3)
    results = {}
    for kind in ("batched", "aec"):
        env = routing_env.batched_env(**kwargs) if kind == "batched" else routing_env.env(**kwargs)
        router = MultiAgentRouter.from_env(env, router_factory=wpl, seed=0)
        from agents import evaluate, train

        for epoch in range(8):
            if kind == "batched":
                train_batched(env, router, num_samples=len(digits.train), seed=0 if epoch == 0 else None)
            else:
                train(env, router, num_samples=len(digits.train), seed=0 if epoch == 0 else None)
        if kind == "batched":
            evaluate_batched(env, router)
            results[kind] = env.evaluation()["accuracy"]
        else:
            evaluate(env, router, num_samples=len(digits.test))
            results[kind] = env.unwrapped.evaluation()["accuracy"]
    assert results["batched"] > 0.97 and results["aec"] > 0.97
    assert abs(results["batched"] - results["aec"]) < 0.015


@pytest.mark.parametrize(
    "routing, rho, weighting",
    [("layered", 0.0, "abdallah-lesser"), ("recurrent", 0.3, "abdallah-lesser"), ("layered", 0.3, "paper")],
)
def test_wpl_agents_vectorized_together_match_each_acting_and_learning_alone(
    small, monkeypatch, routing, rho, weighting
):
    """WPL.act_group/learn_group handle all agents at once; they must give the numbers of
    each agent's act_batch/learn_batch on its own rows (bit for bit, generators included)."""

    def run(vectorized):
        if not vectorized:
            monkeypatch.setattr(WPL, "_vectorizable", classmethod(lambda cls, learners: False))
        benv = routing_env.batched_env(
            dataset=small, batch_size=32, routing=routing, collaboration_reward=rho
        )
        router = MultiAgentRouter.from_env(
            benv, router_factory=functools.partial(WPL, lr=0.3, weighting=weighting), seed=0
        )
        stats = train_batched(benv, router, num_samples=len(small.train), seed=0)
        evaluate_batched(benv, router, greedy=False)
        monkeypatch.undo()
        return router, weights(benv), stats, benv.evaluation()

    a, wa, sa, ea = run(True)
    b, wb, sb, eb = run(False)
    assert differing(wa, wb) == []
    assert sa.accuracy == sb.accuracy and ea == eb
    for agent_id in a:
        assert np.array_equal(a[agent_id].policy_nA, b[agent_id].policy_nA), agent_id
        assert np.array_equal(a[agent_id].average_return, b[agent_id].average_return), agent_id
        assert a[agent_id].rng.bit_generator.state == b[agent_id].rng.bit_generator.state
    assert len({a[k].policy_nA.tobytes() for k in a}) == len(a)  # the agents did learn apart
