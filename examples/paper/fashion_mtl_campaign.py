"""The Fashion-MTL campaign: Figs. 4, 5 and 8 on Fashion-MTL, 3 seeds, both settings, resumable.

Every accuracy measured on digits-MTL and MNIST-MTL saturates, so the paper's
comparisons are repeated on Fashion-MTL (MNIST-MTL's 10 one-vs-rest tasks on
Fashion-MNIST, tested on all 100,000 test samples), where models separate. This script
runs the figure scripts next to it as commands (as CleanRL's benchmark utility runs its
scripts), one run at a time or ``--jobs`` at once, each with ``--torch-threads`` threads:

1. the runs: every model of ``fig04_rl_algorithms.py``, ``fig05_architectures.py`` and
   ``fig06_08_routing_vs_baselines.py`` (Fig. 8's models on Fashion-MTL) in both
   settings (``--setting defaults`` and ``--setting paper``: SGD, the paper's schedule,
   rho 0.3, routed fc layers of 48 units, the WPL policy lr on the blocks' schedule), for
   seeds 0, 1, 2 (seed 0 of every model first, so that a campaign stopped early has
   comparable runs of all models). A model shared by several figures (routing-all-fc,
   the single agent, soft-mixture-all-fc) is trained once: the figures share ``--runs-dir``.
   Each step is ``<figure script> --models M --first-seed K --seeds K+1``, which trains
   seed K alone (its outputs go to a scratch folder, ``OUTPUT_DIR/units/``), so the seeds
   of one model run side by side when ``--jobs`` allows (a GPU machine's many cores);
2. the figures: once the runs are done, each figure script runs with all its models
   and seeds into ``OUTPUT_DIR`` (every run is reused, so this takes seconds), writing
   ``<figure>_fashion-mtl[_paper-setting].{csv,png,json}`` and ``..._stats.csv``, which
   ``table2.py --results-dir OUTPUT_DIR`` assembles. A figure whose runs are not all
   done is written with the seeds every one of its models has (none: not written).

Safe to stop at any time (Ctrl-C, ``kill``, a lost session) and to run again with the
same options, which picks up where it stopped: complete runs are skipped without
starting a process, and a run cut short resumes from its last epoch's checkpoint (WPL
runs, baselines and the REINFORCE / Q-learning runs alike; the folder of a run killed
in its first epoch is set aside as ``NAME.unfinished-<time>`` and the run starts again;
no run folder is ever deleted). On SIGTERM or SIGINT the running figure scripts are stopped first;
they are also stopped when this process is killed outright (Linux: they get SIGTERM
when it dies). Two campaigns cannot share an ``OUTPUT_DIR`` at once (it is locked).

Progress goes to stdout and ``OUTPUT_DIR/campaign.log`` (each step's command, skip,
result and wall time, and the estimated time left: each remaining epoch is costed at
the mean epoch time measured so far for that model and setting, else for its runner
kind, divided by ``--jobs``); each step's own output goes to ``OUTPUT_DIR/logs/``.
``--budget-hours H`` launches no new step once H hours have passed (the running ones
finish, then the figures are written); run the command again to go on.

``--export-runs DIR`` keeps a campaign that outlasts a machine: on every exit (done,
paused, stopped by a signal; with ``--dry-run``, without running anything) it copies the
text files of each complete run (``config.json``, ``metrics.csv``, ``summary.json``) to
``DIR/NAME`` and each run cut short whole, checkpoint included, to ``DIR/unfinished/NAME``
(removed there once the run is complete). Those are what the figures need and what a
fresh machine needs to go on: copy ``DIR/*`` and ``DIR/unfinished/*`` into ``--runs-dir``
and run the same command. The repository's ``docs/results/run-folders/`` is such a folder.

``--epochs`` may be raised in a later invocation: complete runs then resume from their
checkpoints and train on (the learning-rate schedules do not depend on the total). The
runs are shared by the figures, so ``--figures 8`` first (routing-all-fc against the
baselines, about a quarter of the work) and the default ``--figures 4,5,8`` later only
adds the runs that Figs. 4 and 5 need.

Cost on a 2-core CPU machine with ``--jobs 2`` (measured on 1/20 of Fashion-MTL, with
other work on the machine): one epoch of all 22 runs of one seed (11 models, 2
settings) is about 140 min of CPU, so one epoch of the whole campaign (3 seeds) is
about 3.5 h of wall time, and Fig. 8 alone about 1 h per epoch. The REINFORCE and
Q-learning MLP routers (about 11 min per epoch and run) cost 2-3 times a WPL run or a
baseline (3-5 min).

    python examples/paper/fashion_mtl_campaign.py --data-root ~/data --epochs 20             # one at a time
    python examples/paper/fashion_mtl_campaign.py --data-root ~/data --epochs 20 --jobs 2 --budget-hours 10
    python examples/paper/fashion_mtl_campaign.py --data-root ~/data --epochs 20 --dry-run   # the plan only
    python examples/paper/table2.py --results-dir runs/fashion-mtl                           # the table
    python examples/paper/table2.py --results-dir docs/results,runs/fashion-mtl   # next to MNIST-MTL
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

import numpy as np
from paper_runs import (
    FIG4,
    FIG5,
    METRICS_FILE,
    Figure,
    PaperArgs,
    completed_epochs,
    model_of,
    read_csv,
    run_name,
)

from routing_env.experiments import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    SUMMARY_FILE,
    DatasetName,
    MetricsCSV,
    RunLock,
    load_checkpoint,
    run_script,
)

PAPER = Path(__file__).resolve().parent
ROOT = PAPER.parents[1]

#: The figure scripts, by the figure number ``--figures`` takes (6, 7 and 8: one script,
#: the dataset picks the figure).
SCRIPTS = {
    "4": "examples/paper/fig04_rl_algorithms.py",
    "5": "examples/paper/fig05_architectures.py",
    "6": "examples/paper/fig06_08_routing_vs_baselines.py",
    "7": "examples/paper/fig06_08_routing_vs_baselines.py",
    "8": "examples/paper/fig06_08_routing_vs_baselines.py",
}
SETTINGS = ("defaults", "paper")


@dataclass
class Args:
    """Run Figs. 4, 5 and 8 on Fashion-MTL (3 seeds, both settings) as one resumable campaign."""

    epochs: int = 100
    """training epochs of every run (the paper: 100)"""
    seeds: int = 3
    """runs per model and setting, seeds 0..N-1 (the paper: 3)"""
    settings: str = "defaults,paper"
    """comma-separated --setting values to run (defaults, paper)"""
    figures: str = "4,5,8"
    """comma-separated figures (4: RL algorithms, 5: architectures, 8: routing vs baselines; 6 and 7 for their datasets)"""
    models: str = ""
    """comma-separated models (default: all of the figures'); Fig. 8 also takes any baseline of examples/train_baseline.py --model (e.g. mmoe-all-fc, gumbel-router-all-fc); a figure is written with those it has"""
    tuned: str | None = None
    """a JSON of chosen settings per model (examples/paper/tune.py) for the defaults setting's runs (the figure scripts' --tuned); none: the scripts' defaults"""
    dataset: DatasetName = "fashion-mtl"
    """multi-task dataset (the campaign is Fashion-MTL's; others serve tests and comparisons)"""
    data_root: str | None = None
    """folder holding the datasets (torchvision layout); default $ROUTING_ENV_DATA, else ~/.cache/routing_env"""
    data_seed: int = 0
    """seed of the dataset's train/test construction (fixed across run seeds)"""
    max_train_samples: int | None = None
    """train on a per-task stratified subset of at most this many samples (none: all 100,000)"""
    max_test_samples: int | None = None
    """evaluate on a per-task stratified subset of at most this many test samples (none: all 100,000)"""
    output_dir: str = "runs/fashion-mtl"
    """folder of the figures' CSV, stats, PNG and JSON, the campaign log and the steps' logs"""
    runs_dir: str | None = None
    """folder of the run folders (none: OUTPUT_DIR/runs)"""
    jobs: int = 1
    """figure scripts run at once (each on --torch-threads threads; 2 on a 2-core machine)"""
    torch_threads: int = 1
    """torch intra-op threads of each figure script"""
    device: str | None = None
    """torch device of every run (e.g. cuda; none: cpu)"""
    budget_hours: float | None = None
    """launch no new step after this many hours (the running ones finish, the figures are written); none: no limit"""
    dry_run: bool = False
    """print the plan (each step, done or not, and the estimated time left) and run nothing"""
    export_runs: str | None = None
    """on exit, copy each complete run's text files to this folder and each run cut short (with its checkpoint) to its unfinished/; none: no copy"""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.seeds < 1:
            raise ValueError(f"--epochs and --seeds must be >= 1, got {self.epochs} and {self.seeds}")
        if self.jobs < 1 or self.torch_threads < 1:
            raise ValueError(
                f"--jobs and --torch-threads must be >= 1, got {self.jobs} and {self.torch_threads}"
            )
        if self.budget_hours is not None and not self.budget_hours > 0:
            raise ValueError(f"--budget-hours must be > 0 or none, got {self.budget_hours}")
        unknown = [s for s in self.setting_names() if s not in SETTINGS]
        if unknown or not self.setting_names():
            raise ValueError(f"--settings: expected some of {list(SETTINGS)}, got {self.settings!r}")
        figures = self.figure_list()  # raises on an unknown figure
        known = {m for f in figures for m in f.accepts()}
        unknown = [m for m in self.model_names() if m not in known]
        if unknown:
            raise ValueError(
                f"--models: {unknown} are in none of the figures; expected some of {sorted(known)}"
            )

    def setting_names(self) -> list[str]:
        return [s.strip() for s in self.settings.split(",") if s.strip()]

    def model_names(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]

    def figure_list(self) -> list[Figure]:
        """The figures asked for (6-8: the one of ``--dataset``, see fig06_08_routing_vs_baselines.py)."""
        from fig06_08_routing_vs_baselines import FIGURE_OF_DATASET

        out = []
        for number in (n.strip() for n in self.figures.split(",") if n.strip()):
            if number not in SCRIPTS:
                raise ValueError(f"--figures: unknown figure {number!r}; expected some of 4, 5, 6, 7, 8")
            if number in ("4", "5"):
                out.append(FIG4 if number == "4" else FIG5)
                continue
            figure = FIGURE_OF_DATASET.get(self.dataset)
            if figure is None or figure.number != number:
                raise ValueError(
                    f"--figures {number}: fig06_08_routing_vs_baselines.py draws "
                    f"{'no figure' if figure is None else 'Fig. ' + figure.number} on {self.dataset}"
                )
            out.append(figure)
        if not out:
            raise ValueError("--figures: no figure given")
        return out

    def runs_path(self) -> Path:
        return Path(self.runs_dir) if self.runs_dir is not None else Path(self.output_dir) / "runs"


# ============================================================== the plan
@dataclass(frozen=True)
class Step:
    """One figure-script command: a model's seed (a run) or a whole figure."""

    name: str
    setting: str
    script: str
    argv: tuple[str, ...]
    model: str | None = None
    """the model whose run it trains (None: a figure step)"""
    seed: int | None = None
    run_dir: Path | None = None

    @property
    def key(self) -> Path | None:
        """Steps with one key run one after another: the run folder they train (None: a figure)."""
        return self.run_dir

    def command(self) -> list[str]:
        return [sys.executable, self.script, *self.argv]

    def shown(self) -> str:
        return shlex.join(["python", self.script, *self.argv])


def paper_args(args: Args, setting: str, *, seeds: int | None = None, models: str = "") -> PaperArgs:
    """The figure scripts' options of a step (the same run folders as the scripts compute)."""
    return PaperArgs(
        dataset=args.dataset,
        data_root=args.data_root,
        data_seed=args.data_seed,
        max_train_samples=args.max_train_samples,
        max_test_samples=args.max_test_samples,
        epochs=args.epochs,
        seeds=args.seeds if seeds is None else seeds,
        setting=setting,
        tuned=args.tuned if setting == "defaults" else None,
        models=models,
        runs_dir=str(args.runs_path()),
        torch_threads=args.torch_threads,
        device=args.device,
        progress=False,
    )


def script_argv(
    args: Args, setting: str, *, seeds: int, models: str, output_dir: Path, first_seed: int = 0
) -> tuple[str, ...]:
    """The command-line options of a figure script for ``setting`` (the defaults left out)."""
    argv = ["--dataset", args.dataset]
    if args.data_root is not None:
        argv += ["--data-root", args.data_root]
    if args.data_seed != 0:
        argv += ["--data-seed", str(args.data_seed)]
    if args.max_train_samples is not None:
        argv += ["--max-train-samples", str(args.max_train_samples)]
    if args.max_test_samples is not None:
        argv += ["--max-test-samples", str(args.max_test_samples)]
    argv += ["--epochs", str(args.epochs), "--seeds", str(seeds)]
    if first_seed:
        argv += ["--first-seed", str(first_seed)]
    if setting != "defaults":
        argv += ["--setting", setting]
    if models:
        argv += ["--models", models]
    if args.tuned is not None and setting == "defaults":
        argv += ["--tuned", args.tuned]
    argv += ["--output-dir", str(output_dir), "--runs-dir", str(args.runs_path()), "--no-progress"]
    if args.torch_threads != 1:
        argv += ["--torch-threads", str(args.torch_threads)]
    if args.device is not None:
        argv += ["--device", args.device]
    return tuple(argv)


def figure_models(args: Args, figure: Figure) -> list[str]:
    """The models of ``figure`` the campaign runs (``--models`` or all), the figure's first, in its order."""
    wanted = args.model_names()
    if not wanted:
        return list(figure.models)
    return [m for m in figure.models if m in wanted] + [
        m for m in wanted if m not in figure.models and m in figure.accepts()
    ]


def run_steps(args: Args) -> list[Step]:
    """Every run of the campaign, seed-major: seed 0 of every model and setting, then seed 1, ..."""
    figures = args.figure_list()
    script_of: dict[str, str] = {}
    for figure in figures:  # a model shared by figures is run by the first one that has it
        for model in figure_models(args, figure):
            script_of.setdefault(model, SCRIPTS[figure.number])
    steps = []
    for seed in range(args.seeds):
        for setting in args.setting_names():
            options = paper_args(args, setting)
            for model, script in script_of.items():
                steps.append(
                    Step(
                        name=f"{setting}/{model}/seed {seed}",
                        setting=setting,
                        script=script,
                        argv=script_argv(
                            args,
                            setting,
                            seeds=seed + 1,
                            first_seed=seed,
                            models=model,
                            output_dir=Path(args.output_dir) / "units" / setting / model / f"seed{seed}",
                        ),
                        model=model,
                        seed=seed,
                        run_dir=args.runs_path() / run_name(model_of(model), options, seed),
                    )
                )
    return steps


def complete_seeds(args: Args, setting: str, model: str) -> int:
    """How many of the seeds 0, 1, ... of ``model`` have a complete run, counted from 0."""
    options = paper_args(args, setting)
    n = 0
    while (
        n < args.seeds
        and completed_epochs(args.runs_path() / run_name(model_of(model), options, n)) >= args.epochs
    ):
        n += 1
    return n


def figure_steps(args: Args) -> list[tuple[Step | None, str]]:
    """The figure commands, each with the seeds every model of it has complete (None and why: none)."""
    out: list[tuple[Step | None, str]] = []
    for setting in args.setting_names():
        for figure in args.figure_list():
            models = figure_models(args, figure)
            seeds = min(complete_seeds(args, setting, m) for m in models)
            name = f"{setting}/Fig. {figure.number}"
            if seeds == 0:
                missing = [m for m in models if complete_seeds(args, setting, m) == 0]
                out.append((None, f"{name}: not written, no complete run yet of {', '.join(missing)}"))
                continue
            selected = "" if models == figure.models else ",".join(models)
            step = Step(
                name=name,
                setting=setting,
                script=SCRIPTS[figure.number],
                argv=script_argv(
                    args, setting, seeds=seeds, models=selected, output_dir=Path(args.output_dir)
                ),
            )
            note = (
                ""
                if seeds == args.seeds
                else f" (with {seeds} of {args.seeds} seeds: the others are not done)"
            )
            out.append((step, f"{name}{note}"))
    return out


# ============================================================== time estimates
@dataclass
class EpochTimes:
    """Mean epoch time (s) measured in the run folders, by (setting, model) and by (setting, runner)."""

    by_model: dict[tuple[str, str], float] = field(default_factory=dict)
    by_runner: dict[tuple[str, str], float] = field(default_factory=dict)
    overall: float | None = None

    @classmethod
    def measure(cls, steps: Sequence[Step]) -> EpochTimes:
        samples: dict[tuple[str, str], list[float]] = {}
        for step in steps:
            if step.model is None or step.run_dir is None or not (step.run_dir / METRICS_FILE).is_file():
                continue
            try:
                times = [float(r["epoch_time_s"]) for r in read_csv(step.run_dir / METRICS_FILE)]
            except (ValueError, KeyError, OSError):  # a file being written: measured next time
                continue
            samples.setdefault((step.setting, step.model), []).extend(times)
        out = cls()
        runner: dict[tuple[str, str], list[float]] = {}
        for (setting, model), times in samples.items():
            if times:
                out.by_model[setting, model] = float(np.mean(times))
                runner.setdefault((setting, model_of(model).runner), []).extend(times)
        out.by_runner = {k: float(np.mean(v)) for k, v in runner.items()}
        every = [t for v in samples.values() for t in v]
        out.overall = float(np.mean(every)) if every else None
        return out

    def of(self, setting: str, model: str) -> float | None:
        """The epoch time of ``model`` in ``setting``: its own, else its runner kind's, else any."""
        found = self.by_model.get((setting, model))
        if found is None:
            found = self.by_runner.get((setting, model_of(model).runner))
        return self.overall if found is None else found


def remaining_epochs(args: Args, step: Step) -> int:
    """Epochs the run of ``step`` still has to train."""
    assert step.run_dir is not None
    return max(0, args.epochs - completed_epochs(step.run_dir))


def estimate(args: Args, steps: Sequence[Step], *, measured: Sequence[Step] | None = None) -> str:
    """The time left for ``steps`` in words, from the epoch times measured so far in the
    run folders of ``measured`` (default: ``steps``)."""
    times = EpochTimes.measure(steps if measured is None else measured)
    total, epochs, unknown = 0.0, 0, 0
    for step in steps:
        assert step.model is not None
        left = remaining_epochs(args, step)
        if not left:
            continue
        epochs += left
        per_epoch = times.of(step.setting, step.model)
        if per_epoch is None:
            unknown += left
        else:
            total += left * per_epoch
    if not epochs:
        return "no epoch left to train"
    if unknown == epochs:
        return f"{epochs} epochs left to train; time unknown until a first epoch is measured"
    text = f"{epochs} epochs left to train, about {_fmt_duration(total / args.jobs)}"
    if args.jobs > 1:
        text += f" with {args.jobs} jobs"
    if unknown:
        text += f" (plus {unknown} epochs of models not measured yet)"
    return text


def _fmt_duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 90:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


# ============================================================== the run folders kept
#: What ``--export-runs`` keeps of a complete run: enough for a figure to reuse it.
FINISHED_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE)
#: What it keeps of a run cut short: enough to resume it.
UNFINISHED_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE)
UNFINISHED = "unfinished"
#: Every file an export writes (the only files of the export folder it removes, when superseded).
EXPORTED_FILES = frozenset((*FINISHED_FILES, *UNFINISHED_FILES))


