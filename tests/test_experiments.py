"""routing_env.experiments: the command line, subsets, run folders, metrics and checkpoints."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest
import torch

from routing_env.datasets import subsample
from routing_env.experiments import (
    LOCK_FILE,
    MetricsCSV,
    Progress,
    RunInUseError,
    RunLock,
    check_checkpoint,
    check_run_kind,
    claim_run_dir,
    create_run_dir,
    global_rng_state,
    load_checkpoint,
    metric_columns,
    metrics_row,
    parse_args,
    read_config,
    resolve_device,
    resume_args,
    run_kind,
    save_checkpoint,
    set_global_rng_state,
    summary_table,
    tensorboard_writer,
    write_config,
    write_rows,
)

from .examples.script_flags import args_help


@dataclass
class Options:
    """A test command line."""

    name: str = "x"
    """a name"""
    count: int = 3
    """how many"""
    rate: float | None = None
    """a rate, or none"""
    mode: Literal["fast", "slow"] = "fast"
    """the mode"""
    flag: bool = True
    """a flag"""
    undocumented: int = 0

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("--count must be >= 0")


# ----------------------------------------------------------------- command line
def test_parse_args_types_and_defaults():
    assert parse_args(Options, []) == Options()
    parsed = parse_args(Options, ["--name", "y", "--count=5", "--rate", "0.5", "--mode", "slow", "--no-flag"])
    assert parsed == Options(name="y", count=5, rate=0.5, mode="slow", flag=False)
    assert parse_args(Options, ["--rate", "none"]).rate is None
    assert parse_args(Options, ["--rate=None"]).rate is None
    assert parse_args(Options, ["--rate", "0.25"]).rate == 0.25
    assert parse_args(Options, ["--flag"]).flag is True
    assert "a rate, or none" in args_help(Options)


@dataclass
class WithOptionalText:
    """Optional strings and choices take ``none`` as well."""

    label: str | None = "x"
    """a label"""
    kind: Literal["a", "b"] | None = "a"
    """a kind"""


def test_none_means_none_for_optional_strings_and_choices():
    assert parse_args(WithOptionalText, ["--label", "none", "--kind=NONE"]) == WithOptionalText(None, None)
    assert parse_args(WithOptionalText, ["--label", "nonesuch"]).label == "nonesuch"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--count", "many"], "--count"),
        (["--mode", "medium"], "invalid choice"),
        (["--count", "-1"], "--count must be >= 0"),
        (["--unknown", "1"], "Unrecognized options"),
    ],
)
def test_parse_args_rejects_bad_values(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(Options, argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_parse_args_needs_a_dataclass():
    with pytest.raises(TypeError, match="dataclass"):
        parse_args(dict, [])


def test_the_old_module_still_imports_with_a_warning():
    import importlib

    sys.modules.pop("routing_env.training", None)
    with pytest.warns(DeprecationWarning, match="routing_env.experiments"):
        old = importlib.import_module("routing_env.training")
    assert old.parse_args is parse_args and old.subsample is subsample


# ----------------------------------------------------------------- subsets
def test_subsample_keeps_every_task_in_equal_shares(digits):
    small = subsample(digits, max_train=105, max_test=20, seed=1)
    assert len(small.train) == 105 and len(small.test) == 20
    counts = np.bincount(small.train.tasks_N.numpy(), minlength=10)
    assert counts.min() >= 10 and counts.max() <= 11
    assert np.bincount(small.test.tasks_N.numpy(), minlength=10).tolist() == [2] * 10
    assert small.num_classes == digits.num_classes and small.mean == digits.mean
    # the kept samples are rows of the original split, in their original order
    tasks = small.train.tasks_N.numpy()
    assert (np.diff(tasks) >= 0).all()  # digits-MTL is stored task-major


def test_subsample_is_seeded_and_a_no_op_within_limits(digits):
    a = subsample(digits, max_train=50, seed=0)
    b = subsample(digits, max_train=50, seed=0)
    c = subsample(digits, max_train=50, seed=1)
    assert torch.equal(a.train.inputs_NCHW, b.train.inputs_NCHW)
    assert not torch.equal(a.train.inputs_NCHW, c.train.inputs_NCHW)
    assert a.test is digits.test
    assert subsample(digits) is digits
    assert subsample(digits, max_train=10**9) is digits


def test_subsample_refuses_to_drop_a_task(digits):
    with pytest.raises(ValueError, match="number of tasks"):
        subsample(digits, max_train=9)


# ----------------------------------------------------------------- run folders
def test_run_dir_config_and_resume_args(tmp_path):
    run = create_run_dir(tmp_path, "a", prefix="p")
    write_config(run, Options(name="saved", count=7), extra={"note": 1})
    assert read_config(run) == {
        "name": "saved",
        "count": 7,
        "rate": None,
        "mode": "fast",
        "flag": True,
        "undocumented": 0,
    }
    (run / "metrics.csv").write_text("x")
    with pytest.raises(FileExistsError, match="--resume"):
        create_run_dir(tmp_path, "a", prefix="p")
    assert create_run_dir(tmp_path, None, prefix="p").name.startswith("p-")
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        read_config(tmp_path / "nothing")

    saved = read_config(run)
    # defaults take the saved values; allowed changes win; others raise
    assert resume_args(Options(), saved, may_change={"count"}) == Options(name="saved", count=7)
    assert resume_args(Options(count=9), saved, may_change={"count"}).count == 9
    with pytest.raises(ValueError, match="--mode 'slow'"):
        resume_args(Options(mode="slow"), saved, may_change={"count"})


def test_a_run_folder_is_claimed_by_one_run_only(tmp_path):
    # two runs started together with one --run-name: the second is refused while the first holds it
    first = claim_run_dir(tmp_path, "run", prefix="p")
    assert first.held and first.run_dir == tmp_path / "run"
    with pytest.raises(RunInUseError, match=rf"in use by another process \(pid {os.getpid()}\).*--run-name"):
        claim_run_dir(tmp_path, "run", prefix="p")
    with pytest.raises(RunInUseError):
        RunLock(tmp_path / "run").acquire()  # nor can a resume take it
    (tmp_path / "run" / "config.json").write_text("{}")
    first.release()
    # once the first run is done, its folder is a finished run: resume it, or take another name
    with pytest.raises(FileExistsError, match="--resume"):
        claim_run_dir(tmp_path, "run", prefix="p")
    with RunLock(tmp_path / "run") as lock:  # a resume takes the released lock
        assert lock.held
    assert not lock.held
    # an empty folder (a run that failed before writing) can be claimed again
    (tmp_path / "empty").mkdir()
    with claim_run_dir(tmp_path, "empty", prefix="p") as again:
        assert again.held and [p.name for p in (tmp_path / "empty").iterdir()] == [LOCK_FILE]


def test_claiming_a_run_folder_is_atomic_under_a_race(tmp_path):
    # many threads claim one name at once (each RunLock opens its own file description)
    results: list[object] = []
    start = threading.Barrier(8)

    def claim() -> None:
        start.wait()
        try:
            results.append(claim_run_dir(tmp_path, "run", prefix="p"))
        except (RunInUseError, FileExistsError) as err:
            results.append(err)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if isinstance(r, RunLock)]
    assert len(winners) == 1 and all(isinstance(r, RunInUseError) for r in results if r not in winners)
    winners[0].release()


def test_a_killed_run_does_not_leave_its_folder_locked(tmp_path):
    # the lock is the OS's (flock): it goes with the process, however the process ends
    (tmp_path / "run").mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from routing_env.experiments import RunLock; "
            f"RunLock({str(tmp_path / 'run')!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunInUseError, match=f"pid {holder.pid}"):
            RunLock(tmp_path / "run").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with RunLock(tmp_path / "run") as lock:
        assert lock.held


def test_run_kind_is_recorded_and_inferred_for_older_folders(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_config(run, {"model": "task-specific-1-fc", "epochs": 2}, kind="baseline")
    assert json.loads((run / "config.json").read_text())["kind"] == "baseline"
    assert run_kind(run) == "baseline"
    check_run_kind(run, expected="baseline")
    with pytest.raises(ValueError, match=r"is a baseline run.*python examples/train_baseline.py --resume"):
        check_run_kind(run, expected="wpl")
    # a config.json from before the kind was recorded: told apart by its options
    for config, kind in (
        ({"model": "cross-stitch-all-fc"}, "baseline"),
        ({"router": "per_task", "rho": 0.0}, "wpl"),
        ({"router": "per_task", "model": "routing-all-fc-reinforce", "learner": "reinforce"}, "paper-agents"),
    ):
        write_config(run, config)
        assert run_kind(run) == kind
    with pytest.raises(ValueError, match=r"is a paper-agents run.*python examples/train_wpl.py --resume"):
        check_run_kind(run, expected="wpl")  # train_wpl.py resumes them as such (it names their kind)
    write_config(run, {"something": 1})
    with pytest.raises(ValueError, match="not a run folder"):
        run_kind(run)
    with pytest.raises(ValueError, match="kind must be one of"):
        write_config(run, {}, kind="sweep")
    (run / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_config(run)


def test_check_checkpoint_compares_the_checkpoint_config_with_config_json(tmp_path):
    config = {"data_seed": 0, "lr": 1e-3, "epochs": 2, "device": "cpu"}
    good = {"epoch": 2, "config": dict(config), "env": {}}
    check_checkpoint(good, run_dir=tmp_path, kind="wpl", keys=("env",), config=config)
    # the resumable options may differ (a longer run, another device)
    check_checkpoint(good, run_dir=tmp_path, kind="wpl", keys=("env",), config={**config, "epochs": 9})
    edited = {**config, "data_seed": 7, "lr": 0.1}
    with pytest.raises(ValueError, match=r"data_seed: 7 in config.json, 0 in the checkpoint; lr: 0.1") as err:
        check_checkpoint(good, run_dir=tmp_path, kind="wpl", keys=("env",), config=edited)
    assert "edited by hand" in str(err.value)
    with pytest.raises(ValueError, match=r"has no 'env': it is not a checkpoint of examples/train_wpl.py"):
        check_checkpoint(
            {"epoch": 1, "config": config}, run_dir=tmp_path, kind="wpl", keys=("env",), config=config
        )
    with pytest.raises(ValueError, match="epoch"):
        check_checkpoint({**good, "epoch": -1}, run_dir=tmp_path, kind="wpl", keys=(), config=config)


# ----------------------------------------------------------------- metrics
def row(epoch, stochastic=True):
    per_task = [0.5, 0.75]
    return metrics_row(
        epoch=epoch,
        samples=10 * epoch,
        updates=epoch,
        lr=0.1,
        train_accuracy=1 / 3,
        train_accuracy_per_task=per_task,
        test_accuracy=0.625,
        test_accuracy_per_task=per_task,
        test_accuracy_stochastic=0.5 if stochastic else None,
        test_accuracy_stochastic_per_task=per_task if stochastic else None,
        epoch_time_s=1.0,
        wall_time_s=float(epoch),
    )


def test_a_metrics_file_from_before_an_optional_column_goes_on_without_it(tmp_path):
    path = tmp_path / "m.csv"
    MetricsCSV(path, metric_columns(2, validation=True)).append(row(1, stochastic=True))
    columns = metric_columns(2, validation=True, purity=True)
    assert "pure_fraction" in columns and "validation_accuracy_task_1" in columns
    resumed = MetricsCSV(path, columns, optional=("pure_fraction",))
    assert resumed.columns == metric_columns(2, validation=True)
    resumed.append({**row(2, stochastic=True), "pure_fraction": 0.5})
    assert [r["epoch"] for r in resumed.rows()] == ["1", "2"]
    with pytest.raises(ValueError, match="columns"):  # a column that is not optional must be there
        MetricsCSV(path, metric_columns(2, validation=False, purity=True), optional=("pure_fraction",))


def test_metrics_csv_round_trips_and_truncates(tmp_path):
    path = tmp_path / "m.csv"
    log = MetricsCSV(path, metric_columns(2))
    for epoch in (1, 2, 3):
        log.append(row(epoch, stochastic=epoch != 2))
    rows = MetricsCSV(path, metric_columns(2)).rows()  # reopening keeps the rows
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert float(rows[0]["train_accuracy"]) == 1 / 3  # floats round-trip exactly
    assert rows[1]["test_accuracy_stochastic"] == "" and rows[1]["test_accuracy_stochastic_task_1"] == ""
    log.keep_epochs(1)
    assert [r["epoch"] for r in log.rows()] == ["1"]
    with pytest.raises(ValueError, match="columns"):
        MetricsCSV(path, metric_columns(3))
    with pytest.raises(ValueError, match="misses"):
        log.append({"epoch": 4})
    with pytest.raises(ValueError, match="one per task"):
        metrics_row(
            epoch=1,
            samples=1,
            updates=1,
            lr=0.1,
            train_accuracy=1.0,
            train_accuracy_per_task=[1.0],
            test_accuracy=1.0,
            test_accuracy_per_task=[1.0, 1.0],
            epoch_time_s=0.0,
            wall_time_s=0.0,
        )


def test_write_rows_writes_a_header_and_the_rows(tmp_path):
    rows = [{"rho": 0.0, "acc": 0.5}, {"rho": 0.2, "acc": 0.75}]
    path = write_rows(tmp_path / "new" / "table.csv", rows)
    assert path.read_bytes() == b"rho,acc\r\n0.0,0.5\r\n0.2,0.75\r\n"  # csv's default dialect, as before
    # a fixed header: missing keys empty, others left out
    write_rows(path, [{"acc": 1, "other": 2}], columns=["rho", "acc"])
    assert path.read_bytes() == b"rho,acc\r\n,1\r\n"
    with pytest.raises(ValueError, match="dict contains fields not in fieldnames"):
        write_rows(path, [{"rho": 1}, {"rho": 2, "acc": 3}])
    with pytest.raises(ValueError, match="no rows to write"):
        write_rows(path, [])
    assert write_rows(path, [], columns=["a"]).read_bytes() == b"a\r\n"


# ----------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_with_numpy_state(tmp_path):
    rng = np.random.default_rng(5)
    rng.random(3)
    state = {
        "policy": np.arange(6, dtype=np.float64).reshape(2, 3) / 7,
        "allowed": np.array([[True, False, True]]),
        "counts": np.array([1, 2**40], dtype=np.int64),
        "legacy": np.random.RandomState(0).get_state(),  # a tuple holding a uint32 array
        "scalar": np.float32(0.25),
        "rng": rng.bit_generator.state,
        "tensor": torch.arange(3),
        "nested": [{"a": (1, np.zeros(2, dtype=np.float16))}],
    }
    path = save_checkpoint(tmp_path / "c.pt", state)
    torch.load(path, weights_only=True)  # loadable without unpickling arbitrary objects
    out = load_checkpoint(path)
    assert np.array_equal(out["policy"], state["policy"]) and out["policy"].dtype == np.float64
    assert out["allowed"].dtype == bool and out["allowed"].tolist() == [[True, False, True]]
    assert out["counts"].tolist() == [1, 2**40]
    assert out["legacy"][0] == "MT19937" and np.array_equal(out["legacy"][1], state["legacy"][1])
    assert out["scalar"] == 0.25 and torch.equal(out["tensor"], state["tensor"])
    assert out["nested"][0]["a"][1].dtype == np.float16
    restored = np.random.default_rng()
    restored.bit_generator.state = out["rng"]
    assert restored.random() == rng.random()
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"epoch": 1})
    with pytest.raises(TypeError):
        save_checkpoint(path, {"epoch": 2, "bad": np.array([object()])})
    assert load_checkpoint(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_global_rng_state_round_trip(tmp_path):
    state = global_rng_state()
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    expected = (random.random(), np.random.random(), torch.rand(1))
    set_global_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.random(), torch.rand(1)) == expected


# ----------------------------------------------------------------- reporting
class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_on_terminals_and_logs_plain_lines_elsewhere(monkeypatch):
    quiet = io.StringIO()
    started = time.perf_counter()
    log = Progress(stream=quiet, log_interval_s=60.0)
    log.update("epoch 1", 5, 10, started, "acc 0.5", force=True)
    assert quiet.getvalue() == ""  # a short epoch logs nothing
    log.update("epoch 1", 6, 10, started - 61.0, "acc 0.6")
    assert quiet.getvalue().startswith("epoch 1: 6/10 samples, ") and quiet.getvalue().endswith("acc 0.6\n")
    Progress(stream=io.StringIO(), enabled=False).update("epoch 1", 6, 10, started - 61.0, "x")
    term = FakeTerminal()
    bar = Progress(stream=term, min_interval_s=0.0)
    bar.update("epoch 1", 5, 10, started, "acc 0.5")
    drawn = term.getvalue()
    assert "epoch 1" in drawn and "5/10" in drawn and "50%" in drawn and "acc 0.5" in drawn
    bar.clear()
    assert term.getvalue().endswith("\r")


def test_summary_table():
    text = summary_table(["a", "all"], {"test": [0.5, 0.99], "route": ["1 2", None]}, title="t")
    lines = text.splitlines()
    assert lines[0] == "t"
    assert lines[1].split() == ["test", "route"]
    assert lines[3].startswith("a ") and "50.00" in lines[3] and "1 2" in lines[3]
    assert lines[4].split() == ["all", "99.00", "-"]


def test_tensorboard_writer_is_optional(tmp_path, monkeypatch, capsys):
    assert tensorboard_writer(tmp_path, enabled=False) is None
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    assert tensorboard_writer(tmp_path) is None
    assert "routing-env[tensorboard]" in capsys.readouterr().err


def test_corrupt_or_truncated_checkpoint_is_a_clear_error_and_left_intact(tmp_path):
    import torch

    from routing_env.experiments import load_checkpoint, save_checkpoint

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"weights": torch.arange(1000.0)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(path)
    assert path.read_bytes() == data[: len(data) // 2]
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(path)
    save_checkpoint(path, {"weights": torch.arange(3.0)})
    assert torch.equal(load_checkpoint(path)["weights"], torch.arange(3.0))


class _Payload:
    """Unpickling this runs code: it would create ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def test_a_checkpoint_with_a_pickle_payload_is_refused_unrun(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1, "config": _Payload(marker)}, path)
    with pytest.raises(ValueError, match="holds Python objects besides tensors.*could run any code"):
        load_checkpoint(path)
    assert not marker.exists()  # weights_only=True: the object was never unpickled


def test_resolve_device():
    assert resolve_device(None) == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu-please")
    if torch.cuda.is_available():
        assert resolve_device("cuda") == "cuda"
        with pytest.raises(ValueError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match="CUDA is not available here.*--device cpu"):
            resolve_device("cuda")
