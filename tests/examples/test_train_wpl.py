"""examples/train_wpl.py on tiny budgets: outputs, CLI, checkpoints and bit-identical resume."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import routing_env
from routing_env.datasets import digits_mtl
from routing_env.experiments import (
    DEFAULT_EPOCHS,
    RunInUseError,
    RunLock,
    load_checkpoint,
    metric_columns,
    save_checkpoint,
)

from .script_flags import undocumented_fields

ROOT = Path(__file__).resolve().parents[2]
TINY = {"max_train_samples": 320, "max_test_samples": 100, "progress": False, "tensorboard": False}
TIME_COLUMNS = {"epoch_time_s", "wall_time_s"}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def without_times(rows):
    return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in rows]


def test_smoke_run_writes_the_run_folder(train_wpl, tmp_path):
    args = train_wpl.Args(epochs=2, output_dir=str(tmp_path), run_name="smoke", **TINY)
    summary = train_wpl.main(args)

    run = tmp_path / "smoke"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.csv", "checkpoint.pt", "summary.json"}
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["epochs"] == 2 and config["policy_lr"] == args.policy_lr
    rows = read_rows(run / "metrics.csv")
    assert list(rows[0]) == metric_columns(10, validation=True, purity=True)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # the validation split: a tenth of the training images, carved before the 320-sample subset
    sizes = json.loads((run / "config.json").read_text())["dataset_sizes"]
    assert sizes["train"] == 320 and 0.09 * (sizes["validation"] + 320) < sizes["validation"]
    assert all(0.0 <= float(r["validation_accuracy"]) <= 1.0 for r in rows)
    assert all(0.0 <= float(r["pure_fraction"]) <= 1.0 for r in rows)
    assert summary["validation_accuracy"] == float(rows[-1]["validation_accuracy"])
    assert "cpu" in json.loads((run / "config.json").read_text())["machine"]
    assert [int(r["samples"]) for r in rows] == [320, 640]
    assert int(rows[-1]["updates"]) == 2 * 320 // 64
    for row in rows:
        for key in ("train_accuracy", "test_accuracy", "test_accuracy_stochastic"):
            assert 0.0 <= float(row[key]) <= 1.0
    # the overall test accuracy is the mean of the per-task ones (10 test samples per task)
    per_task = [float(rows[-1][f"test_accuracy_task_{t}"]) for t in range(10)]
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(np.mean(per_task))
    assert summary["test_accuracy"] == float(rows[-1]["test_accuracy"])
    assert sorted(summary["greedy_routes"]) == sorted(f"router_{t}" for t in range(10))
    assert all(len(route) == 3 for route in summary["greedy_routes"].values())
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == 2 and set(state["agents"]) == {f"router_{t}" for t in range(10)}


def assert_same_state(a, b, where="state"):
    """Exact equality of nested checkpoint states (tensors, arrays, plain values)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
@pytest.mark.parametrize(
    "router, aec",
    [("per_task", False), ("dispatched", False), ("per_task", True)],
    ids=["per_task", "dispatched", "aec"],
)
def test_resume_is_bit_identical(train_wpl, tmp_path, router, aec):
    common = dict(
        TINY,
        router=router,
        aec=aec,
        max_train_samples=192,
        batch_size=32,
        rho=0.2,
        lr_decay_every=2,
        output_dir=str(tmp_path),
    )
    train_wpl.main(train_wpl.Args(epochs=4, run_name="straight", **common))
    train_wpl.main(train_wpl.Args(epochs=2, run_name="resumed", **common))
    train_wpl.main(
        train_wpl.Args(epochs=4, resume=str(tmp_path / "resumed"), progress=False, tensorboard=False)
    )

    straight = read_rows(tmp_path / "straight" / "metrics.csv")
    resumed = read_rows(tmp_path / "resumed" / "metrics.csv")
    assert len(straight) == len(resumed) == 4
    assert without_times(straight) == without_times(resumed)
    assert float(straight[2]["lr"]) == pytest.approx(1e-4)  # the decay after epoch 2 crossed the resume

    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for key in ("env", "agents", "rng"):  # network, optimizer, data order, policies, generators
        assert_same_state(a[key], b[key], key)


