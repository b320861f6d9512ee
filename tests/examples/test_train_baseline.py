"""examples/train_baseline.py on tiny budgets: every model, the shared CSV format, resume,
the progress bar."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from routing_env.baselines import ALL_BASELINE_NAMES
from routing_env.datasets import digits_mtl
from routing_env.experiments import load_checkpoint, metric_columns

from .script_flags import help_flags, script_help, undocumented_fields

ROOT = Path(__file__).resolve().parents[2]
TINY = {"max_train_samples": 320, "max_test_samples": 100, "progress": False, "tensorboard": False}
TIME_COLUMNS = {"epoch_time_s", "wall_time_s"}


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def without_times(rows):
    return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in rows]


@pytest.mark.parametrize("model", ALL_BASELINE_NAMES)
def test_smoke_run_of_every_baseline(train_baseline, tmp_path, model):
    summary = train_baseline.main(
        train_baseline.Args(model=model, epochs=1, output_dir=str(tmp_path), run_name="run", **TINY)
    )
    rows = read_rows(tmp_path / "run" / "metrics.csv")
    assert list(rows[0]) == metric_columns(10, validation=True)  # the same format as train_wpl.py
    assert 0.0 <= float(rows[0]["validation_accuracy"]) <= 1.0
    assert summary["validation_accuracy"] == float(rows[0]["validation_accuracy"])
    (row,) = rows
    assert row["epoch"] == "1" and row["samples"] == "320" and row["updates"] == "5"
    assert row["test_accuracy_stochastic"] == ""  # no policy to sample
    assert 0.0 <= float(row["test_accuracy"]) <= 1.0
    assert summary["model"] == model and summary["test_accuracy"] == float(row["test_accuracy"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["model"] == model


def test_defaults_match_train_wpl(train_wpl, train_baseline):
    # the same budget: every shared option has the same default
    wpl, base = train_wpl.Args(), train_baseline.Args()
    shared = set(train_wpl.Args.__dataclass_fields__) & set(train_baseline.Args.__dataclass_fields__)
    assert {"epochs", "batch_size", "optimizer", "lr", "momentum", "lr_decay_every", "dataset"} <= shared
    for name in shared - {"run_name"}:
        assert getattr(wpl, name) == getattr(base, name), name


def test_resume_is_bit_identical(train_baseline, tmp_path):
    common = dict(
        TINY,
        model="cross-stitch-all-fc",
        batch_size=32,
        lr_decay_every=1,
        lr_decay_factor=0.5,
        output_dir=str(tmp_path),
    )
    train_baseline.main(train_baseline.Args(epochs=3, run_name="straight", **common))
    train_baseline.main(train_baseline.Args(epochs=1, run_name="resumed", **common))
    train_baseline.main(train_baseline.Args(epochs=3, resume=str(tmp_path / "resumed"), progress=False))

    straight = read_rows(tmp_path / "straight" / "metrics.csv")
    resumed = read_rows(tmp_path / "resumed" / "metrics.csv")
    assert without_times(straight) == without_times(resumed)
    assert [float(r["lr"]) for r in straight] == [1e-3, 5e-4, 2.5e-4]
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


class KilledError(Exception):
    """Stands for the process being killed."""


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
@pytest.mark.parametrize(
    ("model", "options"),
    [("mmoe-all-fc", {}), ("gumbel-router-all-fc", {}), ("gumbel-router-all-fc", {"gumbel_logits_lr": 0.03})],
    ids=["mmoe", "gumbel", "gumbel-logits-lr"],
)
def test_a_run_killed_mid_run_resumes_bit_identically(train_baseline, tmp_path, monkeypatch, model, options):
    # killed in epoch 2 after its metrics row, before its checkpoint: the resume redoes
    # epoch 2 from epoch 1's checkpoint (weights, optimizer, data order, the global
    # generators that draw the Gumbel noise, the router's step count) and goes on to 3
    common = dict(TINY, model=model, batch_size=32, epochs=3, output_dir=str(tmp_path), **options)
    train_baseline.main(train_baseline.Args(run_name="straight", **common))
    save = train_baseline.save_checkpoint
    saved = []

    def save_then_die(path, state):
        if saved:
            raise KilledError
        saved.append(state["epoch"])
        return save(path, state)

    monkeypatch.setattr(train_baseline, "save_checkpoint", save_then_die)
    with pytest.raises(KilledError):
        train_baseline.main(train_baseline.Args(run_name="killed", **common))
    monkeypatch.setattr(train_baseline, "save_checkpoint", save)
    run = tmp_path / "killed"
    assert saved == [1] and len(read_rows(run / "metrics.csv")) == 2
    train_baseline.main(train_baseline.Args(resume=str(run), progress=False))

    straight = read_rows(tmp_path / "straight" / "metrics.csv")
    assert len(straight) == 3 and without_times(read_rows(run / "metrics.csv")) == without_times(straight)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(run / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b["model"][key]), key
        else:  # the router's step count (its temperature schedule)
            assert value == b["model"][key], key
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    # the Gumbel router's logits: their own group at --gumbel-logits-lr (none: 0.1)
    logits_lr = [options.get("gumbel_logits_lr", 0.1)] if model == "gumbel-router-all-fc" else []
    assert [g["lr"] for g in b["optimizer"]["param_groups"]] == [1e-3, *logits_lr]
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["test_accuracy"]
        == json.loads((tmp_path / "straight" / "summary.json").read_text())["test_accuracy"]
    )
    if model == "gumbel-router-all-fc":
        assert a["model"]["head._extra_state"] == {"steps": 30}  # 3 epochs of 10 steps
        assert summary["routes"] == json.loads((tmp_path / "straight" / "summary.json").read_text())["routes"]
        assert len(summary["routes"]) == 10 and all(len(r) == 3 for r in summary["routes"])


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so that the progress bar is drawn."""

    def isatty(self) -> bool:
        return True