def export_runs(args: Args, steps: Sequence[Step]) -> list[str]:
    """Copy the campaign's run folders to ``--export-runs`` (see the module docstring).

    Returns what was done, a line each. A run cut short is copied as it resumes: from
    its checkpoint, with the metrics rows up to the checkpoint's epoch (a row written
    after the last checkpoint, by a run stopped between the two, is redone on resuming).
    A run with no checkpoint yet is left out, as it would start again.
    """
    assert args.export_runs is not None
    dest = Path(args.export_runs)
    finished, unfinished, notes = 0, 0, []
    for step in steps:
        run = step.run_dir
        if run is None or not (run / CONFIG_FILE).is_file():
            continue
        epochs = completed_epochs(run)
        parked = dest / UNFINISHED / run.name
        if epochs >= args.epochs:
            _copy_files(run, dest / run.name, FINISHED_FILES)
            if parked.exists():
                shutil.rmtree(parked)
            finished += 1
        elif epochs > 0 and (run / CHECKPOINT_FILE).is_file():
            saved = int(load_checkpoint(run / CHECKPOINT_FILE)["epoch"])
            if not 0 < saved <= epochs:
                notes.append(
                    f"not kept: {run.name} (checkpoint of epoch {saved}, {epochs} epochs in metrics)"
                )
                continue
            _copy_files(run, parked, UNFINISHED_FILES)
            if saved < epochs:  # drop the rows the run redoes when it resumes, as resuming does
                copied = parked / METRICS_FILE
                MetricsCSV(copied, list(read_csv(copied)[0])).keep_epochs(saved)
            unfinished += 1
    return [f"kept in {dest}: {finished} complete runs, {unfinished} cut short (in {UNFINISHED}/)", *notes]