def test_a_single_tabular_wpl_router_is_refused(train_wpl):
    with pytest.raises(ValueError, match="could not route by task"):
        train_wpl.Args(router="single")
    assert train_wpl.Args(router="single", learner="reinforce-mlp").router == "single"  # sees (v, t)


@pytest.mark.parametrize(
    ("learner", "router", "cls", "representation"),
    [
        ("reinforce-mlp", "single", "Reinforce", "mlp"),
        ("reinforce-mlp", "dispatched", "Reinforce", "mlp"),
        ("qlearning-mlp", "per_task", "QLearning", "mlp"),
        ("qlearning-table", "per_task", "QLearning", "table"),
    ],
)
def test_the_learner_flag_builds_the_papers_fig4_routers(train_wpl, learner, router, cls, representation):
    import agents
    import routing_env

    args = train_wpl.Args(
        learner=learner,
        router=router,
        reinforce_lr=0.02,
        qlearning_lr=0.3,
        qlearning_mlp_lr=0.004,
        epsilon=0.2,
    )
    env = routing_env.env(router=router, hidden_width=16, filters=8)
    learners = train_wpl.make_router(dataclasses.replace(args, device="meta"), env)
    routers = {k: v for k, v in learners.items() if k.startswith("router_")}
    assert len(routers) == (1 if router == "single" else 10)
    assert {type(v).__name__ for v in routers.values()} == {cls}
    expected_lr = {"reinforce-mlp": 0.02, "qlearning-mlp": 0.004, "qlearning-table": 0.3}[learner]
    for learner_ in routers.values():
        assert learner_.representation == representation and learner_.lr == expected_lr
        if cls == "QLearning":
            assert learner_.epsilon == 0.2
        if representation == "mlp":  # the MLPs run on the network's device
            assert learner_.device == torch.device("meta")
    if router == "dispatched":  # a REINFORCE dispatcher at --reinforce-lr
        dispatcher = learners["dispatcher_0"]
        assert isinstance(dispatcher, agents.Dispatcher) and dispatcher.lr == 0.02
        assert dispatcher.device == torch.device("meta")


def to_paper_agents_format(run_dir: Path, model: str) -> None:
    """Rewrite a --learner run as the former in-process paper runner wrote its REINFORCE / Q-learning
    runs: kind "paper-agents", the learner options nested under "learner_options", the model named."""
    nested = ("reinforce_lr", "qlearning_lr", "qlearning_mlp_lr", "epsilon")

    def old(config: dict) -> dict:
        config = {k: v for k, v in config.items() if k not in nested}
        config["model"] = model
        config["learner_options"] = {k: saved[k] for k in nested}
        return config

    path = run_dir / "config.json"
    payload = json.loads(path.read_text())
    saved = payload["config"]
    payload["config"], payload["kind"] = old(saved), "paper-agents"
    path.write_text(json.dumps(payload))
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    checkpoint["config"] = old(checkpoint["config"])
    save_checkpoint(run_dir / "checkpoint.pt", checkpoint)


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_a_reinforce_run_of_the_former_paper_runner_resumes_bit_identically(train_wpl, tmp_path):
    common = dict(
        TINY,
        learner="reinforce-mlp",
        reinforce_lr=0.02,
        max_train_samples=96,
        batch_size=32,
        output_dir=str(tmp_path),
    )
    train_wpl.main(train_wpl.Args(epochs=2, run_name="straight", **common))
    train_wpl.main(train_wpl.Args(epochs=1, run_name="resumed", **common))
    to_paper_agents_format(tmp_path / "resumed", "reinforce-per-task-approx")
    train_wpl.main(
        train_wpl.Args(epochs=2, resume=str(tmp_path / "resumed"), progress=False, tensorboard=False)
    )
    saved = json.loads((tmp_path / "resumed" / "config.json").read_text())
    assert (
        saved["kind"] == "paper-agents" and saved["config"]["reinforce_lr"] == 0.02
    )  # read back from its nest
    straight = read_rows(tmp_path / "straight" / "metrics.csv")
    assert without_times(straight) == without_times(read_rows(tmp_path / "resumed" / "metrics.csv"))
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for key in ("env", "agents", "rng"):
        assert_same_state(a[key], b[key], key)