def test_the_progress_bar_reads_the_running_accuracy_and_changes_no_result(
    train_baseline, tmp_path, monkeypatch
):
    common = dict(TINY, model="task-specific-1-fc", epochs=2, batch_size=32, output_dir=str(tmp_path))
    train_baseline.main(train_baseline.Args(run_name="quiet", **common))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    train_baseline.main(train_baseline.Args(run_name="bar", **{**common, "progress": True}))
    assert "epoch 1/2" in terminal.getvalue() and "train acc 0." in terminal.getvalue()
    quiet = read_rows(tmp_path / "quiet" / "metrics.csv")
    assert without_times(read_rows(tmp_path / "bar" / "metrics.csv")) == without_times(quiet)


def test_options_of_one_model_are_refused_for_the_others(train_baseline):
    with pytest.raises(ValueError, match="--blocks-per-layer applies to"):
        train_baseline.Args(model="cross-stitch-all-fc", blocks_per_layer=4)
    with pytest.raises(ValueError, match="--gumbel-logits-lr applies to"):
        train_baseline.Args(model="mmoe-all-fc", gumbel_logits_lr=0.1)
    with pytest.raises(ValueError, match="--gumbel-tau-end must be a finite number > 0"):
        train_baseline.Args(model="gumbel-router-all-fc", gumbel_tau_end=0.0)
    # the logits' own rate by default (0.1), only for the Gumbel router
    assert train_baseline.gumbel_logits_lr(train_baseline.Args(model="gumbel-router-all-fc")) == 0.1
    assert train_baseline.gumbel_logits_lr(train_baseline.Args(model="mmoe-all-fc")) is None
    args = train_baseline.Args(model="mmoe-all-fc", blocks_per_layer=4)
    assert [len(layer) for layer in train_baseline.make_model(args, digits_mtl()).head.experts] == [4, 4]


def test_every_option_has_help(train_baseline):
    assert undocumented_fields(train_baseline.Args) == []
    assert help_flags(script_help("examples/train_baseline.py"))["--model"] == sorted(ALL_BASELINE_NAMES)


def test_cli_runs_end_to_end(tmp_path):
    cmd = [
        sys.executable,
        "examples/train_baseline.py",
        "--model=task-specific-all-fc",
        "--epochs=1",
        "--max-train-samples=128",
        "--max-test-samples=50",
        f"--output-dir={tmp_path}",
        "--run-name=cli",
        "--no-tensorboard",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "task-specific-all-fc: accuracy" in done.stdout
    assert (tmp_path / "cli" / "checkpoint.pt").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model", ALL_BASELINE_NAMES)
def test_every_baseline_trains_on_cuda_and_resumes_on_the_cpu(train_baseline, tmp_path, model):
    common = dict(TINY, model=model, output_dir=str(tmp_path))
    train_baseline.main(train_baseline.Args(epochs=1, device="cuda", run_name="run", **common))
    train_baseline.main(
        train_baseline.Args(epochs=2, resume=str(tmp_path / "run"), device="cpu", progress=False)
    )
    rows = read_rows(tmp_path / "run" / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 for r in rows)


def test_resume_of_a_wpl_run_is_refused_before_anything_is_written(train_wpl, train_baseline, tmp_path):
    train_wpl.main(train_wpl.Args(epochs=1, output_dir=str(tmp_path), run_name="wpl", **TINY))
    run = tmp_path / "wpl"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=r"is a wpl run.*python examples/train_wpl.py --resume"):
        train_baseline.main(train_baseline.Args(epochs=2, resume=str(run), progress=False, tensorboard=False))
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "wpl" and "model" not in config["config"]


def test_resume_with_fewer_epochs_changes_no_file(train_baseline, tmp_path, capsys):
    train_baseline.main(train_baseline.Args(epochs=2, output_dir=str(tmp_path), run_name="run", **TINY))
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.name not in ("summary.json", ".lock")}
    train_baseline.main(train_baseline.Args(epochs=1, resume=str(run), progress=False, tensorboard=False))
    assert "already has 2 epochs" in capsys.readouterr().err
    assert {
        p.name: p.read_bytes() for p in run.iterdir() if p.name not in ("summary.json", ".lock")
    } == before
    assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 2