class ExportRefusedError(FileExistsError):
    """``--export-runs`` would delete a source file or replace a kept run by a shorter or other one."""


def export_problems(args: Args, steps: Sequence[Step]) -> list[str]:
    """Why ``--export-runs`` must not run (empty: it may): a copy would land on a run folder it
    copies from, or replace a run kept there by a longer or different one. An export adds to
    what is kept; it never deletes a source file nor replaces a run with a shorter or other one."""
    assert args.export_runs is not None
    dest = Path(args.export_runs)
    problems = []
    for step in steps:
        run = step.run_dir
        if run is None:
            continue
        for target in (dest / run.name, dest / UNFINISHED / run.name):
            if target.resolve() == run.resolve():
                problems.append(
                    f"--export-runs {dest} would copy {run} onto itself (it is the runs folder, or holds it): "
                    "pass a folder of its own"
                )
                break
        kept = dest / run.name
        if (kept / CONFIG_FILE).is_file() and (run / CONFIG_FILE).is_file():
            ours, theirs = _options(run), _options(kept)
            differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            if differ:
                problems.append(
                    f"{kept} holds a run with other settings than {run} ({', '.join(differ)}): it is not replaced"
                )
            elif completed_epochs(kept) > completed_epochs(run):
                problems.append(
                    f"{kept} holds {completed_epochs(kept)} epochs, more than the {completed_epochs(run)} of "
                    f"{run}: it is not replaced by the shorter run"
                )
    return list(dict.fromkeys(problems))


