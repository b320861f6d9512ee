"""A run folder is never silently altered: data, checkpoint and metrics are checked on resume.

Each case below is one row of docs/reliability.md: a resume on other data, a damaged
checkpoint, a metrics.csv cut by a kill or damaged otherwise, a run stopped before its
first checkpoint, and flags out of range.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from routing_env import MAX_SEED
from routing_env.experiments import DamagedFileError, DataMismatchError, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = {"max_train_samples": 160, "max_test_samples": 40, "progress": False, "tensorboard": False}


def write_mnist(root: Path, *, seed: int = 0) -> Path:
    """Random images in MNIST's idx layout (MNIST-MTL's default draw: 1,000 training, 20 test per digit)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for prefix, per_digit in (("train", 1000), ("t10k", 20)):
        labels = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), per_digit))
        for name, array in (
            ("images-idx3", rng.integers(0, 256, (len(labels), 28, 28), np.uint8)),
            ("labels-idx1", labels),
        ):
            header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            (raw / f"{prefix}-{name}-ubyte").write_bytes(header + array.tobytes())
    return root


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_a_resume_on_other_data_is_refused_and_on_the_same_data_elsewhere_goes_on(train_wpl, tmp_path):
    data = write_mnist(tmp_path / "data")
    common = dict(TINY, dataset="mnist-mtl", output_dir=str(tmp_path), conv_layers=2, hidden_width=16)
    train_wpl.main(train_wpl.Args(epochs=1, run_name="run", data_root=str(data), **common))
    run = tmp_path / "run"
    config_before = read_text(run / "config.json")
    assert len(json.loads(config_before)["data_fingerprint"]) == 20
    assert (
        load_checkpoint(run / "checkpoint.pt")["data_fingerprint"]
        == json.loads(config_before)["data_fingerprint"]
    )
    # other files: one pixel of one training image changed
    other = tmp_path / "other"
    shutil.copytree(data, other)
    images = other / "MNIST" / "raw" / "train-images-idx3-ubyte"
    raw = bytearray(images.read_bytes())
    raw[16 + 28 * 14 + 14] ^= 0xFF
    images.write_bytes(bytes(raw))
    with pytest.raises(DataMismatchError, match=r"not the data the run was trained on \(fingerprint"):
        train_wpl.main(train_wpl.Args(epochs=2, resume=str(run), data_root=str(other), progress=False))
    assert read_text(run / "config.json") == config_before  # nothing was written
    # the same files under another root: the run goes on
    same = tmp_path / "same"
    shutil.copytree(data, same)
    summary = train_wpl.main(train_wpl.Args(epochs=2, resume=str(run), data_root=str(same), progress=False))
    assert summary["epochs"] == 2


def test_a_damaged_checkpoint_is_refused_naming_the_member(train_wpl, tmp_path):
    train_wpl.main(train_wpl.Args(epochs=1, run_name="run", output_dir=str(tmp_path), **TINY))
    path = tmp_path / "run" / "checkpoint.pt"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit, inside a tensor's data
    path.write_bytes(bytes(raw))
    with pytest.raises(
        DamagedFileError, match=r"checkpoint .* is damaged: its member .* fails the zip's CRC"
    ):
        train_wpl.main(train_wpl.Args(epochs=2, resume=str(tmp_path / "run"), progress=False))


def test_a_metrics_row_cut_by_a_kill_is_dropped_and_trained_again(train_wpl, tmp_path, capsys):
    """A kill while writing epoch 2's row (before epoch 2's checkpoint): the cut row is dropped,
    epoch 2 is trained again from epoch 1's checkpoint, and the run equals an uninterrupted one."""
    common = dict(TINY, output_dir=str(tmp_path))
    train_wpl.main(train_wpl.Args(epochs=2, run_name="straight", **common))
    train_wpl.main(train_wpl.Args(epochs=1, run_name="cut", **common))
    straight = read_text(tmp_path / "straight" / "metrics.csv").splitlines(keepends=True)
    metrics = tmp_path / "cut" / "metrics.csv"
    metrics.write_text(read_text(metrics) + straight[2][:25], encoding="utf-8")  # half of epoch 2's row
    capsys.readouterr()
    train_wpl.main(train_wpl.Args(epochs=2, resume=str(tmp_path / "cut"), progress=False))
    assert "its last row was cut off" in capsys.readouterr().err
    rows = [line.split(",") for line in read_text(metrics).splitlines()[1:]]
    expected = [line.split(",") for line in straight[1:]]
    assert [r[:-2] for r in rows] == [r[:-2] for r in expected]  # all but the times


