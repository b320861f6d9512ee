"""The Fashion-MTL campaign (examples/paper/fashion_mtl_campaign.py) and the paper scripts on
Fashion-MTL files, on a small Fashion-MNIST written here in the real idx format.

The fixture has Fashion-MTL's 1,000 training images per class (its default draw) and 3
test images per class; the runs use a few hundred samples for one epoch. The campaign
runs its figure scripts as processes, so its smoke test takes a few seconds per step;
the test that kills a campaign mid-run and resumes it is marked slow.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routing_env.experiments import RunInUseError, parse_args

from .example_scripts import load_paper

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "examples" / "paper"
CAMPAIGN = "examples/paper/fashion_mtl_campaign.py"
TINY = {"max_train_samples": 200, "max_test_samples": 50, "epochs": 1, "progress": False}


@pytest.fixture(scope="module", autouse=True)
def _paper_on_path() -> Iterator[None]:
    sys.path.insert(0, str(PAPER))  # the scripts import paper_runs from their own folder
    yield
    sys.path.remove(str(PAPER))


load = load_paper


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory) -> Path:
    """``root/FashionMNIST/raw/``: 1,000 training and 3 test images per class; the class is
    drawn faintly into each image so that the tasks can be learned a little."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, per_class in (("train", 1000), ("t10k", 3)):
        labels = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), per_class))
        images = rng.integers(0, 128, (len(labels), 28, 28), dtype=np.uint8)
        for c in range(10):  # a bright band at a class-specific row
            images[labels == c, 2 * c + 4, :] = 255
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


# ---------------------------------------------------------------- the plan (no process started)
def test_the_plan_runs_every_model_once_per_setting_and_seed_seed_major(tmp_path):
    campaign, runs = load("fashion_mtl_campaign"), load("paper_runs")
    args = campaign.Args(epochs=20, output_dir=str(tmp_path), data_root="data")
    steps = campaign.run_steps(args)
    models = list(dict.fromkeys(runs.FIG4.models + runs.FIG5.models + runs.FIG8.models))
    assert len(models) == 11 and len(steps) == 11 * 2 * 3
    assert [(s.seed, s.setting, s.model) for s in steps] == [
        (seed, setting, m) for seed in range(3) for setting in ("defaults", "paper") for m in models
    ]
    assert len({s.run_dir for s in steps}) == len(steps)  # a model shared by figures is run once
    for (
        step
    ) in steps:  # each command is one the figure script takes, and names the run folder the plan checks
        module = load(Path(step.script).stem)
        parsed = parse_args(module.Args, list(step.argv))
        assert (parsed.dataset, parsed.epochs, parsed.seed_list(), parsed.models) == (
            "fashion-mtl",
            20,
            [step.seed],  # the step trains its seed alone, not seeds 0..k
            step.model,
        )
        assert (parsed.setting, parsed.data_root, parsed.progress, parsed.torch_threads) == (
            step.setting,
            "data",
            False,
            1,
        )
        assert step.run_dir == Path(parsed.runs_dir) / runs.run_name(
            runs.MODELS[step.model], parsed, step.seed
        )
        assert Path(parsed.output_dir).is_relative_to(tmp_path / "units")  # not the figures' folder
    # every step has its own scratch folder and key: the seeds of a model can run side by side
    assert len({s.argv[s.argv.index("--output-dir") + 1] for s in steps}) == len(steps)
    assert len({s.key for s in steps}) == len(steps)
    assert {s.script for s in steps if s.model == "soft-mixture-all-fc"} == {
        "examples/paper/fig05_architectures.py"
    }
    assert steps[11].run_dir.name.endswith("-paper-h48-plr-blocks-v0.1-s0")  # paper/routing-all-fc/seed 0
    # nothing done yet: no figure can be written
    assert all(step is None for step, _ in campaign.figure_steps(args))


