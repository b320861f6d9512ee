"""The figure scripts of examples/figures/ on digits-MTL with tiny budgets, their dataset
options (MNIST-MTL on small idx files in MNIST's format) and the commands in the docs.

The scripts that train (but the recorder, an AEC wrapper) do so on the batched path by
default and through the AEC env with ``--aec``; both are run here."""

from __future__ import annotations

import csv
import dataclasses
import re
import shlex
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from routing_env.experiments import load_run_dataset, parse_args
from routing_env.recording import PolicyRecording, load_recording

from .example_scripts import load_script
from .script_flags import undocumented_fields

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "examples" / "figures"
DOCS = ROOT / "docs" / "policy_dynamics.md"
SCRIPTS = [
    "record_policy_dynamics",
    "fig09_policy_heatmaps",
    "fig10_block_probability",
    "fig11_routing_map",
    "fig12_rho_sweep",
    "fig13_training_time",
    "game_dynamics",
]
TRAINING_SCRIPTS = ["record_policy_dynamics", "fig12_rho_sweep", "game_dynamics"]
DATA_OPTIONS = ["dataset", "data_root", "download", "data_seed", "max_train_samples", "max_test_samples"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load(name: str) -> ModuleType:
    """Import ``examples/figures/<name>.py`` (as ``routing_env_figure_<name>``)."""
    return load_script(FIGURES / f"{name}.py", f"routing_env_figure_{name}")


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


@pytest.mark.parametrize("name", [*SCRIPTS, "make_all"])
def test_every_option_is_documented(name):
    module = load(name)
    assert module.__doc__ and "python examples/figures/" in module.__doc__  # the command to run
    assert undocumented_fields(module.Args) == []


def test_record(recording_csv):
    # the recorder wraps the AEC env: this script has no batched path to choose
    assert "aec" not in {f.name for f in dataclasses.fields(load("record_policy_dynamics").Args)}
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


def drawn_routes(fig11: ModuleType, recording, *, at: int | None, window: int) -> list[list[int]]:
    """The block of each task's line at each depth, read back from the drawn figure."""
    ax = fig11.plot(recording, at=at, window=window).axes[0]
    T = len(recording.routing_map(at=at, window=window)[0])
    width = max(T, recording.num_actions)
    block_x = np.linspace(0, width - 1, recording.num_actions)
    lines = ax.get_lines()
    assert len(lines) == T  # one path per task
    return [[int(np.abs(block_x - x).argmin()) for x in line.get_xdata()[1:]] for line in lines]


def test_fig11(recording_csv, tmp_path, capsys):
    fig11 = load("fig11_routing_map")
    recording = load_recording(recording_csv)
    maps = {}
    for at, window in ((None, 1), (100, 3)):
        blocks, _ = recording.routing_map(at=at, window=window)
        maps[at] = blocks
        expected = [[b for b in row if b >= 0] for row in blocks.tolist()]
        # each task's line passes through the blocks of its routing map, depth by depth
        assert drawn_routes(fig11, recording, at=at, window=window) == expected
        ax = fig11.plot(recording, at=at, window=window).axes[0]
        counts = [t.get_text().strip() for t in ax.texts if "depth" in t.get_text()]
        assert counts == [
            f"depth {d}: {len({b for b in blocks[:, d].tolist() if b >= 0})} blocks"
            for d in range(blocks.shape[1])
        ]
        assert ("end of the recording" if at is None else f"sample {at}") in ax.get_title()
        capsys.readouterr()
        assert_png(
            fig11.main(
                fig11.Args(recording=str(recording_csv), output=str(tmp_path / "f.png"), at=at, window=window)
            )
        )
        err = capsys.readouterr().err
        for t, route in enumerate(blocks.tolist()):
            assert f"task {t}: blocks {route}  probabilities" in err
    # a hand-made recording whose map is known: task 0 always picks block 2, task 1 block 0
    decisions = [(s, t, d, a) for s in range(4) for t, a in ((0, 2), (1, 0)) for d in range(2)]
    sample, task, depth, action = (np.array(c, dtype=np.int64) for c in zip(*decisions, strict=True))
    zeros = np.zeros(len(decisions))
    known = PolicyRecording(
        agent_names=("router_0", "router_1"),
        columns={
            "sample": sample, "agent": task, "agent_sample": sample, "task": task, "depth": depth,
            "action": action, "reward": zeros, "collaboration_reward": zeros, "final_reward": zeros,
            "correct": np.full(len(decisions), -1),
        },
        probs_RA=np.eye(3, dtype=np.float32)[action],
    )  # fmt: skip
    assert drawn_routes(fig11, known, at=None, window=2) == [[2, 2], [0, 0]]


@pytest.mark.parametrize("aec", [False, True], ids=["batched", "aec"])
def test_fig12(tmp_path, capsys, aec):
    fig12 = load("fig12_rho_sweep")
    args = fig12.Args(
        output=str(tmp_path / "f12.png"),
        rhos="0,1",
        epochs=1,
        max_train_samples=200,
        max_test_samples=50,
        aec=aec,
    )
    assert_png(fig12.main(args))
    assert f"{'AEC' if aec else 'batched'} path" in capsys.readouterr().err
    rows = read_csv(tmp_path / "f12.csv")
    assert [float(r["rho"]) for r in rows] == [0.0, 1.0]
    # each row is what one run of that rho computes (rerun here: the runs are seeded)
    dataset = load_run_dataset(args)
    for row in rows:
        (expected,) = fig12.run(args, dataset, float(row["rho"]), int(row["seed"]))
        assert {k: float(v) for k, v in row.items()} == pytest.approx(
            {k: float(v) for k, v in expected.items()}, abs=0, rel=1e-12
        )
    # the accuracy is a count over the 50 test samples, and the drawn curves are the rows
    assert all(
        float(r["test_accuracy"]) * 50 == pytest.approx(round(float(r["test_accuracy"]) * 50)) for r in rows
    )
    accuracy_ax = fig12.plot([{k: float(v) for k, v in r.items()} for r in rows]).axes[0]
    drawn = [float(line.get_ydata()[0]) for line in accuracy_ax.get_lines()]
    assert drawn == pytest.approx([100 * float(r["test_accuracy"]) for r in rows])
    with pytest.raises(ValueError, match="rhos"):
        fig12.Args(rhos="0,2")


def test_fig12_counts_the_distinct_blocks_of_the_greedy_routes():
    class Tabular:
        def __init__(self, policy_nA):
            self.policy = np.asarray(policy_nA)

    # three agents, two depths: greedy routes (0, 1), (0, 2), (1, 2)
    router = {
        "router_0": Tabular([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]]),
        "router_1": Tabular([[0.6, 0.4, 0.0], [0.1, 0.1, 0.8]]),
        "router_2": Tabular([[0.3, 0.7, 0.0], [0.0, 0.4, 0.6]]),
    }
    assert load("fig12_rho_sweep").greedy_blocks_used(router) == [2, 2]


