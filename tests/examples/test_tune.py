"""examples/paper/tune.py: every model gets as many settings, chosen on validation, written for the figures."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .example_scripts import load_paper

PAPER = Path(__file__).resolve().parents[2] / "examples" / "paper"


@pytest.fixture(scope="module", autouse=True)
def _paper_on_path() -> Iterator[None]:
    sys.path.insert(0, str(PAPER))
    yield
    sys.path.remove(str(PAPER))


def test_every_model_gets_as_many_settings_and_the_schedule_only_past_the_first_decay():
    tune = load_paper("tune")
    short = tune.Args(epochs=8)
    grids = {m: tune.configurations(tune.model_of(m), short) for m in short.model_list()}
    assert {len(g) for g in grids.values()} == {8}  # routing: rho x policy lr x weighting
    assert all("policy_lr_schedule" not in c for c in grids["routing-all-fc"])  # blocks == constant before epoch 10
    assert {c["wpl_weighting"] for c in grids["routing-all-fc"]} == {"paper", "abdallah-lesser"}
    long = tune.Args(epochs=12)
    assert {len(tune.configurations(tune.model_of(m), long)) for m in long.model_list()} == {16}
    assert tune.label({"rho": 0.3, "policy_lr": 0.1, "wpl_weighting": "paper"}) == "rho0.3-plr0.1-paper"
    with pytest.raises(ValueError, match="--validation-fraction none"):
        tune.Args(validation_fraction=None)
    with pytest.raises(ValueError, match="--select-epochs"):
        tune.Args(epochs=2, select_epochs=3)


@pytest.mark.slow  # 16 short runs
def test_a_tiny_sweep_chooses_on_validation_and_the_figure_reads_it(tmp_path):
    tune = load_paper("tune")
    args = tune.Args(
        dataset="digits-mtl",
        max_train_samples=300,
        max_test_samples=20,
        epochs=1,
        select_epochs=1,
        seeds=1,
        models="routing-all-fc,task-specific-1-fc",
        output_dir=str(tmp_path / "out"),
        runs_dir=str(tmp_path / "runs"),
        export_runs=str(tmp_path / "kept"),
        progress=False,
    )
    paths = tune.main(args)
    meta = json.loads(paths["json"].read_text())
    assert set(meta["chosen"]) == {"routing-all-fc", "task-specific-1-fc"}
    assert meta["budget"]["settings_per_model"] == {"routing-all-fc": 8, "task-specific-1-fc": 8}
    rows = tune.read_csv(paths["csv"])
    best = min((r for r in rows if r["model"] == "routing-all-fc"), key=lambda r: int(r["rank"]))
    assert json.loads(best["config"]) == meta["chosen"]["routing-all-fc"]
    assert float(best["mean_pct"]) == max(float(r["mean_pct"]) for r in rows if r["model"] == "routing-all-fc")
    assert len(list((tmp_path / "kept").iterdir())) == 16  # every run's text, for a later machine
    # the figure scripts take the chosen settings: the runs are named apart and carry them
    runs = load_paper("paper_runs")
    figure_args = runs.PaperArgs(dataset="digits-mtl", tuned=str(paths["json"]), max_train_samples=300)
    options = runs.run_options(runs.model_of("routing-all-fc"), figure_args, 0)
    assert all(options[k] == v for k, v in meta["chosen"]["routing-all-fc"].items())
    assert runs.run_name(runs.model_of("routing-all-fc"), figure_args, 0).endswith("-tuned-v0.1-s0")
    with pytest.raises(ValueError, match="chosen on digits-mtl in the defaults setting"):
        runs.PaperArgs(dataset="digits-mtl", tuned=str(paths["json"]), setting="paper").tuned_options(
            runs.model_of("routing-all-fc")
        )
