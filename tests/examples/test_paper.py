"""The paper-figure scripts of examples/paper/ (Figs. 4-8, Table 2) on tiny budgets.

Each script runs end to end on a few hundred samples for one epoch: digits-MTL for
Figs. 4, 5 and 8, a small CIFAR-100 file set for Fig. 6 (written here in the real
format, as tests/datasets does) and a small mini-ImageNet one for Fig. 7. The checks
are on what a user gets: the CSV's columns and rows, the PNG, the command in the JSON,
run folders reused across figures, and the Table 2 assembled from them. The routers
train on the batched path by default and through the AEC env with ``--aec``; a run
folder keeps the path it was trained with (one written before ``--aec``: AEC). The
figures run ``train_wpl.py`` / ``train_baseline.py`` as commands: a figure's rows equal
those of the training script run by hand, and no run folder is deleted without
``--overwrite``.
"""

from __future__ import annotations

import csv
import json
import pickle
import shlex
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from routing_env.experiments import DatasetName, load_checkpoint, parse_args, parse_per_class, save_checkpoint

from .example_scripts import load_paper
from .script_flags import undocumented_fields

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "examples" / "paper"
SCRIPTS = ["fig04_rl_algorithms", "fig05_architectures", "fig06_08_routing_vs_baselines", "table2"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {"max_train_samples": 200, "max_test_samples": 50, "epochs": 1, "seeds": 1, "progress": False}


@pytest.fixture(scope="module", autouse=True)
def _paper_on_path() -> Iterator[None]:
    # the scripts import their shared module (paper_runs) from their own folder
    sys.path.insert(0, str(PAPER))
    yield
    sys.path.remove(str(PAPER))


load = load_paper


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def check_outputs(paths: dict[str, Path], *, figure: str, models: list[str], epochs: int, seeds: int) -> list:
    """The CSV has one row per model, seed and epoch with accuracies in [0, 1]; PNG and JSON exist."""
    runs = load("paper_runs")
    rows = read_csv(paths["csv"])
    assert list(rows[0]) == runs.CSV_COLUMNS
    assert sorted((r["model"], int(r["seed"]), int(r["epoch"])) for r in rows) == sorted(
        (m, s, e) for m in models for s in range(seeds) for e in range(1, epochs + 1)
    )
    assert {r["figure"] for r in rows} == {figure}
    for row in rows:
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
        assert float(row["wall_time_s"]) > 0
    assert paths["png"].read_bytes()[:8] == PNG_MAGIC and paths["png"].stat().st_size > 5_000
    meta = json.loads(paths["json"].read_text())
    assert meta["complete"] and meta["epochs"] == epochs and meta["seeds"] == list(range(seeds))
    assert meta["command"].startswith("python examples/paper/")
    return rows


def run_configs(paths: dict[str, Path]) -> dict[str, dict]:
    """The ``config.json`` of every run of a figure, by model."""
    meta = json.loads(paths["json"].read_text())
    return {
        r["model"]: json.loads((Path(r["run_dir"]) / "config.json").read_text())["config"]
        for r in meta["runs"]
    }


def routing_paths(paths: dict[str, Path]) -> dict[str, str | None]:
    """The routing path the figure's JSON records for each run, by model."""
    return {r["model"]: r["routing_path"] for r in json.loads(paths["json"].read_text())["runs"]}


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


def without_times(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in rows]


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_option_is_documented(name):
    module = load(name)
    assert module.__doc__ and "python examples/paper/" in module.__doc__  # the command to run
    assert undocumented_fields(module.Args) == []


@pytest.mark.slow  # minutes of subprocess runs; run with -m slow
def test_fig04_and_fig05_share_runs_and_table2_assembles_them(tmp_path, capsys):
    fig04, fig05, fig08, table2 = (
        load(n)
        for n in ("fig04_rl_algorithms", "fig05_architectures", "fig06_08_routing_vs_baselines", "table2")
    )
    runs = load("paper_runs")
    common = dict(TINY, dataset="digits-mtl", output_dir=str(tmp_path), runs_dir=str(tmp_path / "runs"))
    paths4 = fig04.main(fig04.Args(**common))
    check_outputs(paths4, figure="4", models=runs.FIG4.models, epochs=1, seeds=1)
    assert paths4["csv"].name == "fig04_rl_algorithms_digits-mtl.csv"
    # every router model (WPL and the "agents" runner) trained on the batched path
    assert {m: c["aec"] for m, c in run_configs(paths4).items()} == dict.fromkeys(runs.FIG4.models, False)
    assert routing_paths(paths4) == dict.fromkeys(runs.FIG4.models, "batched")

    shared = tmp_path / "runs" / "routing-all-fc-digits-mtl-d0-n200-t50-v0.1-s0" / "metrics.csv"
    before = shared.stat().st_mtime_ns
    paths5 = fig05.main(fig05.Args(**common))
    rows5 = check_outputs(paths5, figure="5", models=runs.FIG5.models, epochs=1, seeds=1)
    assert shared.stat().st_mtime_ns == before  # routing-all-fc was reused, not retrained
    assert "reusing" in capsys.readouterr().err
    rows4 = read_csv(paths4["csv"])
    acc = {r["model"]: r["test_accuracy"] for r in rows4}
    assert {r["model"]: r["test_accuracy"] for r in rows5}["routing-all-fc"] == acc["routing-all-fc"]

    # a run folder trained with other settings is not silently reused
    reinforce = tmp_path / "runs" / "reinforce-per-task-approx-digits-mtl-d0-n200-t50-v0.1-s0"
    before = {p.name: p.read_bytes() for p in reinforce.iterdir()}
    with pytest.raises(ValueError, match=r"other settings: epsilon=0.1 \(now 0.5\).*--overwrite"):
        fig04.main(fig04.Args(**dict(common, epsilon=0.5)))
    assert {p.name: p.read_bytes() for p in reinforce.iterdir()} == before  # nothing deleted

    # Fig. 8's digits-MTL substitute, 2 epochs: routing-all-fc resumes from its 1-epoch checkpoint
    paths8 = fig08.main(fig08.Args(**dict(common, epochs=2, models="routing-all-fc,cross-stitch-all-fc")))
    rows8 = check_outputs(
        paths8, figure="8", models=["routing-all-fc", "cross-stitch-all-fc"], epochs=2, seeds=1
    )
    first = next(r for r in rows8 if r["model"] == "routing-all-fc" and r["epoch"] == "1")
    assert first["test_accuracy"] == acc["routing-all-fc"]
    meta = json.loads(paths8["json"].read_text())
    commands = {r["model"]: r["equivalent_command"] for r in meta["runs"]}
    assert commands["cross-stitch-all-fc"] == (
        "python examples/train_baseline.py --model cross-stitch-all-fc --dataset digits-mtl "
        "--max-train-samples 200 --max-test-samples 50 --validation-fraction 0.1 --hidden-width 128 --seed 0 "
        "--epochs 2"
    )
    assert commands["routing-all-fc"] == (
        "python examples/train_wpl.py --dataset digits-mtl --max-train-samples 200 --max-test-samples 50 "
        "--validation-fraction 0.1 --no-aec --hidden-width 128 --policy-lr-schedule constant "
        "--wpl-weighting paper --seed 0 --epochs 2"
    )

    out = tmp_path / "results.md"
    out.write_text("# Results\n\n<!-- table2:begin -->\nold\n<!-- table2:end -->\n\nprose after\n")
    table = table2.main(table2.Args(results_dir=str(tmp_path), output=str(out)))
    text = out.read_text()
    assert text.startswith("# Results") and text.endswith("prose after\n") and "old" not in text
    assert table in text
    # the paper's Fig. 8 routing-all-fc row, and ours on the digits-MTL substitute at epoch 1
    assert "| 8 | routing-all-fc | paper | MNIST-MTL, full | 90 | 90 | 98 | 99 | 99 | 99 |" in table
    ours = next(
        line for line in table.splitlines() if line.startswith("| 8 | routing-all-fc | ours | digits")
    )
    assert f"| {100 * float(acc['routing-all-fc']):.2f} |" in ours and "| 2 x 1 |" in ours
    assert "| 6 | cross-stitch-all-fc | ours | CIFAR-MTL | not run |" in table
    assert f"`{json.loads(paths4['json'].read_text())['command']}`" in table


@pytest.mark.slow  # minutes of subprocess runs; run with -m slow
def test_paper_setting_trains_every_model_as_the_paper_did(tmp_path):
    fig08, table2, runs = load("fig06_08_routing_vs_baselines"), load("table2"), load("paper_runs")
    common = dict(TINY, dataset="digits-mtl", output_dir=str(tmp_path), runs_dir=str(tmp_path / "runs"))
    models = "routing-all-fc,cross-stitch-all-fc"
    defaults = fig08.main(fig08.Args(**common, models=models))
    paper = fig08.main(fig08.Args(**common, models=models, setting="paper"))
    assert paper["csv"].name == "fig08_routing_vs_baselines_digits-mtl_paper-setting.csv"
    assert defaults["csv"].name == "fig08_routing_vs_baselines_digits-mtl.csv"  # both kept
    check_outputs(paper, figure="8", models=models.split(","), epochs=1, seeds=1)

    meta = json.loads(paper["json"].read_text())
    assert "--setting paper" in meta["command"] and meta["args"]["setting"] == "paper"
    configs = {
        r["model"]: json.loads((Path(r["run_dir"]) / "config.json").read_text())["config"]
        for r in meta["runs"]
    }
    assert routing_paths(paper) == {"routing-all-fc": "batched", "cross-stitch-all-fc": None}
    assert "aec" not in configs["cross-stitch-all-fc"]  # a baseline has no routing path
    for model, config in configs.items():  # SGD 1e-2, divided by 10 every 20 epochs; fc 48 (appendix 7.2)
        assert (config["optimizer"], config["lr"], config["lr_decay_every"]) == ("sgd", 1e-2, 20), model
        assert config["hidden_width"] == 48, model
    # the width and the WPL schedule are in the run folders' names (runs of other settings never share one)
    names = {m: Path(c["output_dir"], c["run_name"]).name for m, c in configs.items()}
    assert names["cross-stitch-all-fc"].endswith("-paper-h48-v0.1-s0")
    assert names["routing-all-fc"].endswith("-paper-h48-plr-blocks-v0.1-s0")
    # WPL's policy learning rate follows the blocks' schedule in the paper's setting
    assert configs["routing-all-fc"]["policy_lr_schedule"] == "blocks"
    assert (meta["hidden_width"], meta["policy_lr_schedule"]) == (48, "blocks")
    # digits-MTL stands in for MNIST-MTL, so it gets MNIST-MTL's rho
    assert configs["routing-all-fc"]["rho"] == runs.PAPER_RHO["mnist-mtl"] == 0.3
    commands = {r["model"]: r["equivalent_command"] for r in meta["runs"]}
    assert (
        "--hidden-width 48 --optimizer sgd --lr 0.01 --lr-decay-every 20" in commands["cross-stitch-all-fc"]
    )
    assert "--policy-lr-schedule" not in commands["cross-stitch-all-fc"]
    assert "--rho" not in commands["cross-stitch-all-fc"]
    assert (
        "--hidden-width 48 --policy-lr-schedule blocks --wpl-weighting paper --optimizer sgd --lr 0.01 "
        "--lr-decay-every 20 --lr-decay-factor 0.1 --rho 0.3" in commands["routing-all-fc"]
    )

    table = table2.main(table2.Args(results_dir=str(tmp_path)))
    rows = [line for line in table.splitlines() if line.startswith("| 8 | routing-all-fc | ours | digits")]
    assert (
        len(rows) == 2
        and "paper setting" not in rows[0]
        and "digits-MTL (substitute), paper setting" in rows[1]
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("aec", [False, True], ids=["batched", "aec"])
def test_every_runner_trains_on_cuda(tmp_path, aec):
    fig04, fig08 = load("fig04_rl_algorithms"), load("fig06_08_routing_vs_baselines")
    common = dict(
        TINY,
        dataset="digits-mtl",
        output_dir=str(tmp_path),
        runs_dir=str(tmp_path / "runs"),
        device="cuda",
        aec=aec,
    )
    paths4 = fig04.main(fig04.Args(**common, models="routing-all-fc,qlearning-per-task-approx"))
    check_outputs(
        paths4, figure="4", models=["routing-all-fc", "qlearning-per-task-approx"], epochs=1, seeds=1
    )
    paths8 = fig08.main(fig08.Args(**common, models="cross-stitch-all-fc"))
    check_outputs(paths8, figure="8", models=["cross-stitch-all-fc"], epochs=1, seeds=1)
    for run in (
        json.loads(paths4["json"].read_text())["runs"] + json.loads(paths8["json"].read_text())["runs"]
    ):
        config = json.loads((Path(run["run_dir"]) / "config.json").read_text())["config"]
        assert config["device"] == "cuda", run["model"]
    assert routing_paths(paths4) == dict.fromkeys(
        ["routing-all-fc", "qlearning-per-task-approx"], ("aec" if aec else "batched")
    )


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_aec_flag_trains_the_routers_through_the_aec_env_and_runs_keep_their_path(tmp_path, capsys):
    fig04 = load("fig04_rl_algorithms")
    models = ["routing-all-fc", "reinforce-per-task-approx"]
    common = dict(
        TINY,
        dataset="digits-mtl",
        output_dir=str(tmp_path),
        runs_dir=str(tmp_path / "runs"),
        models=",".join(models),
    )
    aec = fig04.main(fig04.Args(**common, aec=True))
    check_outputs(aec, figure="4", models=models, epochs=1, seeds=1)
    assert {m: c["aec"] for m, c in run_configs(aec).items()} == dict.fromkeys(models, True)
    meta = json.loads(aec["json"].read_text())
    assert "--aec" in meta["command"] and meta["args"]["aec"] is True
    wpl_command = next(r["equivalent_command"] for r in meta["runs"] if r["model"] == "routing-all-fc")
    assert " --aec " in wpl_command
    rows = read_csv(aec["csv"])
    capsys.readouterr()
    # a REINFORCE run written before --aec existed has no "aec" in its config.json: an AEC run
    agents_dir = Path(next(r["run_dir"] for r in meta["runs"] if r["model"] == "reinforce-per-task-approx"))
    saved = json.loads((agents_dir / "config.json").read_text())
    del saved["config"]["aec"]
    (agents_dir / "config.json").write_text(json.dumps(saved))

    # the default (batched) command reuses the AEC runs as they are, and says which path trained them
    metrics = tmp_path / "runs" / "routing-all-fc-digits-mtl-d0-n200-t50-v0.1-s0" / "metrics.csv"
    before = metrics.stat().st_mtime_ns
    again = fig04.main(fig04.Args(**common))
    assert metrics.stat().st_mtime_ns == before
    assert "1 epochs, AEC path" in capsys.readouterr().err
    assert routing_paths(again) == dict.fromkeys(models, "aec")
    assert "--aec" not in json.loads(again["json"].read_text())["command"]
    again_meta = json.loads(again["json"].read_text())
    assert (
        next(r for r in again_meta["runs"] if r["model"] == "routing-all-fc")["equivalent_command"]
        == wpl_command
    )
    assert read_csv(again["csv"]) == rows


def drop_aec_option(run_dir: Path) -> None:
    """Make ``run_dir`` look written before ``--aec`` existed: no "aec" in its config or checkpoint."""
    path = run_dir / "config.json"
    saved = json.loads(path.read_text())
    del saved["config"]["aec"]
    path.write_text(json.dumps(saved))
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    del checkpoint["config"]["aec"]
    save_checkpoint(run_dir / "checkpoint.pt", checkpoint)


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
@pytest.mark.parametrize(
    ("trained", "asked", "legacy"),
    [
        pytest.param("aec", "batched", True, id="aec-folder-without-the-option", marks=pytest.mark.slow),
        pytest.param("batched", "aec", False, id="batched-folder-with-aec"),
    ],
)
def test_a_wpl_run_cut_short_resumes_in_its_own_path(tmp_path, trained, asked, legacy):
    fig08, runs = load("fig06_08_routing_vs_baselines"), load("paper_runs")
    model = runs.MODELS["routing-all-fc"]

    def figure(name: str, *, epochs: int, aec: bool) -> dict[str, Path]:
        options = dict(TINY, epochs=epochs, dataset="digits-mtl", models=model.name, aec=aec)
        return fig08.main(
            fig08.Args(**options, output_dir=str(tmp_path / name), runs_dir=str(tmp_path / name))
        )

    straight = figure("straight", epochs=2, aec=trained == "aec")
    # the same run killed after epoch 1; with legacy, written before --aec existed (no "aec" anywhere)
    first = figure("resumed", epochs=1, aec=trained == "aec")
    run_dir = Path(json.loads(first["json"].read_text())["runs"][0]["run_dir"])
    if legacy:
        drop_aec_option(run_dir)
    assert runs.routing_path(model, run_dir) == trained
    resumed = figure("resumed", epochs=2, aec=asked == "aec")

    assert routing_paths(resumed) == {model.name: trained}
    assert run_configs(resumed)[model.name]["aec"] is (trained == "aec")
    a = load_checkpoint(tmp_path / "straight" / run_dir.name / "checkpoint.pt")
    b = load_checkpoint(run_dir / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key in ("env", "agents"):  # bit-identical to the run that was never interrupted
        assert_same_state(a[key], b[key], key)
    assert without_times(read_csv(straight["csv"])) == without_times(read_csv(resumed["csv"]))


def test_unknown_model_is_rejected_before_any_run(tmp_path):
    fig04 = load("fig04_rl_algorithms")
    with pytest.raises(ValueError, match="not in Fig. 4"):
        fig04.main(
            fig04.Args(
                **TINY,
                dataset="digits-mtl",
                output_dir=str(tmp_path / "out"),
                runs_dir=str(tmp_path / "runs"),
                models="cross-stitch-all-fc",
            )
        )
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_a_run_folder_of_another_kind_is_refused_before_anything_is_written(tmp_path):
    runs = load("paper_runs")
    args = runs.PaperArgs(**TINY, dataset="digits-mtl", runs_dir=str(tmp_path / "runs"))
    model = runs.MODELS["routing-all-fc"]
    run_dir = tmp_path / "runs" / runs.run_name(model, args, 0)
    run_dir.mkdir(parents=True)
    # a train_baseline.py run (recorded before the kind was: told apart by its "model") in a WPL run's folder
    (run_dir / "config.json").write_text(json.dumps({"config": {"model": "task-specific-1-fc", "epochs": 1}}))
    (run_dir / "metrics.csv").write_text("epoch\n1\n")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(ValueError, match=r"is a baseline run.*examples/train_baseline.py --resume"):
        runs.run_model(model, args, 0)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def write_cifar100(root: Path, *, train_per_fine: int, test_per_fine: int, seed: int = 0) -> None:
    """A small ``root/cifar-100-python/`` in the real pickle format (5 fine classes per superclass)."""
    rng = np.random.default_rng(seed)
    fine_to_coarse = np.empty(100, dtype=np.int64)
    fine_to_coarse[rng.permutation(100)] = np.repeat(np.arange(20), 5)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, per_fine in (("train", train_per_fine), ("test", test_per_fine)):
        fine = rng.permutation(np.repeat(np.arange(100), per_fine))
        entry = {
            "filenames": [f"img_{i}.png" for i in range(len(fine))],
            "batch_label": f"{name} batch",
            "fine_labels": fine.tolist(),
            "coarse_labels": fine_to_coarse[fine].tolist(),
            "data": rng.integers(0, 256, size=(len(fine), 3072), dtype=np.uint8),
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)
    meta = {
        "fine_label_names": [f"fine_{i}" for i in range(100)],
        "coarse_label_names": [f"coarse_{i}" for i in range(20)],
    }
    with open(folder / "meta", "wb") as fh:
        pickle.dump(meta, fh)


@pytest.mark.slow  # over 25 s on 2 busy cores
def test_fig06_runs_on_cifar_mtl_files(tmp_path):
    fig = load("fig06_08_routing_vs_baselines")
    write_cifar100(tmp_path / "data", train_per_fine=2, test_per_fine=1)
    args = fig.Args(
        **dict(TINY, max_train_samples=None, max_test_samples=None),
        dataset="cifar-mtl",
        data_root=str(tmp_path / "data"),
        output_dir=str(tmp_path / "out"),
        runs_dir=str(tmp_path / "runs"),
    )
    paths = fig.main(args)
    rows = check_outputs(paths, figure="6", models=load("paper_runs").FIG6.models, epochs=1, seeds=1)
    assert paths["csv"].name == "fig06_routing_vs_baselines_cifar-mtl.csv"
    # 200 training samples, less a tenth set aside for validation
    assert {r["train_samples"] for r in rows} == {"180"} and {r["test_samples"] for r in rows} == {"100"}


def write_min_pickles(root: Path, *, num_classes: int = 50, per_class: int = 4) -> None:
    """A small ``root/mini-imagenet/`` in the pickle layout (84x84 images, classes over 3 splits)."""
    folder = root / "mini-imagenet"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"n{1000 + i:08d}" for i in range(num_classes)]
    for s, split in enumerate(("train", "val", "test")):
        members = names[s::3]
        data = rng.integers(0, 256, size=(len(members) * per_class, 84, 84, 3), dtype=np.uint8)
        class_dict = {n: list(range(k * per_class, (k + 1) * per_class)) for k, n in enumerate(members)}
        with open(folder / f"mini-imagenet-cache-{split}.pkl", "wb") as fh:
            pickle.dump({"image_data": data, "class_dict": class_dict}, fh)


@pytest.mark.slow  # minutes of subprocess runs; run with -m slow
def test_fig07_runs_on_min_mtl_files(tmp_path):
    fig = load("fig06_08_routing_vs_baselines")
    write_min_pickles(tmp_path / "data", per_class=4)
    args = fig.Args(
        **dict(TINY, max_train_samples=None, max_test_samples=None),
        dataset="min-mtl",
        data_root=str(tmp_path / "data"),
        min_per_class="3,1",
        output_dir=str(tmp_path / "out"),
        runs_dir=str(tmp_path / "runs"),
    )
    paths = fig.main(args)
    rows = check_outputs(paths, figure="7", models=load("paper_runs").FIG7.models, epochs=1, seeds=1)
    # 150 training images, less those set aside for validation (a tenth of each task, rounded per task)
    assert {r["train_samples"] for r in rows} == {"130"} and {r["test_samples"] for r in rows} == {"50"}


def test_min_per_class_is_parsed():
    assert parse_per_class("550,50") == (550, 50)
    for bad in ("550", "a,b", "0,50", "1,2,3"):
        with pytest.raises(ValueError, match="per class"):
            parse_per_class(bad)


def test_cli_runs_end_to_end(tmp_path):
    cmd = [
        sys.executable,
        "examples/paper/fig06_08_routing_vs_baselines.py",
        "--dataset=digits-mtl",
        "--models=task-specific-1-fc",
        "--epochs=1",
        "--seeds=1",
        "--max-train-samples=100",
        "--max-test-samples=20",
        f"--output-dir={tmp_path}",
        f"--runs-dir={tmp_path / 'runs'}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "task-specific-1-fc" in done.stdout  # the final accuracies
    assert "[1/1] task-specific-1-fc seed 0" in done.stderr  # progress goes to stderr
    assert (tmp_path / "fig08_routing_vs_baselines_digits-mtl.png").is_file()
    done = subprocess.run(
        [sys.executable, "examples/paper/table2.py", f"--results-dir={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "| 8 | task-specific-1-fc | ours | digits-MTL (substitute), fc 128, 100/20 |" in done.stdout


# ---------------------------------------------------------------- issue 14: settings, resumes, statistics
def test_every_dataset_has_a_label_a_rho_and_fashion_mtl_draws_fig8():
    runs, fig08 = load("paper_runs"), load("fig06_08_routing_vs_baselines")
    names = typing.get_args(DatasetName)
    assert set(runs.DATASET_LABELS) == set(names) and set(runs.PAPER_RHO) == set(names)
    assert runs.DATASET_LABELS["fashion-mtl"] == "Fashion-MTL"
    assert runs.PAPER_RHO["fashion-mtl"] == runs.PAPER_RHO["mnist-mtl"] == 0.3  # MNIST-MTL's construction
    assert fig08.FIGURE_OF_DATASET["fashion-mtl"] is runs.FIG8
    assert "soft-mixture-all-fc" in runs.FIG8.models
    for name in ("fig04_rl_algorithms", "fig05_architectures", "fig06_08_routing_vs_baselines"):
        assert parse_args(load(name).Args, ["--dataset", "fashion-mtl"]).dataset == "fashion-mtl"


def test_width_and_schedule_follow_the_setting_and_name_the_run_folders():
    runs = load("paper_runs")
    wpl, baseline, agents = (
        runs.MODELS[m] for m in ("routing-all-fc", "task-specific-1-fc", "reinforce-per-task-approx")
    )
    defaults = runs.PaperArgs(dataset="mnist-mtl")
    paper = runs.PaperArgs(dataset="mnist-mtl", setting="paper")
    assert (defaults.hidden_width(), defaults.wpl_policy_lr_schedule()) == (128, "constant")
    assert (paper.hidden_width(), paper.wpl_policy_lr_schedule()) == (48, "blocks")
    # the names of run folders written before --hidden existed (128, constant) are unchanged
    assert runs.run_name(wpl, defaults, 0) == "routing-all-fc-mnist-mtl-d0-nall-tall-v0.1-s0"
    assert (
        runs.run_name(wpl, paper, 0) == "routing-all-fc-mnist-mtl-d0-nall-tall-paper-h48-plr-blocks-v0.1-s0"
    )
    assert runs.run_name(baseline, paper, 0) == "task-specific-1-fc-mnist-mtl-d0-nall-tall-paper-h48-v0.1-s0"
    assert (
        runs.run_name(agents, paper, 0)
        == "reinforce-per-task-approx-mnist-mtl-d0-nall-tall-paper-h48-v0.1-s0"
    )
    old_paper = runs.PaperArgs(
        dataset="mnist-mtl", setting="paper", hidden=128, policy_lr_schedule="constant"
    )
    assert (
        runs.run_name(wpl, old_paper, 0) == "routing-all-fc-mnist-mtl-d0-nall-tall-paper-v0.1-s0"
    )  # as before
    wide = runs.PaperArgs(dataset="mnist-mtl", hidden=64, policy_lr_schedule="blocks")
    assert runs.run_name(wpl, wide, 1) == "routing-all-fc-mnist-mtl-d0-nall-tall-h64-plr-blocks-v0.1-s1"
    # outputs: a width or schedule other than the setting's is in the file name
    assert runs.output_stem(runs.FIG8, paper) == "fig08_routing_vs_baselines_mnist-mtl_paper-setting"
    assert runs.output_stem(runs.FIG8, old_paper) == (
        "fig08_routing_vs_baselines_mnist-mtl_paper-setting_h128_plr-constant"
    )
    assert runs.output_stem(runs.FIG8, wide) == "fig08_routing_vs_baselines_mnist-mtl_h64_plr-blocks"
    # every runner gets the width; only WPL gets the policy schedule
    assert runs.run_options(baseline, paper, 0)["hidden_width"] == 48
    assert "policy_lr_schedule" not in runs.run_options(agents, paper, 0)
    assert runs.run_options(wpl, paper, 0)["policy_lr_schedule"] == "blocks"
    assert runs.run_options(agents, paper, 0)["learner"] == "reinforce-mlp"
    assert " --hidden-width 48 --policy-lr-schedule blocks " in runs.equivalent_command(wpl, paper, 0)
    with pytest.raises(ValueError, match="--hidden"):
        runs.PaperArgs(hidden=0)


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_a_run_without_a_recorded_option_is_reused_only_for_that_options_old_default(tmp_path):
    """A config.json written before an option existed trained with the option's default."""
    fig08, runs = load("fig06_08_routing_vs_baselines"), load("paper_runs")
    common = dict(TINY, dataset="digits-mtl", output_dir=str(tmp_path), runs_dir=str(tmp_path / "runs"))
    model = runs.MODELS["routing-all-fc"]
    args = fig08.Args(**common, models=model.name)
    run_dir = Path(json.loads(fig08.main(args)["json"].read_text())["runs"][0]["run_dir"])
    saved = json.loads((run_dir / "config.json").read_text())
    del saved["config"]["policy_lr_schedule"]  # written before --policy-lr-schedule existed
    (run_dir / "config.json").write_text(json.dumps(saved))
    assert runs.reuse_problem(model, args, 0, run_dir) is None  # constant, the default then: fits
    blocks = fig08.Args(**common, models=model.name, policy_lr_schedule="blocks")
    assert "policy_lr_schedule not recorded" in runs.reuse_problem(model, blocks, 0, run_dir)
    # a value recorded and different is refused too (the names keep such runs apart anyway)
    wide = fig08.Args(**common, models=model.name, hidden=64)
    assert "hidden_width=128 (now 64)" in runs.reuse_problem(model, wide, 0, run_dir)


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
@pytest.mark.parametrize(
    ("script", "model"),
    [
        pytest.param(
            "fig04_rl_algorithms", "reinforce-per-task-approx", id="reinforce-agents", marks=pytest.mark.slow
        ),
        pytest.param("fig06_08_routing_vs_baselines", "task-specific-1-fc", id="baseline"),
    ],
)
def test_a_run_cut_short_resumes_bit_identically(tmp_path, capsys, script, model):
    """REINFORCE / Q-learning runs now checkpoint every epoch, as WPL runs and baselines do."""
    fig = load(script)

    def figure(name: str, epochs: int) -> dict[str, Path]:
        options = dict(TINY, epochs=epochs, dataset="digits-mtl", models=model)
        return fig.main(fig.Args(**options, output_dir=str(tmp_path / name), runs_dir=str(tmp_path / name)))

    straight = figure("straight", 2)
    first = figure("resumed", 1)  # the run killed after epoch 1
    run_dir = Path(json.loads(first["json"].read_text())["runs"][0]["run_dir"])
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 1
    capsys.readouterr()
    resumed = figure("resumed", 2)
    assert f"resuming {run_dir} after epoch 1" in capsys.readouterr().err
    assert without_times(read_csv(straight["csv"])) == without_times(read_csv(resumed["csv"]))
    a = load_checkpoint(tmp_path / "straight" / run_dir.name / "checkpoint.pt")
    b = load_checkpoint(run_dir / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key in ("env", "agents") if "agents" in a else ("model",):
        assert_same_state(a[key], b[key], key)


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_a_run_folder_that_cannot_be_resumed_is_refused_and_deleted_only_with_overwrite(tmp_path, capsys):
    fig04 = load("fig04_rl_algorithms")
    common = dict(TINY, dataset="digits-mtl", output_dir=str(tmp_path), runs_dir=str(tmp_path / "runs"))
    paths = fig04.main(fig04.Args(**common, models="qlearning-per-task-table"))
    run_dir = Path(json.loads(paths["json"].read_text())["runs"][0]["run_dir"])
    rows = read_csv(paths["csv"])
    (
        run_dir / "checkpoint.pt"
    ).unlink()  # e.g. a run of the former runner, written before it kept checkpoints
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(
        ValueError, match=r"holds 1 epochs but no checkpoint.*Nothing was changed.*--overwrite"
    ):
        fig04.main(fig04.Args(**dict(common, epochs=2), models="qlearning-per-task-table"))
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    capsys.readouterr()
    again = fig04.main(
        fig04.Args(**dict(common, epochs=2), models="qlearning-per-task-table", overwrite=True)
    )
    assert f"--overwrite: deleting {run_dir}" in capsys.readouterr().err
    assert without_times(read_csv(again["csv"]))[:1] == without_times(rows)  # the same first epoch
    assert (run_dir / "checkpoint.pt").is_file()


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_a_run_folder_killed_in_its_first_epoch_is_set_aside_not_deleted(tmp_path, capsys):
    fig08 = load("fig06_08_routing_vs_baselines")
    common = dict(TINY, dataset="digits-mtl", output_dir=str(tmp_path), runs_dir=str(tmp_path / "runs"))
    paths = fig08.main(fig08.Args(**common, models="task-specific-1-fc"))
    run_dir = Path(json.loads(paths["json"].read_text())["runs"][0]["run_dir"])
    rows = read_csv(paths["csv"])
    # as a run killed during its first epoch leaves its folder: config.json, no epoch, no checkpoint
    (run_dir / "checkpoint.pt").unlink()
    metrics = run_dir / "metrics.csv"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")
    kept = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".lock"}
    capsys.readouterr()
    again = fig08.main(fig08.Args(**common, models="task-specific-1-fc"))
    assert "has no finished epoch: set aside as" in capsys.readouterr().err
    (aside,) = run_dir.parent.glob(f"{run_dir.name}.unfinished-*")
    assert {p.name: p.read_bytes() for p in aside.iterdir() if p.name != ".lock"} == kept  # nothing lost
    assert without_times(read_csv(again["csv"])) == without_times(rows)


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
@pytest.mark.parametrize(
    ("script", "model"),
    [
        pytest.param("fig04_rl_algorithms", "routing-all-fc", id="wpl"),
        pytest.param(
            "fig04_rl_algorithms", "reinforce-per-task-approx", id="reinforce-learner", marks=pytest.mark.slow
        ),
        pytest.param("fig06_08_routing_vs_baselines", "task-specific-1-fc", id="baseline"),
        pytest.param(
            "fig06_08_routing_vs_baselines", "routing-all-fc-pcgrad", id="pcgrad", marks=pytest.mark.slow
        ),
        pytest.param("fig06_08_routing_vs_baselines", "mmoe-all-fc", id="mmoe", marks=pytest.mark.slow),
        pytest.param(
            "fig06_08_routing_vs_baselines", "gumbel-router-all-fc", id="gumbel", marks=pytest.mark.slow
        ),
    ],
)
def test_a_figure_point_is_what_the_training_script_run_by_hand_gives(tmp_path, script, model):
    """The driver runs train_wpl.py / train_baseline.py as a command: its rows equal a direct run's."""
    fig = load(script)
    paths = fig.main(
        fig.Args(
            **dict(TINY, epochs=2),
            dataset="digits-mtl",
            models=model,
            output_dir=str(tmp_path),
            runs_dir=str(tmp_path / "runs"),
        )
    )
    (run,) = json.loads(paths["json"].read_text())["runs"]
    argv = shlex.split(run["equivalent_command"])
    assert argv[0] == "python" and argv[1] in ("examples/train_wpl.py", "examples/train_baseline.py")
    if model == "routing-all-fc-pcgrad":  # routing with its blocks trained by PCGrad
        assert argv[1] == "examples/train_wpl.py" and argv[argv.index("--aggregator") + 1] == "pcgrad"
    elif model in ("mmoe-all-fc", "gumbel-router-all-fc"):
        assert argv[argv.index("--model") + 1] == model
    direct = tmp_path / "direct"
    done = subprocess.run(
        [sys.executable, *argv[1:], "--output-dir", str(direct), "--run-name", "run", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    by_hand = read_csv(direct / "run" / "metrics.csv")
    assert without_times(read_csv(Path(run["run_dir"]) / "metrics.csv")) == without_times(by_hand)
    rows = read_csv(paths["csv"])
    keys = ("epoch", "test_accuracy", "test_accuracy_stochastic", "train_accuracy", "lr")
    assert [{k: r[k] for k in keys} for r in rows] == [{k: r[k] for k in keys} for r in by_hand]
    assert [r["model"] for r in rows] == [model, model]


def test_figs_6_to_8_take_any_baseline_and_table2_prints_any_model_run(tmp_path):
    runs, fig08, table2 = load("paper_runs"), load("fig06_08_routing_vs_baselines"), load("table2")
    from routing_env.baselines import BASELINE_NAMES

    for figure in (runs.FIG6, runs.FIG7, runs.FIG8):
        assert set(BASELINE_NAMES) | {"routing-all-fc"} <= set(figure.accepts())
        assert figure.models == list(figure.labels)  # the default: the paper's models
        args = fig08.Args(dataset=figure.paper_dataset, models=",".join(BASELINE_NAMES))
        assert args.model_names(figure) == list(BASELINE_NAMES)
    assert "soft-mixture-all-fc" not in runs.FIG6.models and runs.FIG6.label("soft-mixture-all-fc")
    with pytest.raises(ValueError, match="not in Fig. 4"):
        runs.PaperArgs(models="cross-stitch-all-fc").model_names(runs.FIG4)
    for name in BASELINE_NAMES:  # a baseline added to the registry runs as train_baseline.py --model NAME
        model = runs.model_of(name)
        assert (model.runner, model.script, model.options["model"]) == ("baseline", "train_baseline.py", name)
    # Table 2 has a row for a model the figure's CSV holds beyond the paper's (a later baseline)
    columns = [c for c in runs.CSV_COLUMNS if c not in runs.OPTIONAL_COLUMNS]
    rows = [
        dict(
            zip(
                columns,
                ["6", "cifar-mtl", m, m, "0", "1", acc, "", "0.5", "0.001", "100", "20", "1", "1"],
                strict=True,
            )
        )
        for m, acc in (("routing-all-fc", "0.5"), ("new-baseline-all-fc", "0.25"))
    ]
    runs.write_csv(tmp_path / "fig06_routing_vs_baselines_cifar-mtl.csv", rows)
    meta = {"figure": "6", "dataset": "cifar-mtl", "command": "python examples/paper/x.py", "runs": []}
    (tmp_path / "fig06_routing_vs_baselines_cifar-mtl.json").write_text(json.dumps(meta))
    table = table2.main(table2.Args(results_dir=str(tmp_path)))
    assert "| 6 | new-baseline-all-fc | ours | CIFAR-MTL, fc 128, 100/20 | 25.00 |" in table
    assert "| 6 | CIFAR-MTL, fc 128 | new-baseline-all-fc | 1 | 1 | +25.00 |" in table
    assert "| 6 | new-baseline-all-fc | ours | CIFAR-MTL | not run |" not in table


def test_seed_statistics_by_hand():
    stats = load("seed_stats")
    # the table the t quantiles fall back on, against SciPy's
    from scipy.stats import t as student_t

    for df in [*range(1, 41), 45, 60, 90, 120, 500, 10**6]:
        assert stats.t_quantile_95(df, use_scipy=False) == pytest.approx(
            student_t.ppf(0.975, df), abs=2e-3
        ), df
    assert stats.t_quantile_95(2) == pytest.approx(4.302653, abs=1e-6)
    with pytest.raises(ValueError):
        stats.t_quantile_95(0)
    # differences 1, 2, 3: mean 2, sd 1, half-width t(2) / sqrt(3) = 2.484
    diff = stats.paired_difference({0: 91.0, 1: 92.0, 2: 93.0}, {0: 90.0, 1: 90.0, 2: 90.0}, names=("a", "b"))
    assert diff.differences == (1.0, 2.0, 3.0) and diff.mean == 2.0 and diff.std == pytest.approx(1.0)
    assert (diff.ci_low, diff.ci_high) == pytest.approx((2 - 4.302653 / 3**0.5, 2 + 4.302653 / 3**0.5))
    assert diff.note == "no difference shown: the 95% interval spans 0" and not diff.called
    tight = stats.paired_difference(
        {0: 1.0, 1: 1.1, 2: 0.9, 3: 5}, {0: 2.0, 1: 2.0, 2: 2.0}, names=("a", "b")
    )
    assert tight.seeds == (0, 1, 2) and tight.note == "a behind" and tight.called  # paired on shared seeds
    two = stats.paired_difference({0: 99.0, 1: 98.0}, {0: 90.0, 1: 90.0}, names=("a", "b"))
    assert two.note.startswith("too few seeds to call (n=2") and two.ci_low is not None
    one = stats.paired_difference({0: 99.0}, {0: 90.0, 1: 1.0})
    assert one.n == 1 and one.std is None and one.ci_low is None and "too few" in one.note
    assert stats.paired_difference({0: 1.0}, {1: 1.0}) is None
    # the PNG's bands: ±1 std from 3 seeds, the range for 2, none for 1
    assert stats.band([1.0, 2.0, 3.0]) == (1.0, 3.0, "±1 std")
    assert stats.band([1.0, 3.0]) == (1.0, 3.0, "min-max")
    assert stats.band([1.0]) is None
    rows = [
        {"model": m, "seed": s, "epoch": 1, "test_accuracy": acc}
        for m, accs in (("routing-all-fc", (0.9, 0.92, 0.94)), ("other", (0.8, 0.81, 0.85)))
        for s, acc in enumerate(accs)
    ]
    out = stats.figure_statistics(rows, ["routing-all-fc", "other"], context={"figure": "8"})
    assert [(r["statistic"], r["model"], r["versus"]) for r in out] == [
        ("model", "routing-all-fc", ""),
        ("model", "other", ""),
        ("paired_difference", "routing-all-fc", "other"),
    ]
    assert out[0]["mean_pct"] == "92.0000" and out[0]["std_pct"] == "2.0000" and out[0]["figure"] == "8"
    assert out[2]["values_pct"] == "10.0000;11.0000;9.0000" and out[2]["note"] == "routing-all-fc ahead"
    assert list(out[0]) == stats.STATS_COLUMNS


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_a_figure_writes_its_statistics_next_to_its_csv(tmp_path):
    fig08, stats = load("fig06_08_routing_vs_baselines"), load("seed_stats")
    common = dict(TINY, dataset="digits-mtl", output_dir=str(tmp_path), runs_dir=str(tmp_path / "runs"))
    paths = fig08.main(fig08.Args(**dict(common, seeds=2), models="routing-all-fc,task-specific-1-fc"))
    assert paths["stats"].name == "fig08_routing_vs_baselines_digits-mtl_stats.csv"
    rows = read_csv(paths["stats"])
    assert list(rows[0]) == stats.STATS_COLUMNS
    models = [r for r in rows if r["statistic"] == "model"]
    assert {(r["model"], r["n_seeds"]) for r in models} == {
        ("routing-all-fc", "2"),
        ("task-specific-1-fc", "2"),
    }
    acc = {(r["model"], int(r["seed"])): 100 * float(r["test_accuracy"]) for r in read_csv(paths["csv"])}
    paired = next(r for r in rows if r["statistic"] == "paired_difference")
    assert paired["versus"] == "task-specific-1-fc" and paired["note"].startswith("too few seeds")
    expected = [acc["routing-all-fc", s] - acc["task-specific-1-fc", s] for s in (0, 1)]
    assert [float(v) for v in paired["values_pct"].split(";")] == pytest.approx(expected, abs=1e-4)
    assert {r["hidden_width"] for r in rows} == {"128"} and {r["setting"] for r in rows} == {"defaults"}
    meta = json.loads(paths["json"].read_text())
    assert meta["stats"] == paths["stats"].name and meta["hidden_width"] == 128


def test_table2_works_on_the_committed_results_and_replaces_only_its_block(tmp_path):
    table2 = load("table2")
    docs = ROOT / "docs" / "results.md"
    out = tmp_path / "results.md"
    out.write_text(docs.read_text())
    table = table2.main(table2.Args(results_dir=str(ROOT / "docs" / "results"), output=str(out)))
    text, before = out.read_text(), docs.read_text()
    begin, end = table2.BEGIN, table2.END
    assert text.split(begin)[0] == before.split(begin)[0] and text.split(end)[1] == before.split(end)[1]
    # every committed figure file is in the table, with mean ± std where it has several seeds
    results = table2.load_results(ROOT / "docs" / "results")
    assert results and all(f"| {r.key} |" in table for r in results)
    several = [r for r in results if len({row["seed"] for row in r.rows}) >= 3]
    assert several
    for result in several:  # the fc width (older files: 128) and a paired difference with its interval
        width = result.meta.get("hidden_width", 128)
        assert any(
            f"fc {width}" in line and " ± " in line
            for line in table.splitlines()
            if f"| {result.key} |" in line
        )
        paired = [
            line for line in table.splitlines() if line.startswith(f"| {result.figure} | {result.label()} |")
        ]
        assert paired and all("[" in line for line in paired)
    assert "**Paired differences.**" in table


def test_table2_assembles_some_figures_without_the_papers_rows_into_a_named_block(tmp_path):
    table2 = load("table2")
    out = tmp_path / "results.md"
    begin, end = table2.markers("beyond")
    out.write_text(f"# R\n\n{table2.BEGIN}\nkept\n{table2.END}\n\n{begin}\nold\n{end}\nafter\n")
    args = table2.Args(
        results_dir=str(ROOT / "docs" / "results"),
        output=str(out),
        figures="8",
        paper_rows=False,
        block="beyond",
    )
    table = table2.main(args)
    text = out.read_text()
    assert f"{table2.BEGIN}\nkept\n{table2.END}" in text and text.endswith(f"{end}\nafter\n")
    assert "old" not in text and table in text
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Fig.")]
    assert rows and all(line.startswith("| 8 |") for line in rows)
    assert "| paper |" not in table and "not run" not in table
    # the full table still has the paper's rows of every figure
    full = table2.build_table(table2.load_results(ROOT / "docs" / "results"))
    assert "| 4 | MARL:WPL (table) | paper |" in full and "| 8 | routing-all-fc | paper |" in full


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("figures", "8,9", "no figure 9"), ("block", "a b", "block name"), ("block", "", "block name")],
)
def test_table2_refuses_an_unknown_figure_or_a_bad_block_name(field, value, message):
    table2 = load("table2")
    with pytest.raises(ValueError, match=message):
        table2.Args(**{field: value})


@pytest.mark.parametrize("dataset", ["fashion-mtl", "mnist-mtl"])  # without and with the paper's curves
def test_a_one_epoch_figure_draws_each_model_as_a_point_with_an_error_bar(dataset):
    runs = load("paper_runs")
    rows = [
        {"model": m, "seed": s, "epoch": 1, "test_accuracy": 0.95 + 0.01 * s + 0.001 * k}
        for k, m in enumerate(["routing-all-fc", "task-specific-1-fc", "mmoe-all-fc"])
        for s in range(3)
    ]
    fig = runs.plot(runs.FIGURES["8"], rows, dataset=dataset)
    (ax,) = fig.axes
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 3  # one per model, side by side around epoch 1
    xs = sorted(float(c.lines[0].get_xdata()[0]) for c in bars)
    assert xs[0] < 1 < xs[-1] and len(set(xs)) == 3
    lo, hi = ax.get_xlim()
    assert lo < xs[0] and xs[-1] < hi
    # each bar spans the mean +- the sample standard deviation over the 3 seeds
    routing = next(c for c in bars if "routing-all-fc (ours" in c.get_label())
    low, high = (float(v) for v in routing.lines[2][0].get_segments()[0][:, 1])
    assert (low, high) == pytest.approx((95.0, 97.0), abs=1e-6)
    if dataset == "mnist-mtl":  # the paper's Table 2 curves are still drawn
        assert any("(paper, Table 2)" in line.get_label() for line in ax.get_lines())


@pytest.mark.slow  # over 10 s on 2 busy cores: a longer path of a script with a smoke test of its own
def test_router_update_minibatch_names_the_mlp_runs_and_the_figure(tmp_path):
    fig04, runs = load("fig04_rl_algorithms"), load("paper_runs")
    common = dict(TINY, dataset="digits-mtl", output_dir=str(tmp_path), runs_dir=str(tmp_path / "runs"))
    models = "routing-all-fc,qlearning-per-task-table,qlearning-per-task-approx"
    paths = fig04.main(fig04.Args(**common, models=models, router_update="minibatch"))
    assert paths["csv"].name == "fig04_rl_algorithms_digits-mtl_mb.csv"
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    # only the MLP routers learn per minibatch; the table and WPL runs are the usual ones
    assert folders == [
        "qlearning-per-task-approx-digits-mtl-d0-n200-t50-mb-v0.1-s0",
        "qlearning-per-task-table-digits-mtl-d0-n200-t50-v0.1-s0",
        "routing-all-fc-digits-mtl-d0-n200-t50-v0.1-s0",
    ]
    configs = run_configs(paths)
    assert configs["qlearning-per-task-approx"]["router_update"] == "minibatch"
    assert configs["qlearning-per-task-table"]["router_update"] == "trace"
    meta = json.loads(paths["json"].read_text())
    commands = {run["model"]: run["equivalent_command"] for run in meta["runs"]}
    assert commands["qlearning-per-task-approx"].endswith("--router-update minibatch --seed 0 --epochs 1")
    assert "--router-update" not in commands["qlearning-per-task-table"]
    # the per-trace figure trains its own MLP run and reuses the others
    trace = fig04.main(fig04.Args(**common, models=models))
    assert trace["csv"].name == "fig04_rl_algorithms_digits-mtl.csv"
    assert (tmp_path / "runs" / "qlearning-per-task-approx-digits-mtl-d0-n200-t50-v0.1-s0").is_dir()
    assert len(list((tmp_path / "runs").iterdir())) == 4
    with pytest.raises(ValueError, match="needs the batched path"):
        runs.PaperArgs(router_update="minibatch", aec=True)