def test_the_policy_learning_rate_can_follow_the_block_schedule(train_wpl, tmp_path):
    args = train_wpl.Args(
        policy_lr_schedule="blocks", policy_lr=0.5, lr_decay_every=2, lr_decay_factor=0.1, **TINY
    )
    assert [train_wpl.policy_lr(args, e) for e in range(5)] == pytest.approx([0.5, 0.5, 0.05, 0.05, 0.005])
    constant = dataclasses.replace(args, policy_lr_schedule="constant")
    assert [train_wpl.policy_lr(constant, e) for e in range(5)] == [0.5] * 5
    common = dict(TINY, max_train_samples=96, batch_size=32, lr_decay_every=1, output_dir=str(tmp_path))
    train_wpl.main(train_wpl.Args(epochs=2, run_name="straight", policy_lr_schedule="blocks", **common))
    train_wpl.main(train_wpl.Args(epochs=1, run_name="resumed", policy_lr_schedule="blocks", **common))
    train_wpl.main(
        train_wpl.Args(epochs=2, resume=str(tmp_path / "resumed"), progress=False, tensorboard=False)
    )
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert_same_state(a["agents"], b["agents"], "agents")


@pytest.mark.parametrize("router", ["dispatched"])
def test_other_router_configurations_run(train_wpl, tmp_path, router):
    args = train_wpl.Args(router=router, epochs=1, output_dir=str(tmp_path), run_name="run", **TINY)
    summary = train_wpl.main(args)
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    expected = {"router_0"} if router == "single" else {"dispatcher_0"} | {f"router_{t}" for t in range(10)}
    assert set(state["agents"]) == expected


def test_resume_refuses_a_changed_config(train_wpl, tmp_path):
    train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="run", **TINY))
    with pytest.raises(ValueError, match="--rho"):
        train_wpl.main(train_wpl.Args(epochs=2, rho=0.5, resume=str(tmp_path / "run"), **TINY))


def test_an_existing_run_folder_is_not_overwritten(train_wpl, tmp_path):
    train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="run", **TINY))
    with pytest.raises(FileExistsError, match="--resume"):
        train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="run", **TINY))


def test_stochastic_evaluation_does_not_change_training(train_wpl, tmp_path):
    common = dict(TINY, epochs=2, output_dir=str(tmp_path))
    train_wpl.main(train_wpl.Args(run_name="with", eval_stochastic=True, **common))
    train_wpl.main(train_wpl.Args(run_name="without", eval_stochastic=False, **common))
    with_ = without_times(read_rows(tmp_path / "with" / "metrics.csv"))
    without = without_times(read_rows(tmp_path / "without" / "metrics.csv"))
    assert all(row["test_accuracy_stochastic"] == "" for row in without)
    for a, b in zip(with_, without, strict=True):
        assert {k: v for k, v in a.items() if "stochastic" not in k} == {
            k: v for k, v in b.items() if "stochastic" not in k
        }


def test_every_option_has_help(train_wpl):
    assert undocumented_fields(train_wpl.Args) == []