def test_bad_campaign_options_are_refused():
    campaign = load("fashion_mtl_campaign")
    for options, message in [
        ({"settings": "defaults,adam"}, "--settings"),
        ({"figures": "4,9"}, "unknown figure"),
        ({"figures": "6"}, "Fig. 8 on fashion-mtl"),
        ({"models": "routing-all-fc,nope"}, "--models"),
        ({"figures": "8", "models": "qlearning-per-task-table"}, "--models"),
        ({"jobs": 0}, "--jobs"),
        ({"budget_hours": 0}, "--budget-hours"),
        ({"epochs": 0}, "--epochs"),
    ]:
        with pytest.raises(ValueError, match=message):
            campaign.Args(**options)


def test_the_time_estimate_uses_the_epoch_times_measured_so_far(tmp_path):
    campaign = load("fashion_mtl_campaign")
    args = campaign.Args(epochs=10, seeds=2, figures="8", settings="defaults", output_dir=str(tmp_path))
    steps = campaign.run_steps(args)
    assert "time unknown" in campaign.estimate(args, steps)
    # seed 0 of routing-all-fc ran 4 epochs of 30 s; a baseline 10 of 6 s (complete)
    for model, epochs, seconds in (("routing-all-fc", 4, 30.0), ("task-specific-1-fc", 10, 6.0)):
        run_dir = next(s.run_dir for s in steps if s.model == model and s.seed == 0)
        run_dir.mkdir(parents=True)
        lines = ["epoch,epoch_time_s"] + [f"{e},{seconds}" for e in range(1, epochs + 1)]
        (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    # left: routing-all-fc 6 + 10 epochs at 30 s; task-specific-1-fc 10 at 6 s; the 3 other
    # baselines 20 epochs each at the baselines' mean, 6 s
    expected = 16 * 30 + 10 * 6 + 3 * 20 * 6
    assert (
        campaign.estimate(args, steps)
        == f"{16 + 10 + 60} epochs left to train, about {expected / 60:.0f} min"
    )
    jobs = campaign.Args(**{**vars(args), "jobs": 2})
    assert f"about {expected / 120:.0f} min with 2 jobs" in campaign.estimate(jobs, steps)


# ---------------------------------------------------------------- the campaign as a command
def campaign_command(tmp_path: Path, fashion_root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        CAMPAIGN,
        "--data-root",
        str(fashion_root),
        "--epochs",
        "1",
        "--figures",
        "8",
        "--models",
        "routing-all-fc,task-specific-1-fc",
        "--max-train-samples",
        "200",
        "--max-test-samples",
        "50",
        "--output-dir",
        str(tmp_path / "campaign"),
        *extra,
    ]


def test_campaign_smoke_on_fashion_mtl_files(tmp_path, fashion_root):
    """Two runs in parallel, then the figure; a rerun finds every run done."""
    argv = campaign_command(tmp_path, fashion_root, "--seeds", "1", "--settings", "paper", "--jobs", "2")
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "campaign"
    log = (out / "campaign.log").read_text()
    assert log == done.stdout  # the log holds what was printed
    assert log.count(" start paper/") == 2 and log.count(" done paper/") == 2
    assert "estimated: 2 epochs left to train" in log and "complete in" in log
    stem = "fig08_routing_vs_baselines_fashion-mtl_paper-setting"
    rows = read_csv(out / f"{stem}.csv")
    assert {(r["model"], r["seed"], r["epoch"]) for r in rows} == {
        ("routing-all-fc", "0", "1"),
        ("task-specific-1-fc", "0", "1"),
    }
    assert {r["dataset"] for r in rows} == {"fashion-mtl"} and {r["train_samples"] for r in rows} == {"200"}
    stats = read_csv(out / f"{stem}_stats.csv")
    assert {r["hidden_width"] for r in stats} == {"48"} and {r["policy_lr_schedule"] for r in stats} == {
        "blocks"
    }
    assert any(r["statistic"] == "paired_difference" for r in stats)
    meta = json.loads((out / f"{stem}.json").read_text())
    assert meta["complete"] and meta["hidden_width"] == 48
    assert meta["command"].startswith(
        "python examples/paper/fig06_08_routing_vs_baselines.py --dataset fashion-mtl"
    )
    assert (out / f"{stem}.png").stat().st_size > 5_000
    assert sorted(p.name for p in (out / "logs").iterdir()) == [
        "paper_routing-all-fc_seed0.log",
        "paper_task-specific-1-fc_seed0.log",
    ]
    # the plan of a second campaign: every run done, nothing to train
    campaign = load("fashion_mtl_campaign")
    args = parse_args(campaign.Args, argv[2:])
    assert all(campaign.remaining_epochs(args, s) == 0 for s in campaign.run_steps(args))
    assert campaign.estimate(args, campaign.run_steps(args)) == "no epoch left to train"
    # Table 2 on the campaign's folder: the Fashion-MTL rows and the paired difference
    table = load("table2").main(load("table2").Args(results_dir=str(out)))
    assert (
        "| 8 | routing-all-fc | ours | Fashion-MTL (substitute), paper setting, fc 48, WPL lr blocks" in table
    )
    assert (
        "| 8 | Fashion-MTL (substitute), paper setting, fc 48, WPL lr blocks schedule | task-specific-1-fc |"
        in table
    )
    # next to the committed MNIST-MTL results: Fashion-MTL's rows follow MNIST-MTL's
    both = load("table2").main(load("table2").Args(results_dir=f"{ROOT / 'docs' / 'results'},{out}"))
    ours = [
        line.split(" | ")[3] for line in both.splitlines() if line.startswith("| 8 | routing-all-fc | ours")
    ]
    first = next(i for i, label in enumerate(ours) if label.startswith("Fashion-MTL"))
    assert ours[first - 1].startswith("MNIST-MTL, paper setting")
    assert all(label.startswith("Fashion-MTL") for label in ours[first:])
    assert any("paper setting, fc 48" in label for label in ours[first:])  # this campaign's row
    # a second campaign in the same folder is refused while one runs
    lock = load("paper_runs").RunLock(out).acquire()
    try:
        with pytest.raises(RunInUseError):
            campaign.main(args)
    finally:
        lock.release()
    check_export(campaign, args, tmp_path)


def check_export(campaign: Any, args: Any, tmp_path: Path) -> None:
    """--export-runs keeps a complete run's text files and a run cut short whole; a fresh
    runs folder restored from the copy finds the same plan."""
    kept = tmp_path / "kept"
    names = sorted(s.run_dir.name for s in campaign.run_steps(args))
    (kept / names[0]).mkdir(parents=True)
    (kept / names[0] / "checkpoint.pt").write_text("stale")  # a file an export wrote, now superseded, goes
    (kept / names[0] / "notes.txt").write_text("mine")  # a file it did not write stays
    assert campaign.main(campaign.Args(**{**vars(args), "dry_run": True, "export_runs": str(kept)})) == 0
    assert sorted(p.name for p in kept.iterdir()) == names
    assert (kept / names[0] / "notes.txt").read_text() == "mine"
    (kept / names[0] / "notes.txt").unlink()
    for name in names:
        assert sorted(p.name for p in (kept / name).iterdir()) == [
            "config.json",
            "metrics.csv",
            "summary.json",
        ]
        assert (kept / name / "metrics.csv").read_bytes() == (
            args.runs_path() / name / "metrics.csv"
        ).read_bytes()
    # with one more epoch asked, the same runs are cut short: kept whole, checkpoint included
    longer = campaign.Args(**{**vars(args), "epochs": 2, "dry_run": True, "export_runs": str(kept)})
    assert campaign.main(longer) == 0
    for name in names:
        assert sorted(p.name for p in (kept / "unfinished" / name).iterdir()) == [
            "checkpoint.pt",
            "config.json",
            "metrics.csv",
        ]
    restored = tmp_path / "restored"
    for folder in (kept / "unfinished").iterdir():
        shutil.copytree(folder, restored / folder.name)
    moved = campaign.Args(**{**vars(longer), "runs_dir": str(restored), "export_runs": None})
    assert [campaign.remaining_epochs(moved, s) for s in campaign.run_steps(moved)] == [1] * len(names)
    # a run stopped between its metrics row and its checkpoint is kept as it resumes
    late = tmp_path / "late"
    shutil.copytree(args.runs_path(), late)
    metrics = late / names[0] / "metrics.csv"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join([*lines, lines[-1].replace("1", "2", 1)]))  # epoch 2, no checkpoint
    assert len(read_csv(metrics)) == 2
    three = campaign.Args(
        **{
            **vars(args),
            "epochs": 3,
            "runs_dir": str(late),
            "dry_run": True,
            "export_runs": str(tmp_path / "k3"),
        }
    )
    assert campaign.main(three) == 0
    assert (tmp_path / "k3" / "unfinished" / names[0] / "metrics.csv").read_text() == "".join(lines)
    # once complete again (here: asked for 1 epoch), a run leaves unfinished/
    assert campaign.main(campaign.Args(**{**vars(args), "dry_run": True, "export_runs": str(kept)})) == 0
    assert sorted(p.name for p in kept.iterdir()) == sorted([*names, "unfinished"])
    assert not list((kept / "unfinished").iterdir())
    # an export never deletes a source file: pointed at the runs folder, it is refused
    before = sorted(str(p) for p in args.runs_path().rglob("*"))
    onto = campaign.Args(**{**vars(args), "dry_run": True, "export_runs": str(args.runs_path())})
    with pytest.raises(FileExistsError, match="would copy .* onto itself"):
        campaign.main(onto)
    assert sorted(str(p) for p in args.runs_path().rglob("*")) == before
    # nor replaces a longer run kept there by a shorter one
    longer_kept = kept / names[0] / "metrics.csv"
    rows = longer_kept.read_text().splitlines(keepends=True)
    longer_kept.write_text("".join([*rows, rows[-1].replace("1", "2", 1)]))
    with pytest.raises(FileExistsError, match=r"holds 2 epochs, more than the 1 of .*not replaced"):
        campaign.main(campaign.Args(**{**vars(args), "dry_run": True, "export_runs": str(kept)}))
    assert len(read_csv(longer_kept)) == 2


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_the_seeds_of_one_model_run_side_by_side(tmp_path, fashion_root):
    """Seed 1 does not wait for seed 0: both start before either is done, each trains its seed alone."""
    argv = campaign_command(tmp_path, fashion_root, "--seeds", "2", "--settings", "paper", "--jobs", "2")
    argv[argv.index("--models") + 1] = "task-specific-1-fc"
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "campaign"
    events = re.findall(
        r"^\S+ \S+ (start|done) (paper/\S+/seed \d)", (out / "campaign.log").read_text(), re.M
    )
    assert events[:2] == [
        ("start", "paper/task-specific-1-fc/seed 0"),
        ("start", "paper/task-specific-1-fc/seed 1"),
    ]
    assert sorted(events[2:]) == [
        ("done", "paper/task-specific-1-fc/seed 0"),
        ("done", "paper/task-specific-1-fc/seed 1"),
    ]
    for seed in (0, 1):  # a step's own log: it trained its seed and nothing else
        log = (out / "logs" / f"paper_task-specific-1-fc_seed{seed}.log").read_text()
        assert f"task-specific-1-fc seed {seed}:" in log and f"seed {1 - seed}:" not in log
    rows = read_csv(out / "fig08_routing_vs_baselines_fashion-mtl_paper-setting.csv")
    assert {(r["model"], r["seed"]) for r in rows} == {
        ("task-specific-1-fc", "0"),
        ("task-specific-1-fc", "1"),
    }