def test_fig13(tmp_path, digits):
    fig13 = load("fig13_training_time")
    args = fig13.Args(output=str(tmp_path / "f13.png"), tasks="2,3", samples_per_task=20, repeats=1)
    assert_png(fig13.main(args))
    rows = read_csv(tmp_path / "f13.csv")
    assert len(rows) == 8 and {r["model"] for r in rows} == set(fig13.MODELS)
    # both routing paths are timed, beside the network alone and cross-stitch
    assert {"routing (RL loop, batched)", "routing (RL loop, AEC)"} <= set(fig13.MODELS)
    assert all(float(r["seconds_per_epoch"]) > 0 for r in rows)
    assert {int(r["train_samples"]) for r in rows} == {40, 60}
    sub = fig13.first_tasks(digits, 3, train_per_task=5)
    assert sub.num_tasks == 3 and len(sub.train) == 15 and set(sub.train.tasks_N.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="11"):
        fig13.first_tasks(digits, 11, train_per_task=5)


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
@pytest.mark.parametrize("aec", [False, True], ids=["batched", "aec"])
def test_game_dynamics(tmp_path, aec):
    game = load("game_dynamics")
    args = game.Args(
        output=str(tmp_path / "g.png"),
        epochs=1,
        analyze_every=100,
        max_samples_per_task=5,
        max_train_samples=200,
        aec=aec,
    )
    assert_png(game.main(args))
    summary = read_csv(tmp_path / "g.csv")
    agents = read_csv(tmp_path / "g_agents.csv")
    # the batched path analyzes at the first minibatch boundary (64 samples) past every 100 samples
    assert [int(r["sample"]) for r in summary] == ([0, 100, 200] if aec else [0, 128, 200])
    assert len(agents) == 3 * 10
    assert all(int(r["num_samples"]) == 50 for r in summary)
    assert all(float(r["nash_conv"]) > -1e-9 for r in summary)  # tabular agents: no negative gain