def test_cli_runs_end_to_end(tmp_path):
    cmd = [
        sys.executable,
        "examples/train_wpl.py",
        "--epochs=1",
        "--max-train-samples=128",
        "--max-test-samples=50",
        "--routing=recurrent",
        "--lr-decay-every=none",
        f"--output-dir={tmp_path}",
        "--run-name=cli",
        "--no-tensorboard",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "all tasks" in done.stdout  # the summary table
    config = json.loads((tmp_path / "cli" / "config.json").read_text())["config"]
    assert config["routing"] == "recurrent" and config["lr_decay_every"] is None


def test_cli_rejects_bad_values(tmp_path):
    done = subprocess.run(
        [sys.executable, "examples/train_wpl.py", "--epochs=0", f"--output-dir={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and "--epochs must be >= 1" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
def test_the_default_run_learns_digits(train_wpl, tmp_path):
    # the majority class scores 90%; with the defaults the routers leave that plateau in
    # 2-3 epochs and pass 98% by epoch 5 (seeds 0-2: 99.08-99.14%)
    args = train_wpl.Args(
        epochs=5, output_dir=str(tmp_path), run_name="run", progress=False, tensorboard=False
    )
    summary = train_wpl.main(args)
    assert summary["test_accuracy"] > 0.98
    routes = summary["greedy_routes"]
    assert len({tuple(r) for r in routes.values()}) >= 8  # tasks have routes of their own


def set_saved_device(run_dir: Path, device: str) -> None:
    path = run_dir / "config.json"
    saved = json.loads(path.read_text())
    saved["config"]["device"] = device
    path.write_text(json.dumps(saved))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_gpu_run_resumes_on_a_machine_without_one_with_device_cpu(train_wpl, tmp_path):
    train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="run", **TINY))
    set_saved_device(tmp_path / "run", "cuda")  # as if trained on a GPU machine
    resume = dict(resume=str(tmp_path / "run"), progress=False, tensorboard=False)
    with pytest.raises(ValueError, match="CUDA is not available here.*--device cpu"):
        train_wpl.main(train_wpl.Args(epochs=2, **resume))
    assert len(read_rows(tmp_path / "run" / "metrics.csv")) == 1  # refused before any work
    train_wpl.main(train_wpl.Args(epochs=2, device="cpu", **resume))
    assert len(read_rows(tmp_path / "run" / "metrics.csv")) == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["device"] == "cpu"


def test_a_device_this_machine_lacks_is_refused_before_the_run_folder(train_wpl, tmp_path):
    with pytest.raises(ValueError, match="cuda:99"):
        train_wpl.main(
            train_wpl.Args(epochs=1, device="cuda:99", output_dir=str(tmp_path), run_name="run", **TINY)
        )
    assert not (tmp_path / "run").exists()


@needs_cuda
def test_a_cuda_run_resumes_on_cuda_or_on_the_cpu(train_wpl, tmp_path):
    train_wpl.main(train_wpl.Args(epochs=1, device="cuda", output_dir=str(tmp_path), run_name="gpu", **TINY))
    shutil.copytree(tmp_path / "gpu", tmp_path / "moved")
    state = load_checkpoint(tmp_path / "gpu" / "checkpoint.pt")  # readable anywhere: CPU tensors
    tensors = [v for v in state["env"]["engine"]["network"].values() if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)

    resume = dict(progress=False, tensorboard=False)
    train_wpl.main(train_wpl.Args(epochs=2, resume=str(tmp_path / "gpu"), **resume))  # the run's device
    train_wpl.main(train_wpl.Args(epochs=2, resume=str(tmp_path / "moved"), device="cpu", **resume))
    for name, device in (("gpu", "cuda"), ("moved", "cpu")):
        rows = read_rows(tmp_path / name / "metrics.csv")
        assert [r["epoch"] for r in rows] == ["1", "2"], name
        assert 0.0 <= float(rows[-1]["test_accuracy"]) <= 1.0
        assert json.loads((tmp_path / name / "config.json").read_text())["config"]["device"] == device


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_resume_to_the_default_number_of_epochs(train_wpl, tmp_path, capsys):
    # --epochs equal to the default must still replace the run's saved epochs on --resume
    train_wpl.main(train_wpl.Args(epochs=2, output_dir=str(tmp_path), run_name="run", **TINY))
    resume = dict(resume=str(tmp_path / "run"), progress=False, tensorboard=False)
    train_wpl.main(train_wpl.Args(**resume))  # no --epochs: the run's own 2, already done
    assert "already has 2 epochs" in capsys.readouterr().err
    assert len(read_rows(tmp_path / "run" / "metrics.csv")) == 2
    train_wpl.main(train_wpl.Args(epochs=DEFAULT_EPOCHS, **resume))
    assert len(read_rows(tmp_path / "run" / "metrics.csv")) == DEFAULT_EPOCHS == 20
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["epochs"] == 20


def folder_bytes(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file() and p.name != ".lock"}


def test_resume_of_a_baseline_run_is_refused_before_anything_is_written(train_wpl, train_baseline, tmp_path):
    train_baseline.main(train_baseline.Args(epochs=1, output_dir=str(tmp_path), run_name="base", **TINY))
    before = folder_bytes(tmp_path / "base")
    with pytest.raises(ValueError, match=r"is a baseline run.*python examples/train_baseline.py --resume"):
        train_wpl.main(
            train_wpl.Args(epochs=2, resume=str(tmp_path / "base"), progress=False, tensorboard=False)
        )
    assert folder_bytes(tmp_path / "base") == before  # config.json keeps its "model"
    # and the right script still resumes it
    train_baseline.main(train_baseline.Args(epochs=2, resume=str(tmp_path / "base"), progress=False))
    assert [r["epoch"] for r in read_rows(tmp_path / "base" / "metrics.csv")] == ["1", "2"]


def test_resume_of_an_older_run_folder_without_a_recorded_kind(train_wpl, tmp_path):
    train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="run", **TINY))
    path = tmp_path / "run" / "config.json"
    saved = json.loads(path.read_text())
    assert saved.pop("kind") == "wpl"
    path.write_text(json.dumps(saved))  # as written before the kind was recorded
    train_wpl.main(train_wpl.Args(epochs=2, resume=str(tmp_path / "run"), progress=False, tensorboard=False))
    assert len(read_rows(tmp_path / "run" / "metrics.csv")) == 2
    assert json.loads(path.read_text())["kind"] == "wpl"