def test_first_seed_trains_and_shows_only_the_later_seeds(tmp_path, fashion_root):
    runs = load("paper_runs")
    args = runs.PaperArgs(seeds=3, first_seed=2)
    assert args.seed_list() == [2]
    for bad in (3, -1):
        with pytest.raises(ValueError, match="--first-seed"):
            runs.PaperArgs(seeds=3, first_seed=bad)


def test_dry_run_lists_the_plan_and_runs_nothing(tmp_path, fashion_root, capsys):
    campaign = load("fashion_mtl_campaign")
    argv = campaign_command(tmp_path, fashion_root, "--seeds", "2", "--dry-run")
    assert campaign.main(parse_args(campaign.Args, argv[2:])) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len([line for line in printed if line.startswith("[0/1 epochs]")]) == 2 * 2 * 2
    assert printed[-1] == "estimated: 8 epochs left to train; time unknown until a first epoch is measured"
    assert not (tmp_path / "campaign").exists()


@pytest.mark.slow  # a minute of subprocess runs; run with -m slow
def test_fig08_and_table2_on_fashion_mtl_with_three_seeds(tmp_path, fashion_root):
    """Mean ± std over 3 seeds in Table 2, and a paired difference with its interval."""
    fig08, table2 = load("fig06_08_routing_vs_baselines"), load("table2")
    common = dict(TINY, dataset="fashion-mtl", data_root=str(fashion_root), output_dir=str(tmp_path))
    paths = fig08.main(
        fig08.Args(
            **common, seeds=3, runs_dir=str(tmp_path / "runs"), models="routing-all-fc,task-specific-1-fc"
        )
    )
    assert paths["csv"].name == "fig08_routing_vs_baselines_fashion-mtl.csv"
    meta = json.loads(paths["json"].read_text())
    assert meta["test_samples"] == 50 and meta["hidden_width"] == 128
    table = table2.main(table2.Args(results_dir=str(tmp_path)))
    ours = next(
        line for line in table.splitlines() if line.startswith("| 8 | routing-all-fc | ours | Fashion")
    )
    acc = [100 * float(r["test_accuracy"]) for r in read_csv(paths["csv"]) if r["model"] == "routing-all-fc"]
    assert f"| {np.mean(acc):.2f} ± {np.std(acc, ddof=1):.2f} |" in ours and "| 1 x 3 |" in ours
    paired = next(
        line for line in table.splitlines() if line.startswith("| 8 | Fashion-MTL (substitute), fc 128 |")
    )
    cells = [c.strip() for c in paired.strip("|").split("|")]
    assert cells[2:5] == ["task-specific-1-fc", "1", "3"] and cells[7].startswith("[")
    assert cells[8] in (
        "routing-all-fc ahead",
        "routing-all-fc behind",
        "no difference shown: the 95% interval spans 0",
    )