# ---------------------------------------------------------------- datasets and commands
@pytest.mark.parametrize("name", [*TRAINING_SCRIPTS, "fig13_training_time"])
def test_dataset_options_are_those_of_train_wpl(name, train_wpl):
    """The figure scripts that train take the dataset options of examples/train_wpl.py
    (same names and defaults), so one --dataset/--data-root line works for all of them."""
    wanted = DATA_OPTIONS if name in TRAINING_SCRIPTS else DATA_OPTIONS[:4]  # fig13 sizes its own subsets
    defaults = {f.name: f.default for f in dataclasses.fields(train_wpl.Args)}
    mine = {f.name: f.default for f in dataclasses.fields(load(name).Args)}
    for option in wanted:
        assert option in mine, f"{name} lacks --{option.replace('_', '-')}"
        assert mine[option] == defaults[option], f"{name}: --{option} defaults to {mine[option]!r}"


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory) -> Path:
    """Random images in MNIST's idx layout, enough for MNIST-MTL's default draw (1,000 / 20 per digit)."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, per_digit in (("train", 1000), ("t10k", 20)):
        labels = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), per_digit))
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (len(labels), 28, 28), np.uint8))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_training_scripts_on_mnist_mtl(mnist_root, tmp_path):
    """--dataset mnist-mtl --data-root DIR reaches every script that trains (28x28 inputs, 4 conv layers)."""
    data = {
        "dataset": "mnist-mtl",
        "data_root": str(mnist_root),
        "max_train_samples": 100,
        "max_test_samples": 20,
    }
    record = load("record_policy_dynamics")
    out = record.main(record.Args(output=str(tmp_path / "rec.csv.gz"), epochs=1, every=1, **data))
    rec = load_recording(out)
    assert len(rec) == 3 * 100 and set(rec.agent_names) == {f"router_{t}" for t in range(10)}

    fig12 = load("fig12_rho_sweep")
    assert_png(fig12.main(fig12.Args(output=str(tmp_path / "f12.png"), rhos="0", epochs=1, **data)))
    assert len(read_csv(tmp_path / "f12.csv")) == 1

    game = load("game_dynamics")
    args = game.Args(
        output=str(tmp_path / "g.png"), epochs=1, analyze_every=100, max_samples_per_task=None, **data
    )
    assert_png(game.main(args))
    summary = read_csv(tmp_path / "g.csv")
    assert [int(r["sample"]) for r in summary] == [0, 100]
    assert all(int(r["num_samples"]) == 20 for r in summary)  # --max-test-samples

    fig13 = load("fig13_training_time")
    args = fig13.Args(
        output=str(tmp_path / "f13.png"), tasks="2", samples_per_task=5, repeats=1,
        dataset="mnist-mtl", data_root=str(mnist_root),
    )  # fmt: skip
    assert_png(fig13.main(args))
    assert {int(r["train_samples"]) for r in read_csv(tmp_path / "f13.csv")} == {10}


def test_data_seed_reaches_the_dataset(mnist_root):
    train = load("record_policy_dynamics")
    a, b = (
        load_run_dataset(
            train.Args(dataset="mnist-mtl", data_root=str(mnist_root), data_seed=s, max_train_samples=50)
        )
        for s in (0, 1)
    )
    assert len(a.train) == len(b.train) == 50
    assert not np.array_equal(a.train.inputs_NCHW.numpy(), b.train.inputs_NCHW.numpy())


def documented_commands() -> list[list[str]]:
    """Every ``python examples/figures/...`` command of docs/policy_dynamics.md, as argv."""
    text = DOCS.read_text(encoding="utf-8").replace("\\\n", " ")
    return [
        shlex.split(m) for m in re.findall(r"^python examples/figures/\S+\.py.*$", text, flags=re.MULTILINE)
    ]


def test_documented_commands_parse():
    """Each command in the docs names a figure script and options it accepts (nothing is run)."""
    commands = documented_commands()
    # every script shown (the purity sweep has its own section and smoke test)
    assert {Path(argv[1]).stem for argv in commands} == {*SCRIPTS, "make_all", "purity_sweep"}
    for argv in commands:
        module = load(Path(argv[1]).stem)
        args = parse_args(module.Args, argv[2:])
        if "--output" in argv:
            assert args.output == argv[argv.index("--output") + 1]


@pytest.mark.parametrize("preset", ["smoke", "digits-mtl", "mnist-mtl", "fashion-mtl"])
def test_make_all_presets_parse(preset):
    make_all = load("make_all")
    args = make_all.Args(preset=preset, output_dir="out", data_root="data")
    steps = make_all.commands(args)
    assert [script for script, _ in steps[:7]] == [
        "record_policy_dynamics", "fig09_policy_heatmaps", "fig10_block_probability", "fig11_routing_map",
        "fig12_rho_sweep", "fig13_training_time", "game_dynamics",
    ]  # fmt: skip
    mnist_like = preset in ("mnist-mtl", "fashion-mtl")
    assert len(steps) == (10 if mnist_like else 7)  # MNIST-MTL adds the first-100-samples view
    for script, argv in steps:
        parsed = parse_args(load(script).Args, argv)
        assert parsed.output.startswith("out/")
        if hasattr(parsed, "dataset"):
            assert parsed.dataset == (preset if mnist_like else "digits-mtl")
            assert parsed.data_root == "data"
        if hasattr(parsed, "max_test_samples"):  # Fashion-MTL's 100,000 test samples: MNIST-MTL's 2,000
            assert (parsed.max_test_samples == 2000) is (preset == "fashion-mtl")
    with pytest.raises(ValueError, match="fig14"):
        make_all.Args(preset=preset, only="fig09,fig14")
    # --aec reaches the steps with a choice of path, and only those
    aec = dict(make_all.commands(make_all.Args(preset=preset, output_dir="out", aec=True)))
    assert {script for script, argv in aec.items() if "--aec" in argv} == {"fig12_rho_sweep", "game_dynamics"}
    assert parse_args(load("game_dynamics").Args, aec["game_dynamics"]).aec is True
    assert not any("--aec" in argv for _, argv in steps)


def test_make_all_smoke(tmp_path):
    make_all = load("make_all")
    times = make_all.main(make_all.Args(preset="smoke", output_dir=str(tmp_path)))
    assert list(times) == ["record", "fig09", "fig10", "fig11", "fig12", "fig13", "game"]
    assert len(load_recording(tmp_path / "recording.csv.gz")) > 0
    for name in ("fig09_policy_heatmaps", "fig10_block_probability", "fig11_routing_map", "fig12_rho_sweep",
                 "fig13_training_time", "game_dynamics"):  # fmt: skip
        assert_png(tmp_path / f"{name}.png")
    for name in ("fig12_rho_sweep", "fig13_training_time", "game_dynamics", "game_dynamics_agents"):
        assert read_csv(tmp_path / f"{name}.csv")
    only = make_all.main(make_all.Args(preset="smoke", output_dir=str(tmp_path), only="fig11"))
    assert list(only) == ["fig11"]


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_script_runs_as_a_command(recording_csv, tmp_path):
    """The ``__main__`` path: argv parsed into Args, figure written (one script stands for all)."""
    out = tmp_path / "map.png"
    script = FIGURES / "fig11_routing_map.py"
    argv = [
        sys.executable,
        str(script),
        "--recording",
        str(recording_csv),
        "--output",
        str(out),
        "--window",
        "2",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert_png(out)
    assert "task 9: blocks" in done.stderr
    bad = subprocess.run(
        [*argv[:2], "--window", "x"], capture_output=True, text=True, timeout=120, check=False
    )
    assert bad.returncode == 2 and "Error parsing --window" in bad.stderr