def test_a_checkpoint_of_another_script_is_refused_before_anything_is_written(train_wpl, tmp_path):
    train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="run", **TINY))
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    del state["env"]  # e.g. a baseline's checkpoint copied into a WPL run folder
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", state)
    before = folder_bytes(tmp_path / "run")
    with pytest.raises(ValueError, match="has no 'env': it is not a checkpoint of examples/train_wpl.py"):
        train_wpl.main(
            train_wpl.Args(epochs=2, resume=str(tmp_path / "run"), progress=False, tensorboard=False)
        )
    assert folder_bytes(tmp_path / "run") == before


def test_a_config_edited_away_from_its_checkpoint_is_refused(train_wpl, tmp_path):
    # data_seed 0 -> 7 by hand would resume the saved weights on another train/test split
    train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="run", **TINY))
    path = tmp_path / "run" / "config.json"
    saved = json.loads(path.read_text())
    saved["config"]["data_seed"] = 7
    path.write_text(json.dumps(saved))
    before = folder_bytes(tmp_path / "run")
    with pytest.raises(ValueError, match=r"data_seed: 7 in config.json, 0 in the checkpoint"):
        train_wpl.main(
            train_wpl.Args(epochs=2, resume=str(tmp_path / "run"), progress=False, tensorboard=False)
        )
    assert folder_bytes(tmp_path / "run") == before


def test_resume_with_fewer_epochs_changes_no_file(train_wpl, tmp_path, capsys):
    train_wpl.main(train_wpl.Args(epochs=2, output_dir=str(tmp_path), run_name="run", **TINY))
    before = folder_bytes(tmp_path / "run")
    train_wpl.main(train_wpl.Args(epochs=1, resume=str(tmp_path / "run"), progress=False, tensorboard=False))
    assert "already has 2 epochs" in capsys.readouterr().err
    after = folder_bytes(tmp_path / "run")
    assert json.loads(after["config.json"])["config"]["epochs"] == 2
    assert {k: v for k, v in after.items() if k != "summary.json"} == {
        k: v for k, v in before.items() if k != "summary.json"
    }