@pytest.mark.slow
def test_a_campaign_killed_mid_run_stops_its_steps_and_resumes(tmp_path, fashion_root):
    kept = tmp_path / "kept"
    argv = campaign_command(
        tmp_path, fashion_root, "--seeds", "1", "--settings", "defaults", "--export-runs", str(kept)
    )
    argv[argv.index("--epochs") + 1] = "3"
    argv[argv.index("--max-train-samples") + 1] = "3000"
    out = tmp_path / "campaign"
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until a first epoch and its checkpoint are written
        metrics = list((out / "runs").glob("*/metrics.csv")) if (out / "runs").exists() else []
        if any(len(read_csv(m)) >= 1 and (m.parent / "checkpoint.pt").is_file() for m in metrics):
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "SIGTERM: stopping 1 running step(s)" in output
    pid = int(output.split("(pid ")[1].split(")")[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the figure script was stopped with the campaign
    # what --export-runs kept: the run cut short, whole, as a fresh machine needs it
    (cut,) = (kept / "unfinished").iterdir()
    assert sorted(p.name for p in cut.iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv"]
    assert "kept in" in output and "1 cut short" in output
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming after epoch" in done.stdout and "complete in" in done.stdout
    for m in (out / "runs").glob("*/metrics.csv"):
        assert [r["epoch"] for r in read_csv(m)] == ["1", "2", "3"]
    assert not list((kept / "unfinished").iterdir())
    assert sorted(p.name for p in kept.iterdir() if p.name != "unfinished") == sorted(
        p.parent.name for p in (out / "runs").glob("*/metrics.csv")
    )


def test_an_exhausted_budget_launches_nothing_and_says_how_to_go_on(tmp_path, fashion_root, capsys):
    campaign = load("fashion_mtl_campaign")
    argv = campaign_command(tmp_path, fashion_root, "--seeds", "1", "--budget-hours", "1e-9")
    assert campaign.main(parse_args(campaign.Args, argv[2:])) == 0
    log = (tmp_path / "campaign" / "campaign.log").read_text()
    assert "budget of 1e-09 h reached: 4 runs not started (run the same command again to go on)" in log
    assert " start " not in log and "Fig. 8: not written, no complete run yet" in log
    assert "paused after" in log and "4 runs not complete" in log
    assert not (tmp_path / "campaign" / "runs").exists()


# ---------------------------------------------------------------- benchmarks/device/run.sh
def _device_script(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "out"
    environ = {
        **os.environ,
        "OUT": str(out),
        "WORK_DIR": str(tmp_path / "work"),
        "DEVICE": "cpu",
        "INSTALL_WHEELS": "0",
        "PYTHON": sys.executable,
        **env,
    }
    done = subprocess.run(
        ["bash", "benchmarks/device/run.sh"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=300,
    )
    return done, out


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_the_device_script_runs_the_campaign_and_brings_back_its_runs(tmp_path, fashion_root):
    """The GPU session's script, tried on the CPU: the campaign's phase, then what comes back."""
    done, out = _device_script(
        tmp_path,
        PHASES="fashion",
        FASHION_EPOCHS="1",
        FASHION_JOBS="2",
        FASHION_MODELS="task-specific-1-fc",
        FASHION_ARGS=f"--data-root {fashion_root} --seeds 2 --max-train-samples 200 --max-test-samples 50",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # at most 8 files come back from the device machine, none in a subfolder
    assert sorted(p.name for p in out.iterdir()) == [
        "device.txt",
        "fashion.tar.gz",
        "logs.tar.gz",
        "summary.txt",
    ]
    summary = (out / "summary.txt").read_text()
    assert "fashion: rc=0" in summary and summary.rstrip().endswith("done")
    assert "task-specific-1-fc-fashion-mtl-d0-n200-t50-paper-h48-v0.1-s1: 1 epochs" in summary
    with tarfile.open(out / "fashion.tar.gz") as tar:
        names = tar.getnames()
    for seed in (0, 1):  # each run's folder, checkpoint included (resumable on any machine)
        run = f"fashion/runs/task-specific-1-fc-fashion-mtl-d0-n200-t50-paper-h48-v0.1-s{seed}"
        assert {f"{run}/metrics.csv", f"{run}/checkpoint.pt", f"{run}/config.json"} <= set(names)
    assert "fashion/fig08_routing_vs_baselines_fashion-mtl_paper-setting.csv" in names
    with tarfile.open(out / "logs.tar.gz") as tar:
        assert tar.getnames() == ["logs", "logs/fashion.log"]


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_the_device_script_keeps_to_its_budget(tmp_path):
    """With no time left for any phase, every phase is skipped and the script still ends cleanly."""
    done, out = _device_script(tmp_path, BUDGET_S="20")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (out / "summary.txt").read_text()
    for name in ("tests", "batched", "epoch", "fashion"):
        assert f"{name}: skipped, the budget is spent" in summary
    assert summary.rstrip().endswith("done")
