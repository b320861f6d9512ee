"""PolicyRecorder: PettingZoo API, no effect on training, content, memory bound, export."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from pettingzoo.test import api_test

import routing_env
from agents import MultiAgentRouter, evaluate, train
from routing_env.recording import COLUMNS, PolicyRecorder, PolicyRecording, RowsDroppedWarning, load_recording

CONFIGS = {
    "per_task": dict(router="per_task"),
    "single": dict(router="single"),
    "dispatched": dict(router="dispatched"),
    "per_task-recurrent": dict(router="per_task", routing="recurrent"),
}


def make(digits, **config):
    env = routing_env.env(dataset=digits, batch_size=16, hidden_width=32, **config)
    router = MultiAgentRouter.from_env(env, seed=0)
    return env, router


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_api(config, digits):
    env, router = make(digits, **config)
    api_test(PolicyRecorder(env, policies=router, every=2, max_rows=50), num_cycles=50)


def test_api_without_policies(digits):
    env, _ = make(digits)
    api_test(PolicyRecorder(env), num_cycles=50)


@pytest.mark.parametrize("config", ["per_task", "dispatched"])
def test_recording_does_not_change_training(config, digits):
    states = []
    for wrap in (False, True):
        env, router = make(digits, **CONFIGS[config])
        driven = PolicyRecorder(env, policies=router, every=1, max_rows=None) if wrap else env
        stats = train(driven, router, num_samples=120, seed=3)
        states.append((stats.accuracy, router.state_dict(), env.unwrapped.network.state_dict()))
    (acc_a, agents_a, net_a), (acc_b, agents_b, net_b) = states
    assert acc_a == acc_b
    for key in net_a:
        assert torch.equal(net_a[key], net_b[key]), key
    for agent in agents_a:
        for key, value in agents_a[agent].items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, agents_b[agent][key]), (agent, key)


def test_rows_hold_the_decisions(digits):
    env, router = make(digits)
    recorder = PolicyRecorder(env, policies=router, every=1, max_rows=None)
    train(recorder, router, num_samples=200, seed=0)
    rec = recorder.recording
    n = env.unwrapped.num_decisions
    assert len(rec) == 200 * n == recorder.num_rows
    assert recorder.samples_seen == 200
    assert set(rec.agent_names) == {f"router_{t}" for t in range(10)}
    # each sample: depths 0..n-1 in order, one agent, its own task
    assert np.array_equal(rec["depth"], np.tile(np.arange(n), 200))
    assert np.array_equal(rec["sample"], np.repeat(np.arange(200), n))
    agents = rec["agent"]
    assert all(a == f"router_{t}" for a, t in zip(agents, rec["task"], strict=True))
    # probabilities are distributions that put mass on the chosen block
    assert np.allclose(rec.probs_RA.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(rec.probs_RA[np.arange(len(rec)), rec["action"]] > 0)
    # the first decision of each agent saw the initial (uniform) WPL policy
    for agent in rec.agent_names:
        first = rec.rows(agent=agent)[0]
        assert np.allclose(rec.probs_RA[first], 0.1)
    # each agent's own sample counter runs 0, 1, 2, ...
    for agent in rec.agent_names:
        _, probs = rec.policy(agent, depth=0)
        x, _ = rec.policy(agent, depth=0)
        assert np.array_equal(x, np.arange(len(x)))
    # rewards: the final reward on the last depth, 0 before it (rho = 0)
    last = rec["depth"] == n - 1
    assert set(np.unique(rec["final_reward"][last])) <= {-1.0, 1.0}
    assert np.all(rec["final_reward"][~last] == 0.0)
    assert np.array_equal(rec["reward"], rec["final_reward"] + rec["collaboration_reward"])
    assert np.array_equal(rec["correct"][last] == 1, rec["final_reward"][last] == 1.0)
    assert np.all(rec["correct"][~last] == -1)
    # exact block usage equals the usage of the (complete) recording
    assert np.array_equal(recorder.usage_TnA, rec.block_usage(num_tasks=10, num_depths=n))


def test_collaboration_reward_is_recorded(digits):
    env, router = make(digits, collaboration_reward=0.5)
    recorder = PolicyRecorder(env, policies=router)
    train(recorder, router, num_samples=50, seed=0)
    rec = recorder.recording
    assert rec["collaboration_reward"].max() > 0
    assert np.allclose(rec["reward"], rec["collaboration_reward"] + rec["final_reward"])


def test_every_samples_each_agents_samples(digits):
    env, router = make(digits)
    recorder = PolicyRecorder(env, policies=router, every=4, max_rows=None)
    train(recorder, router, num_samples=400, seed=0)
    rec = recorder.recording
    assert len(rec) > 0 and np.all(rec["agent_sample"] % 4 == 0)
    n = env.unwrapped.num_decisions
    total = sum(-(-c // 4) for c in recorder._agent_samples.values())  # ceil(samples / 4) per agent
    assert len(rec) == total * n
    assert recorder.usage_TnA.sum() == 400 * n  # usage counts every decision


def test_max_rows_thins_evenly(digits):
    env, router = make(digits)
    recorder = PolicyRecorder(env, policies=router, every=1, max_rows=60)
    sizes = []
    for _ in range(8):
        train(recorder, router, num_samples=50)
        sizes.append(recorder.num_rows)
    assert max(sizes) <= 60
    assert recorder.every > 1 and recorder.every & (recorder.every - 1) == 0  # doubled, a power of 2
    rec = recorder.recording
    assert np.all(rec["agent_sample"] % recorder.every == 0)
    # the thinned recording still spans the run: early and late samples of every agent
    assert rec["sample"].min() == 0
    assert rec["sample"].max() > 0.7 * recorder.samples_seen
    # every recorded sample keeps all of its decisions
    _, counts = np.unique(np.stack([rec.columns["agent"], rec["agent_sample"]]), axis=1, return_counts=True)
    assert np.all(counts[:-1] == env.unwrapped.num_decisions)


def test_max_rows_stop_keeps_the_first_rows(digits):
    env, router = make(digits)
    recorder = PolicyRecorder(env, policies=router, every=1, max_rows=30, overflow="stop")
    with pytest.warns(RowsDroppedWarning):
        train(recorder, router, num_samples=100, seed=0)
    rec = recorder.recording
    assert len(rec) == 30 and recorder.every == 1
    assert np.array_equal(rec["sample"], np.repeat(np.arange(10), 3))


def test_rows_dropped_by_a_small_buffer_warn_once(digits):
    # 10 agents x 3 decisions: 20 rows cannot hold each agent's first sample, and thinning cannot
    # free a row while every row held is a first sample
    env, router = make(digits)
    recorder = PolicyRecorder(env, policies=router, max_rows=20)
    with pytest.warns(RowsDroppedWarning) as caught:
        train(recorder, router, num_samples=100, seed=0)
    assert len(caught) == 1  # once, not once per dropped row
    message = str(caught[0].message)
    assert "max_rows=20" in message and "10 recorded agents" in message and "max_rows=None" in message
    assert recorder.num_rows == 20 and recorder.dropped_rows > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(recorder, router, num_samples=10)  # no second warning


def test_overflow_stop_counts_the_rows_it_drops(digits):
    env, router = make(digits)
    recorder = PolicyRecorder(env, policies=router, max_rows=30, overflow="stop")
    with pytest.warns(RowsDroppedWarning, match="overflow='stop' keeps the first rows"):
        train(recorder, router, num_samples=100, seed=0)
    assert recorder.num_rows == 30 and recorder.dropped_rows == 100 * 3 - 30
    recorder.clear()
    with pytest.warns(RowsDroppedWarning):  # a cleared recorder warns again when it fills again
        train(recorder, router, num_samples=20)
    assert recorder.dropped_rows == 20 * 3 - 30


@pytest.mark.parametrize(
    "name", ["rec.csv", "rec.csv.gz", pytest.param("rec.parquet", marks=pytest.mark.extras)]
)
def test_the_export_says_rows_were_dropped(digits, tmp_path, name):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow", reason="needs the 'parquet' extra: pip install 'routing-env[parquet]'")
    env, router = make(digits)
    recorder = PolicyRecorder(env, policies=router, max_rows=30, overflow="stop")
    with pytest.warns(RowsDroppedWarning):
        train(recorder, router, num_samples=50, seed=0)
    rec = recorder.recording
    assert rec.dropped_rows == 120 and rec.max_rows == 30
    path = recorder.export(tmp_path / name)
    if name == "rec.csv":
        first, header = path.read_text().splitlines()[:2]
        assert first.startswith("# incomplete recording: dropped_rows=120 rows were not recorded")
        assert "max_rows=30" in first and "," not in first  # one cell for CSV readers
        assert header.split(",")[: len(COLUMNS)] == list(COLUMNS)
    back = load_recording(path)
    assert (back.dropped_rows, back.max_rows, len(back)) == (120, 30, 30), name
    assert np.array_equal(back["action"], rec["action"]), name
    if name != "rec.csv":
        return
    # a complete recording has no note
    full = PolicyRecorder(env, policies=router, max_rows=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(full, router, num_samples=20)
    path = full.export(tmp_path / "full.csv")
    assert path.read_text().startswith("sample,") and load_recording(path).dropped_rows == 0


def test_evaluation_is_not_recorded(digits):
    env, router = make(digits)
    recorder = PolicyRecorder(env, policies=router)
    train(recorder, router, num_samples=30, seed=0)
    before = recorder.num_rows, recorder.usage_TnA.copy(), recorder.samples_seen
    evaluate(recorder, router, num_samples=40)
    assert (recorder.num_rows, recorder.samples_seen) == (before[0], before[2])
    assert np.array_equal(recorder.usage_TnA, before[1])
    train(recorder, router, num_samples=10)
    assert recorder.num_rows > before[0]


def test_dispatcher_rows_get_the_final_reward(digits):
    env, router = make(digits, router="dispatched")
    recorder = PolicyRecorder(env, policies=router, max_rows=None)
    train(recorder, router, num_samples=60, seed=0)
    rec = recorder.recording
    d = rec.rows(agent="dispatcher_0")
    assert len(d) == 60
    assert set(np.unique(rec["reward"][d])) <= {-1.0, 1.0}
    assert np.all(np.isnan(rec["final_reward"][d]))
    # the dispatcher's reward is the final reward of the sample it dispatched
    routers = np.flatnonzero((rec.columns["agent"] != rec.agent_index("dispatcher_0")) & (rec["depth"] == 2))
    assert np.array_equal(rec["reward"][d], rec["final_reward"][routers])
    assert np.array_equal(rec["sample"][d], rec["sample"][routers])
    # block usage counts the routers' decisions only
    assert recorder.usage_TnA.sum() == 60 * 3


def test_export_round_trip(digits, tmp_path):
    env, router = make(digits, router="dispatched")
    recorder = PolicyRecorder(env, policies=router, every=2)
    train(recorder, router, num_samples=80, seed=0)
    path = recorder.export(tmp_path / "sub" / "rec.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header == [*COLUMNS, *(f"prob_{a}" for a in range(10))]
    back = load_recording(path)
    rec = recorder.recording
    assert len(back) == len(rec) > 0
    # agents that never decided have no row, so the loaded names are those seen
    assert set(back.agent_names) <= set(rec.agent_names) and "dispatcher_0" in back.agent_names
    assert list(back["agent"]) == list(rec["agent"])
    for c in COLUMNS:
        if c != "agent":
            assert np.allclose(back[c], rec[c], equal_nan=True, atol=1e-6), c
    assert np.allclose(back.probs_RA, rec.probs_RA, atol=1e-6, equal_nan=True)
    # gzip-compressed CSV: same content, byte-identical on every export
    gz = recorder.export(tmp_path / "rec.csv.gz")
    assert gz.read_bytes() == recorder.export(tmp_path / "again.csv.gz").read_bytes()
    assert gz.stat().st_size < path.stat().st_size / 2
    assert np.array_equal(load_recording(gz).probs_RA, back.probs_RA, equal_nan=True)
    records = list(rec.records())
    assert len(records) == len(rec) and records[0]["agent"] == rec["agent"][0]


def test_parquet_needs_pyarrow(digits, tmp_path):
    env, router = make(digits)
    recorder = PolicyRecorder(env, policies=router)
    train(recorder, router, num_samples=10, seed=0)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pyarrow"):
            recorder.export(tmp_path / "rec.parquet")
    else:  # pragma: no cover - pyarrow is not a dependency
        back = load_recording(recorder.export(tmp_path / "rec.parquet"))
        assert len(back) == recorder.num_rows


def synthetic_recording() -> PolicyRecording:
    # two agents (tasks 0, 1), two depths, three actions; agent 1 switches from block 2 to block 0
    # rows: router_0 sample 0 (depths 0, 1), router_1 sample 1, router_0 sample 2, router_1 sample 3
    probs = np.array(
        [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]
        + [[0.1, 0.1, 0.8], [0.1, 0.1, 0.8]]
        + [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]]
        + [[0.7, 0.1, 0.2], [0.2, 0.1, 0.7]],
        dtype=np.float32,
    )
    cols = {
        "sample": np.repeat([0, 1, 2, 3], 2),
        "agent": np.repeat([0, 1, 0, 1], 2),
        "agent_sample": np.repeat([0, 0, 1, 1], 2),
        "task": np.repeat([0, 1, 0, 1], 2),
        "depth": np.tile([0, 1], 4),
        "action": np.array([0, 1, 2, 2, 0, 1, 0, 2]),
        "reward": np.zeros(8),
        "collaboration_reward": np.zeros(8),
        "final_reward": np.zeros(8),
        "correct": np.full(8, -1),
    }
    return PolicyRecording(agent_names=("router_0", "router_1"), columns=cols, probs_RA=probs)


def test_routing_map_and_usage():
    rec = synthetic_recording()
    blocks, share = rec.routing_map()
    assert blocks.tolist() == [[0, 1], [0, 2]]
    assert share[1, 0] == pytest.approx(0.7)
    blocks, _ = rec.routing_map(at=1)  # before router_1 switched
    assert blocks.tolist() == [[0, 1], [2, 2]]
    blocks, share = rec.routing_map(window=2)
    assert blocks[1, 0] == 2 and share[1, 0] == pytest.approx(0.5)  # mean of (.1 .1 .8) and (.7 .1 .2)
    usage = rec.block_usage()
    assert usage.shape == (2, 2, 3)
    assert usage[1, 0].tolist() == [1, 0, 1] and usage[0, 1].tolist() == [0, 2, 0]
    assert rec.block_usage(until=2).sum() == 4
    x, probs = rec.policy("router_1", depth=0, x="sample")
    assert x.tolist() == [1, 3] and probs.shape == (2, 3)


def test_bad_arguments(digits):
    env, router = make(digits)
    with pytest.raises(ValueError, match="every"):
        PolicyRecorder(env, policies=router, every=0)
    with pytest.raises(ValueError, match="max_rows"):
        PolicyRecorder(env, policies=router, max_rows=0)
    with pytest.raises(ValueError, match="overflow"):
        PolicyRecorder(env, policies=router, overflow="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown agent"):
        PolicyRecorder(env, policies={"router_99": router["router_0"]})
    with pytest.raises(TypeError, match="action_probs"):
        PolicyRecorder(env, policies={"router_0": object()})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="AECEnv"):
        PolicyRecorder(object(), policies=router)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="not recorded"):
        synthetic_recording().policy("router_7", depth=0)
    with pytest.raises(ValueError, match="window"):
        synthetic_recording().routing_map(window=0)


@pytest.mark.parametrize(
    ("name", "data"), [("cut.csv.gz", b"\x1f\x8b not gzip"), ("bad.csv", b"sample,agent\n1,2,3\n")]
)
def test_a_file_that_is_not_a_recording_is_named(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=str(path)):
        load_recording(path)