def test_resume_short_of_the_recorded_epochs_keeps_them(train_wpl, tmp_path):
    # a 3-epoch run killed after epoch 1, resumed with --epochs 2: config.json still says 3
    train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="run", **TINY))
    path = tmp_path / "run" / "config.json"
    saved = json.loads(path.read_text())
    saved["config"]["epochs"] = 3
    path.write_text(json.dumps(saved))
    resume = dict(resume=str(tmp_path / "run"), progress=False, tensorboard=False)
    train_wpl.main(train_wpl.Args(epochs=2, **resume))
    assert len(read_rows(tmp_path / "run" / "metrics.csv")) == 2
    assert json.loads(path.read_text())["config"]["epochs"] == 3
    train_wpl.main(train_wpl.Args(**resume))  # no --epochs: on to the recorded 3
    assert len(read_rows(tmp_path / "run" / "metrics.csv")) == 3


def test_a_run_folder_another_process_holds_is_refused(train_wpl, tmp_path):
    train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="run", **TINY))
    before = folder_bytes(tmp_path / "run")
    with RunLock(tmp_path / "run"):  # as a first --resume of the run, still training
        with pytest.raises(RunInUseError, match="in use by another process"):
            train_wpl.main(
                train_wpl.Args(epochs=2, resume=str(tmp_path / "run"), progress=False, tensorboard=False)
            )
        with pytest.raises(RunInUseError, match="--run-name"):
            train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="run", **TINY))
    assert folder_bytes(tmp_path / "run") == before
    with pytest.raises(FileExistsError, match="--resume"):  # once free: a finished run
        train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="run", **TINY))


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_two_runs_started_together_with_one_name(tmp_path):
    cmd = [
        sys.executable,
        "examples/train_wpl.py",
        "--epochs=2",
        "--max-train-samples=64",
        "--max-test-samples=20",
        f"--output-dir={tmp_path}",
        "--run-name=same",
        "--no-tensorboard",
        "--no-progress",
    ]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and codes[1] != 0, outputs
    refused = next(err for p, (_, err) in zip(procs, outputs, strict=True) if p.returncode != 0)
    # one message, no traceback: the folder is in use, or (the other run done) not empty
    assert refused.startswith("error: run folder ") and "Traceback" not in refused
    assert "in use by another process" in refused or "exists and is not empty" in refused
    assert [r["epoch"] for r in read_rows(tmp_path / "same" / "metrics.csv")] == ["1", "2"]  # each epoch once


def test_the_aec_path_and_the_batched_path_train_the_same_game(train_wpl, tmp_path):
    common = dict(TINY, max_train_samples=192, batch_size=32, epochs=2, output_dir=str(tmp_path))
    batched = train_wpl.main(train_wpl.Args(run_name="batched", **common))
    aec = train_wpl.main(train_wpl.Args(run_name="aec", aec=True, **common))
    for summary in (batched, aec):
        assert 0.0 <= summary["test_accuracy"] <= 1.0
    rows = {name: read_rows(tmp_path / name / "metrics.csv") for name in ("batched", "aec")}
    # the same number of samples and block updates per epoch, in both paths
    for key in ("samples", "updates", "lr"):
        assert [r[key] for r in rows["batched"]] == [r[key] for r in rows["aec"]]
    config = json.loads((tmp_path / "aec" / "config.json").read_text())["config"]
    assert config["aec"] is True


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_a_run_written_before_the_batched_path_resumes_in_the_aec_path(train_wpl, tmp_path):
    common = dict(TINY, max_train_samples=192, batch_size=32, output_dir=str(tmp_path))
    train_wpl.main(train_wpl.Args(epochs=2, run_name="straight", aec=True, **common))
    train_wpl.main(train_wpl.Args(epochs=1, run_name="old", aec=True, **common))
    # an older config.json and checkpoint have no "aec" entry
    path = tmp_path / "old" / "config.json"
    saved = json.loads(path.read_text())
    del saved["config"]["aec"]
    path.write_text(json.dumps(saved))
    checkpoint = load_checkpoint(tmp_path / "old" / "checkpoint.pt")
    del checkpoint["config"]["aec"]
    save_checkpoint(tmp_path / "old" / "checkpoint.pt", checkpoint)
    train_wpl.main(train_wpl.Args(epochs=2, resume=str(tmp_path / "old"), progress=False, tensorboard=False))
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "old" / "checkpoint.pt")
    for key in ("env", "agents"):
        assert_same_state(a[key], b[key], key)