def _options(run: Path) -> dict[str, Any]:
    """A run's options that change its numbers (``config.json`` but those a resume may change)."""
    from routing_env.experiments import RESUMABLE_OPTIONS, read_config

    return {k: v for k, v in read_config(run).items() if k not in RESUMABLE_OPTIONS}


def _copy_files(src: Path, dest: Path, names: Sequence[str]) -> None:
    """Make ``dest`` hold the ``names`` that ``src`` has (copied whole, then renamed). Of the
    files an export writes, one that ``src`` no longer has goes (a run's checkpoint, once it is
    complete); any other file of ``dest`` is left alone."""
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.iterdir():
        if (
            stale.is_file()
            and stale.name in EXPORTED_FILES
            and not (stale.name in names and (src / stale.name).is_file())
        ):
            stale.unlink()
    for name in names:
        if (src / name).is_file():
            part = dest / f".{name}.part"
            shutil.copyfile(src / name, part)
            part.replace(dest / name)


# ============================================================== running
class Log:
    """Lines to stdout and to ``OUTPUT_DIR/campaign.log``, each with the UTC time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file: TextIO = path.open("a", encoding="utf-8")

    def __call__(self, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} {text}"
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the campaign dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


@dataclass
class Running:
    step: Step
    process: subprocess.Popen[bytes]
    started: float
    log: IO[bytes]


class SignalReceivedError(Exception):
    """Raised in the main loop when a SIGTERM or SIGINT arrives."""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`SignalReceivedError` while the campaign runs."""

    def handler(signum: int, frame: Any) -> None:
        raise SignalReceivedError(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def start(step: Step, args: Args) -> Running:
    logs = Path(args.output_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    name = step.name.replace("/", "_").replace(" ", "")
    log = (logs / f"{name}.log").open("ab")
    log.write(f"\n$ {step.shown()}\n".encode())
    log.flush()
    process = subprocess.Popen(
        step.command(),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C reaches the campaign, which stops its steps itself
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    return Running(step=step, process=process, started=time.perf_counter(), log=log)


def stop_all(running: Sequence[Running], log: Log) -> None:
    """SIGTERM every running step (its process group), then SIGKILL what is left after 30 s."""
    for r in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(r.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for r in running:
        try:
            r.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(r.process.pid, signal.SIGKILL)
            r.process.wait()
        r.log.close()
        log(f"stopped {r.step.name} (pid {r.process.pid}); it resumes from its last checkpoint next time")


def main(args: Args) -> int:
    """Run (or resume) the campaign; return the exit status (0: every step that ran succeeded)."""
    out = Path(args.output_dir)
    steps = run_steps(args)
    if args.export_runs is not None:
        problems = export_problems(args, steps)
        if problems:
            raise ExportRefusedError("--export-runs: nothing was run or copied. " + " ".join(problems))
    if args.dry_run:
        for step in steps:
            left = remaining_epochs(args, step)
            state = "done" if not left else f"{args.epochs - left}/{args.epochs} epochs"
            print(f"[{state}] {step.name}: {step.shown()}")
        for step, note in figure_steps(args):
            print(f"[figure] {note}" + (f": {step.shown()}" if step else ""))
        print(f"estimated: {estimate(args, steps)}")
        if args.export_runs is not None:
            for line in export_runs(args, steps):
                print(line)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):  # RunInUseError while another campaign writes here
        log = Log(out / "campaign.log")
        try:
            return _run(args, steps, log)
        finally:
            if args.export_runs is not None:
                for line in export_runs(args, steps):
                    log(line)
            log.close()


def _run(args: Args, steps: list[Step], log: Log) -> int:
    began = time.perf_counter()
    budget_s = None if args.budget_hours is None else 3600 * args.budget_hours
    pending = [s for s in steps if remaining_epochs(args, s)]
    log(
        f"campaign: {args.dataset}, {args.epochs} epochs x {args.seeds} seeds, settings {args.settings}, "
        f"figures {args.figures}; {len(steps)} runs, {len(steps) - len(pending)} already done; "
        f"{args.jobs} job(s); runs in {args.runs_path()}"
    )
    log(f"estimated: {estimate(args, pending, measured=steps)}")
    failed: list[str] = []
    running: list[Running] = []
    stopped_by: str | None = None
    try:
        with stop_on_signals():
            while pending or running:
                over_budget = budget_s is not None and time.perf_counter() - began > budget_s
                if over_budget and pending:
                    log(
                        f"budget of {args.budget_hours} h reached: {len(pending)} runs not started "
                        "(run the same command again to go on)"
                    )
                    pending = []
                busy = {r.step.key for r in running}
                while pending and len(running) < args.jobs:
                    step = next((s for s in pending if s.key not in busy), None)
                    if step is None:
                        break
                    pending.remove(step)
                    if not remaining_epochs(args, step):  # done meanwhile (a shared run, another process)
                        log(f"skip {step.name}: complete")
                        continue
                    done = args.epochs - remaining_epochs(args, step)
                    running.append(start(step, args))
                    busy.add(step.key)
                    resumes = f", resuming after epoch {done}" if done else ""
                    log(f"start {step.name}{resumes}: {step.shown()}")
                time.sleep(0.2)
                for r in [r for r in running if r.process.poll() is not None]:
                    running.remove(r)
                    r.log.close()
                    took = _fmt_duration(time.perf_counter() - r.started)
                    if r.process.returncode == 0 and not remaining_epochs(args, r.step):
                        log(f"done {r.step.name} in {took}; {len(pending)} runs to start")
                    else:
                        failed.append(r.step.name)
                        log(
                            f"FAILED {r.step.name} (exit {r.process.returncode}) after {took}; "
                            f"see {Path(args.output_dir) / 'logs'}"
                        )
                    log(f"estimated: {estimate(args, pending + [x.step for x in running], measured=steps)}")
    except SignalReceivedError as stop:
        stopped_by = str(stop)
        log(f"{stopped_by}: stopping {len(running)} running step(s)")
        stop_all(running, log)
        log("stopped; run the same command again to resume")
        return 128 + int(getattr(signal, stopped_by, signal.SIGTERM))
    # the figures: with every run reused, seconds each
    for step, note in figure_steps(args):
        if step is None:
            log(note)
            continue
        log(f"figure {note}: {step.shown()}")
        done = subprocess.run(step.command(), cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            failed.append(step.name)
            log(f"FAILED {step.name} (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
        else:
            for line in done.stdout.strip().splitlines():
                log(f"  {line}")
    left = [s for s in steps if remaining_epochs(args, s)]
    took = _fmt_duration(time.perf_counter() - began)
    if failed:
        log(f"finished in {took} with {len(failed)} failure(s): {', '.join(failed)}")
        return 1
    if left:
        log(f"paused after {took}: {len(left)} runs not complete (run the same command again)")
        return 0
    log(f"complete in {took}: every run and figure of the campaign is written to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Args))