@pytest.mark.parametrize("damage", ["empty", "row missing", "fields"])
def test_a_metrics_file_damaged_otherwise_is_refused_naming_it(train_wpl, tmp_path, damage):
    train_wpl.main(train_wpl.Args(epochs=2, run_name="run", output_dir=str(tmp_path), **TINY))
    metrics = tmp_path / "run" / "metrics.csv"
    lines = read_text(metrics).splitlines(keepends=True)
    if damage == "empty":
        metrics.write_text("", encoding="utf-8")
    elif damage == "row missing":
        metrics.write_text(lines[0] + lines[2], encoding="utf-8")
    else:
        metrics.write_text(lines[0] + lines[1] + "2,640\n", encoding="utf-8")
    match = r"line 3: 2 fields" if damage == "fields" else r"lacks the rows of epochs \[1"
    with pytest.raises(DamagedFileError, match=match):
        train_wpl.main(train_wpl.Args(epochs=3, resume=str(tmp_path / "run"), progress=False))


def test_a_run_stopped_before_its_first_checkpoint_starts_again_on_resume(train_wpl, tmp_path, capsys):
    common = dict(TINY, output_dir=str(tmp_path))
    train_wpl.main(train_wpl.Args(epochs=1, run_name="straight", **common))
    train_wpl.main(train_wpl.Args(epochs=1, run_name="stopped", **common))
    stopped = tmp_path / "stopped"
    (stopped / "checkpoint.pt").unlink()  # as if killed in epoch 1: config.json and a bare metrics.csv
    (stopped / "metrics.csv").write_text(read_text(stopped / "metrics.csv").splitlines(keepends=True)[0])
    (stopped / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    capsys.readouterr()
    train_wpl.main(train_wpl.Args(epochs=1, resume=str(stopped), progress=False))
    assert "starting it again from epoch 0" in capsys.readouterr().err
    assert not list(stopped.glob(".*.tmp"))  # the stale temp file is gone
    a = [r.split(",")[:-2] for r in read_text(tmp_path / "straight" / "metrics.csv").splitlines()]
    b = [r.split(",")[:-2] for r in read_text(stopped / "metrics.csv").splitlines()]
    assert a == b


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("seed", -5, r"--seed must be an int in \[0, 9223372036854775807\]"),
        ("seed", 2**70, r"--seed must be an int in \[0, "),
        ("data_seed", -1, r"--data-seed must be an int"),
        ("lr", float("nan"), r"--lr must be a finite number > 0, got nan"),
        ("rho", 2.0, r"--rho must be a finite number >= 0 and <= 1"),
        ("policy_lr", float("inf"), r"--policy-lr must be a finite number > 0"),
        ("batch_size", 0, r"--batch-size must be >= 1"),
    ],
)
def test_flags_out_of_range_are_refused_naming_the_flag(train_wpl, train_baseline, option, value, message):
    with pytest.raises(ValueError, match=message):
        train_wpl.Args(**{option: value})
    if option in ("seed", "data_seed", "lr", "batch_size"):
        with pytest.raises(ValueError, match=message):
            train_baseline.Args(**{option: value})
    train_wpl.Args(seed=MAX_SEED)  # the largest seed the env takes is taken


def test_a_missing_dataset_is_one_message_exit_2_and_no_run_folder(tmp_path):
    """Five lines at most, no traceback, the fix in the script's flags, nothing left behind."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "train_wpl.py"),
            "--dataset",
            "mnist-mtl",
            "--data-root",
            str(tmp_path / "nowhere"),
            "--output-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    out = (done.stdout + done.stderr).strip().splitlines()
    assert len(out) <= 5 and "Traceback" not in done.stderr, out
    assert (
        out[0].startswith("error: mnist-mtl: MNIST not found")
        and "--download" in out[1]
        and "--data-root" in out[1]
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