@pytest.mark.skipif(
    importlib.util.find_spec("torchjd") is None, reason="needs pip install 'routing-env[mtl]'"
)
def test_a_pcgrad_run_records_its_aggregator_and_resumes_bit_identically(train_wpl, tmp_path):
    common = dict(TINY, max_train_samples=128, batch_size=32, aggregator="pcgrad", output_dir=str(tmp_path))
    train_wpl.main(train_wpl.Args(epochs=2, run_name="straight", **common))
    train_wpl.main(train_wpl.Args(epochs=1, run_name="resumed", **common))
    config = json.loads((tmp_path / "resumed" / "config.json").read_text())["config"]
    assert config["aggregator"] == "pcgrad"
    train_wpl.main(
        train_wpl.Args(epochs=2, resume=str(tmp_path / "resumed"), progress=False, tensorboard=False)
    )
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert "aggregator_rng" in a["env"]["engine"]
    for key in ("env", "agents", "rng"):
        assert_same_state(a[key], b[key], key)
    # another aggregator on resume is refused: it would not continue the run
    with pytest.raises(ValueError, match="--aggregator 'upgrad'"):
        train_wpl.main(train_wpl.Args(epochs=3, resume=str(tmp_path / "resumed"), aggregator="upgrad"))


@pytest.mark.parametrize(
    ("option", "default", "other", "learner"),
    [
        ("aggregator", "mean", "pcgrad", "wpl"),
        ("wpl_weighting", "abdallah-lesser", "paper", "wpl"),  # runs from before it: appendix 7.4's rule
        ("router_update", "trace", "minibatch", "qlearning-mlp"),  # minibatch needs an MLP learner
    ],
)
def test_a_run_written_before_an_option_resumes_with_its_default(
    train_wpl, tmp_path, option, default, other, learner
):
    common = dict(
        TINY,
        learner=learner,
        max_train_samples=128,
        batch_size=32,
        output_dir=str(tmp_path),
        **{option: default},
    )
    train_wpl.main(train_wpl.Args(epochs=2, run_name="straight", **common))
    train_wpl.main(train_wpl.Args(epochs=1, run_name="old", **common))
    path = tmp_path / "old" / "config.json"
    saved = json.loads(path.read_text())
    del saved["config"][option]
    path.write_text(json.dumps(saved))
    checkpoint = load_checkpoint(tmp_path / "old" / "checkpoint.pt")
    del checkpoint["config"][option]
    save_checkpoint(tmp_path / "old" / "checkpoint.pt", checkpoint)
    train_wpl.main(train_wpl.Args(epochs=2, resume=str(tmp_path / "old"), progress=False, tensorboard=False))
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "old" / "checkpoint.pt")
    for key in ("env", "agents"):
        assert_same_state(a[key], b[key], key)
    flag = "--" + option.replace("_", "-")
    if getattr(train_wpl.Args(), option) == other:  # the default now: a resume cannot tell it was given
        return
    with pytest.raises(ValueError, match=f"{flag} '{other}' \\(the run used '{default}'\\)"):
        train_wpl.main(
            train_wpl.Args(epochs=3, resume=str(tmp_path / "old"), learner=learner, **{option: other})
        )


