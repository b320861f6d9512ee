"""The figure scripts of examples/figures/ on digits-MTL with tiny budgets."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from routing_env.recording import load_recording
from routing_env.training import build_parser, field_docs

FIGURES = Path(__file__).resolve().parents[2] / "examples" / "figures"
SCRIPTS = [
    "record_policy_dynamics",
    "fig09_policy_heatmaps",
    "fig10_block_probability",
    "fig11_routing_map",
    "fig12_rho_sweep",
    "fig13_training_time",
    "game_dynamics",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load(name: str) -> ModuleType:
    """Import ``examples/figures/<name>.py`` (registered in ``sys.modules`` for dataclasses)."""
    module_name = f"routing_env_figure_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, FIGURES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def assert_png(path: Path) -> None:
    assert path.exists() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5_000


@pytest.fixture(scope="module")
def recording_csv(tmp_path_factory) -> Path:
    record = load("record_policy_dynamics")
    out = tmp_path_factory.mktemp("recording") / "recording.csv"
    args = record.Args(output=str(out), epochs=2, every=2, max_train_samples=300, max_test_samples=50)
    assert record.main(args) == out
    return out


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_option_is_documented(name):
    module = load(name)
    docs = field_docs(module.Args)
    parser = build_parser(module.Args)
    assert module.__doc__ and "python examples/figures/" in module.__doc__  # the command to run
    for action in parser._actions[1:]:  # skip --help
        assert docs.get(action.dest), f"{name}: --{action.dest} has no help"


def test_record(recording_csv):
    rec = load_recording(recording_csv)
    assert set(rec.agent_names) == {f"router_{t}" for t in range(10)}
    assert np.all(rec["agent_sample"] % 2 == 0)
    assert rec["sample"].max() < 600 and rec["sample"].max() > 500  # 2 epochs of 300 samples
    assert np.allclose(rec.probs_RA.sum(axis=1), 1.0, atol=1e-4)


def test_fig09(recording_csv, tmp_path):
    fig09 = load("fig09_policy_heatmaps")
    out = fig09.main(fig09.Args(recording=str(recording_csv), output=str(tmp_path / "f9.png"), until=20))
    assert_png(out)
    with pytest.raises(ValueError, match="depth 7"):
        fig09.plot(load_recording(recording_csv), depth=7)


def test_fig10(recording_csv, tmp_path):
    fig10 = load("fig10_block_probability")
    rec = load_recording(recording_csv)
    block = fig10.contested_block(rec, depth=0)
    blocks, _ = rec.routing_map()
    assert np.sum(blocks[:, 0] == block) == np.bincount(blocks[:, 0]).max()
    assert_png(fig10.main(fig10.Args(recording=str(recording_csv), output=str(tmp_path / "f10.png"))))
    out = fig10.main(
        fig10.Args(recording=str(recording_csv), output=str(tmp_path / "b.png"), block=3, x="agent_sample")
    )
    assert_png(out)
    with pytest.raises(ValueError, match="block"):
        fig10.plot(rec, block=99, depth=0)


def test_fig11(recording_csv, tmp_path):
    fig11 = load("fig11_routing_map")
    assert_png(fig11.main(fig11.Args(recording=str(recording_csv), output=str(tmp_path / "f11.png"))))
    assert_png(
        fig11.main(fig11.Args(recording=str(recording_csv), output=str(tmp_path / "a.png"), at=100, window=3))
    )


def test_fig12(tmp_path):
    fig12 = load("fig12_rho_sweep")
    args = fig12.Args(
        output=str(tmp_path / "f12.png"), rhos="0,1", epochs=1, max_train_samples=200, max_test_samples=50
    )
    assert_png(fig12.main(args))
    rows = read_csv(tmp_path / "f12.csv")
    assert [float(r["rho"]) for r in rows] == [0.0, 1.0]
    assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 for r in rows)
    assert all(1 <= int(r["blocks_used_depth_0"]) <= 10 for r in rows)
    with pytest.raises(ValueError, match="rhos"):
        fig12.Args(rhos="0,2")


def test_fig13(tmp_path, digits):
    fig13 = load("fig13_training_time")
    args = fig13.Args(output=str(tmp_path / "f13.png"), tasks="2,3", samples_per_task=20, repeats=1)
    assert_png(fig13.main(args))
    rows = read_csv(tmp_path / "f13.csv")
    assert len(rows) == 6 and {r["model"] for r in rows} == set(fig13.MODELS)
    assert all(float(r["seconds_per_epoch"]) > 0 for r in rows)
    assert {int(r["train_samples"]) for r in rows} == {40, 60}
    sub = fig13.first_tasks(digits, 3, train_per_task=5)
    assert sub.num_tasks == 3 and len(sub.train) == 15 and set(sub.train.tasks_N.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="11"):
        fig13.first_tasks(digits, 11, train_per_task=5)


def test_game_dynamics(tmp_path):
    game = load("game_dynamics")
    args = game.Args(
        output=str(tmp_path / "g.png"),
        epochs=1,
        analyze_every=100,
        max_samples_per_task=5,
        max_train_samples=200,
    )
    assert_png(game.main(args))
    summary = read_csv(tmp_path / "g.csv")
    agents = read_csv(tmp_path / "g_agents.csv")
    assert [int(r["sample"]) for r in summary] == [0, 100, 200]
    assert len(agents) == 3 * 10
    assert all(int(r["num_samples"]) == 50 for r in summary)
    assert all(float(r["nash_conv"]) > -1e-9 for r in summary)  # tabular agents: no negative gain
