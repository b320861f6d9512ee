"""The run folders committed under docs/results/run-folders/ regenerate their figures' CSVs.

A long campaign (``examples/paper/fashion_mtl_campaign.py``) spans sessions on fresh
machines, so the text files of its finished runs (``config.json``, ``metrics.csv``,
``summary.json``; no checkpoint) are committed. A figure script reuses a finished run
from those two files alone, so rerunning a committed figure's command on them must
rewrite the committed CSV byte for byte, without data and without training. This also
guards the run folders: a missing one would make the script try to train (and fail
here, where no data is given), an edited one would change the CSV.

Runs cut short by a session's end are kept whole (with their ``checkpoint.pt``) under
``run-folders/unfinished/``, so that the next session resumes them; they belong to no
figure yet (unless a shorter campaign's figure has their finished run of fewer epochs).
The campaign's ``--export-runs docs/results/run-folders`` writes both.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from routing_env.experiments import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
RUN_FOLDERS = RESULTS / "run-folders"
UNFINISHED = RUN_FOLDERS / "unfinished"


def committed_figures() -> list[Path]:
    """The figure JSONs in docs/results whose every run has a folder in RUN_FOLDERS."""
    if not RUN_FOLDERS.is_dir():
        return []
    found = []
    for path in sorted(RESULTS.glob("fig*.json")):
        runs = json.loads(path.read_text())["runs"]
        if runs and all((RUN_FOLDERS / Path(run["run_dir"]).name).is_dir() for run in runs):
            found.append(path)
    return found


#: Options the figure scripts gained after a figure was made, with the value its runs used then.
OPTIONS_ADDED_SINCE = {"validation_fraction": "none", "wpl_weighting": "abdallah-lesser"}


def rerun_command(figure_json: Path, runs_dir: Path, output_dir: Path) -> list[str]:
    """The figure's own command, on ``runs_dir`` into ``output_dir``, with no data root (and the
    options added since, at the values its runs used)."""
    meta = json.loads(figure_json.read_text())
    argv = shlex.split(meta["command"])
    for name, value in OPTIONS_ADDED_SINCE.items():
        if name not in meta["args"]:
            argv += ["--" + name.replace("_", "-"), value]
    assert argv[0] == "python", argv
    out: list[str] = [sys.executable, str(ROOT / argv[1])]
    rest = iter(argv[2:])
    for arg in rest:
        if arg in ("--runs-dir", "--output-dir", "--data-root"):
            next(rest)
            continue
        out.append(arg)
    return [*out, "--runs-dir", str(runs_dir), "--output-dir", str(output_dir)]


def test_run_folders_hold_the_text_files_only():
    """Each committed folder is a finished run's text: reusable, and no checkpoint in git."""
    if not RUN_FOLDERS.is_dir():
        pytest.skip("no run folders committed")
    for folder in RUN_FOLDERS.iterdir():
        if folder == UNFINISHED:
            continue
        assert folder.is_dir(), f"{folder} is not a run folder"
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "metrics.csv"} <= names, f"{folder} lacks config.json or metrics.csv"
        assert not names - {"config.json", "metrics.csv", "summary.json"}, f"{folder} holds {sorted(names)}"
        assert epochs_of(folder) == config_of(folder)["epochs"], f"{folder.name} is unfinished"


def test_unfinished_runs_can_resume():
    """A run cut short is kept whole: its config, its epochs so far and the checkpoint after them."""
    if not UNFINISHED.is_dir():
        pytest.skip("no unfinished runs committed")
    for folder in UNFINISHED.iterdir():
        names = {p.name for p in folder.iterdir()}
        assert names == {"config.json", "metrics.csv", "checkpoint.pt"}, f"{folder} holds {sorted(names)}"
        assert 0 < epochs_of(folder) < config_of(folder)["epochs"], folder.name
        assert load_checkpoint(folder / "checkpoint.pt")["epoch"] == epochs_of(folder), folder.name
        finished = RUN_FOLDERS / folder.name  # an earlier, shorter campaign's run, extended since
        assert not finished.exists() or epochs_of(finished) < epochs_of(folder), folder.name


def config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())["config"]


def epochs_of(folder: Path) -> int:
    return len((folder / "metrics.csv").read_text().splitlines()) - 1


@pytest.mark.slow  # over 25 s on 2 busy cores
@pytest.mark.parametrize("figure_json", committed_figures(), ids=lambda p: p.stem)
def test_committed_runs_regenerate_the_figure_csv(figure_json, tmp_path):
    runs_dir = tmp_path / "runs"
    runs = json.loads(figure_json.read_text())["runs"]
    runs_dir.mkdir()
    for run in runs:  # a copy: the script writes lock files into the folders it reads
        name = Path(run["run_dir"]).name
        shutil.copytree(RUN_FOLDERS / name, runs_dir / name)
    env = {**os.environ, "ROUTING_ENV_DATA": str(tmp_path / "no-data"), "MPLBACKEND": "Agg"}
    command = rerun_command(figure_json, runs_dir, tmp_path / "out")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reusing" in done.stderr and "resuming" not in done.stderr
    # a figure of appendix 7.4's weighting, made before the option, is now named apart (_al)
    stem = figure_json.stem + (
        "_al" if "wpl_weighting" not in json.loads(figure_json.read_text())["args"] else ""
    )
    assert (tmp_path / "out" / f"{stem}.csv").read_text() == figure_json.with_suffix(".csv").read_text()
    stats_name = f"{figure_json.stem}_stats.csv"
    assert (tmp_path / "out" / f"{stem}_stats.csv").read_text() == (RESULTS / stats_name).read_text()