def test_a_run_with_the_weightings_former_names_resumes_with_its_rule(train_wpl, tmp_path, capsys):
    """config.json's "appendix" (the former name of abdallah-lesser) resumes as abdallah-lesser, and says so."""
    common = dict(TINY, max_train_samples=128, batch_size=32, output_dir=str(tmp_path))
    train_wpl.main(train_wpl.Args(epochs=2, run_name="straight", wpl_weighting="abdallah-lesser", **common))
    train_wpl.main(train_wpl.Args(epochs=1, run_name="old", wpl_weighting="abdallah-lesser", **common))
    path = tmp_path / "old" / "config.json"
    saved = json.loads(path.read_text())
    saved["config"]["wpl_weighting"] = "appendix"
    path.write_text(json.dumps(saved))
    checkpoint = load_checkpoint(tmp_path / "old" / "checkpoint.pt")
    checkpoint["config"]["wpl_weighting"] = "appendix"
    save_checkpoint(tmp_path / "old" / "checkpoint.pt", checkpoint)
    capsys.readouterr()
    train_wpl.main(train_wpl.Args(epochs=2, resume=str(tmp_path / "old"), progress=False, tensorboard=False))
    assert (
        "keeps the WPL weighting it was trained with: abdallah-lesser (appendix 7.4"
        in capsys.readouterr().err
    )
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "old" / "checkpoint.pt")
    for key in ("env", "agents"):
        assert_same_state(a[key], b[key], key)


def test_the_wpl_weighting_reaches_the_routers(train_wpl):
    env = routing_env.env(dataset=digits_mtl())
    assert train_wpl.Args().wpl_weighting == "paper"  # Algorithm 3 as printed, by default
    for weighting in ("abdallah-lesser", "paper"):
        router = train_wpl.make_router(train_wpl.Args(**TINY, wpl_weighting=weighting), env)
        assert {learner.weighting for learner in router.values()} == {weighting}


@pytest.mark.parametrize(
    ("learner", "router"), [("qlearning-mlp", "per_task"), ("reinforce-mlp", "dispatched")]
)
def test_the_router_update_reaches_the_mlp_routers_and_the_dispatcher(train_wpl, learner, router):
    env = routing_env.env(router=router, hidden_width=16, filters=8)
    for update in ("trace", "minibatch"):
        args = train_wpl.Args(learner=learner, router=router, router_update=update, device="meta")
        learners = train_wpl.make_router(args, env)
        assert {learner_.update for learner_ in learners.values()} == {update}
        assert ("dispatcher_0" in learners) == (router == "dispatched")


def test_router_update_minibatch_is_refused_where_it_cannot_apply(train_wpl):
    for learner in ("wpl", "qlearning-table"):
        with pytest.raises(ValueError, match=f"not --learner {learner}, whose tabular update"):
            train_wpl.Args(learner=learner, router_update="minibatch")
    with pytest.raises(ValueError, match="needs the batched path"):
        train_wpl.Args(learner="qlearning-mlp", router_update="minibatch", aec=True)
    assert train_wpl.Args(learner="qlearning-mlp", aec=True).router_update == "trace"


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_a_minibatch_update_run_learns_differently_and_resumes_bit_identically(train_wpl, tmp_path):
    common = dict(TINY, learner="qlearning-mlp", batch_size=32, output_dir=str(tmp_path))
    train_wpl.main(train_wpl.Args(epochs=2, run_name="straight", router_update="minibatch", **common))
    train_wpl.main(train_wpl.Args(epochs=1, run_name="resumed", router_update="minibatch", **common))
    train_wpl.main(
        train_wpl.Args(epochs=2, resume=str(tmp_path / "resumed"), progress=False, tensorboard=False)
    )
    train_wpl.main(train_wpl.Args(epochs=2, run_name="trace", **common))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert straight["config"]["router_update"] == "minibatch"
    assert_same_state(
        straight["agents"], load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["agents"], "agents"
    )
    trace = load_checkpoint(tmp_path / "trace" / "checkpoint.pt")
    q_straight = straight["agents"]["router_0"]["q_net"]
    assert any(not torch.equal(q_straight[k], trace["agents"]["router_0"]["q_net"][k]) for k in q_straight)
    # --router-update left at its default on resume: the run's own (minibatch) goes on
    train_wpl.main(
        train_wpl.Args(epochs=3, resume=str(tmp_path / "straight"), progress=False, tensorboard=False)
    )
    assert load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["config"]["router_update"] == "minibatch"
