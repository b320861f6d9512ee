"""The paper-figure drivers' shared part: run each (model, seed) as a command, then draw the figure.

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, section 4 (Figs. 4-8) and
appendix 7.3 (Tables 3 and 4). As CleanRL's benchmark utility runs its single-file
scripts, a figure script here runs one training command per model and seed, and reads
what the command wrote; it trains nothing itself:

- ``examples/train_wpl.py`` for every routed model: WPL routers (``routing-all-fc``, its
  recurrent +PASS variant), and with ``--learner`` the REINFORCE / Q-learning routers of
  Fig. 4 and the single-agent and dispatched configurations of Fig. 5;
- ``examples/train_baseline.py --model M`` for the non-routed baselines (any model it
  knows, see :data:`routing_env.baselines.ALL_BASELINE_NAMES`).

Each command gets its run folder as ``--output-dir RUNS_DIR --run-name NAME``, the name
made of every setting that changes what it trains (:func:`run_name`). A run folder that
is already there is never deleted unless ``--overwrite`` says so (:func:`run_model`):

- it holds the requested epochs: reused as it is (the first ``--epochs`` rows of a longer
  run are what a shorter run gives: no schedule depends on the total);
- it was cut short after a checkpoint: resumed (``train_wpl.py --resume``, in the routing
  path it was trained with; a REINFORCE / Q-learning folder of the former in-process
  runner, kind ``paper-agents``, resumes the same way);
- it has no finished epoch and no checkpoint (killed in its first epoch): set aside as
  ``NAME.unfinished-<UTC time>`` and trained again;
- anything else (another kind of run, other settings in its ``config.json``, or epochs
  but no checkpoint): refused with what differs, unless ``--overwrite`` (deleted, trained
  again).

After every run the figure's CSV (one row per model, seed and epoch, read from the
runs' ``metrics.csv`` and ``config.json``), its statistics (``<figure>_<dataset>_stats.csv``,
:mod:`seed_stats`), PNG (mean curves with bands) and JSON (the command, budget, setting,
run folders, each run's command and routing path) are rewritten.

The two settings (``--setting``): the training scripts' defaults (Adam at 1e-3 divided by
10 every 10 epochs, rho 0, routed fc layers of 128 units, a constant WPL policy learning
rate) and the paper's (SGD at 1e-2 divided by 10 every 20 epochs, the paper's rho, routed
fc layers of 48 units as in appendix 7.2, the WPL policy learning rate on the blocks'
schedule). ``--hidden`` and ``--policy-lr-schedule`` override the width and the schedule.

This module is imported by the scripts next to it (``python examples/paper/<script>.py``
puts this folder on ``sys.path``); it has no command line.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure as PlotFigure
from matplotlib.ticker import MaxNLocator, NullLocator
from seed_stats import STATS_COLUMNS, band, figure_statistics, paired_difference

from agents.wpl import WPLWeighting
from routing_env.baselines import ALL_BASELINE_NAMES
from routing_env.experiments import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RESUMABLE_OPTIONS,
    DatasetName,
    DatasetOptions,
    RunLock,
    check_run_kind,
    machine_info,
    read_config,
    resolve_device,
    run_kind,
    with_current_names,
)

EXAMPLES = Path(__file__).resolve().parents[1]
#: How the figures and Table 2 name each dataset (every :data:`~routing_env.datasets.DatasetName`).
DATASET_LABELS = {
    "digits-mtl": "digits-MTL",
    "mnist-mtl": "MNIST-MTL",
    "fashion-mtl": "Fashion-MTL",
    "cifar-mtl": "CIFAR-MTL",
    "min-mtl": "MIN-MTL",
}

#: The epochs at which the paper's Table 2 reports accuracy.
TABLE2_EPOCHS = (1, 5, 10, 20, 50, 100)

#: Columns of a figure's CSV.
CSV_COLUMNS = [
    "figure",
    "dataset",
    "model",
    "label",
    "seed",
    "epoch",
    "test_accuracy",
    "test_accuracy_stochastic",
    "validation_accuracy",
    "pure_fraction",
    "train_accuracy",
    "lr",
    "train_samples",
    "test_samples",
    "epoch_time_s",
    "wall_time_s",
]


# ============================================================== the models
@dataclass(frozen=True)
class Model:
    """One model of the paper's Figs. 4-8 and the training command that trains it.

    Attributes:
        name: The model's id (the paper's name where it has one).
        runner: ``"wpl"`` (``train_wpl.py`` with WPL routers), ``"agents"`` (``train_wpl.py
            --learner``: REINFORCE / Q-learning routers) or ``"baseline"`` (``train_baseline.py``).
        options: The training script's options that differ from its defaults.
        description: What the paper calls it (appendix 7.3).
    """

    name: str
    runner: Literal["wpl", "baseline", "agents"]
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def script(self) -> str:
        """The training script's file name in ``examples/``."""
        return "train_baseline.py" if self.runner == "baseline" else "train_wpl.py"


MODELS: dict[str, Model] = {
    m.name: m
    for m in [
        Model(
            "routing-all-fc",
            "wpl",
            description="MARL:WPL: one tabular WPL agent per task (train_wpl.py's defaults)",
        ),
        Model(
            "routing-all-fc-recurrent",
            "wpl",
            {"routing": "recurrent"},
            description="routing-all-fc recurrent/+PASS: any block of fitting width at any depth, or PASS",
        ),
        Model(
            "routing-all-fc-single-agent",
            "agents",
            {"router": "single", "learner": "reinforce-mlp"},
            "REINFORCE: single agent, one MLP per depth on concat(v, one-hot(t))",
        ),
        Model(
            "routing-all-fc-dispatched",
            "agents",
            {"router": "dispatched", "learner": "reinforce-mlp"},
            "a REINFORCE dispatcher picks one of T REINFORCE routers (one MLP per depth each)",
        ),
        Model(
            "reinforce-per-task-approx",
            "agents",
            {"router": "per_task", "learner": "reinforce-mlp"},
            "REINFORCE: one agent per task, one MLP per depth on concat(v, one-hot(t))",
        ),
        Model(
            "qlearning-per-task-approx",
            "agents",
            {"router": "per_task", "learner": "qlearning-mlp"},
            "Q-learning: one agent per task, one MLP per depth on concat(v, one-hot(t))",
        ),
        Model(
            "qlearning-per-task-table",
            "agents",
            {"router": "per_task", "learner": "qlearning-table"},
            "Q-learning: one agent per task, a table per depth and block",
        ),
        Model(
            "routing-all-fc-pcgrad",
            "wpl",
            {"aggregator": "pcgrad"},
            "beyond the paper: routing-all-fc with the shared blocks trained by PCGrad (Yu et al., 2020)",
        ),
        Model("task-specific-1-fc", "baseline", {"model": "task-specific-1-fc"}),
        Model("task-specific-all-fc", "baseline", {"model": "task-specific-all-fc"}),
        Model("cross-stitch-all-fc", "baseline", {"model": "cross-stitch-all-fc"}),
        Model("soft-mixture-all-fc", "baseline", {"model": "soft-mixture-all-fc"}),
    ]
}


def model_of(name: str) -> Model:
    """The model called ``name``: one of :data:`MODELS`, or any baseline ``train_baseline.py`` knows."""
    if name in MODELS:
        return MODELS[name]
    if name in ALL_BASELINE_NAMES:
        return Model(name, "baseline", {"model": name})
    raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS) + list(ALL_BASELINE_NAMES)}")


#: Routed models since the paper that Figs. 6-8 take besides any baseline.
BEYOND_THE_PAPER: tuple[str, ...] = ("routing-all-fc-pcgrad",)


@dataclass(frozen=True)
class Figure:
    """A figure of the paper: its models (in the order they are run) and their labels.

    ``any_baseline``: ``--models`` may also name any baseline of ``train_baseline.py``
    (Figs. 6-8, routing against the baselines), labelled by its name.
    """

    number: str
    key: str
    title: str
    paper_dataset: str
    labels: Mapping[str, str]
    any_baseline: bool = False

    @property
    def models(self) -> list[str]:
        return list(self.labels)

    def accepts(self) -> list[str]:
        """The models ``--models`` may name for this figure."""
        later = [*ALL_BASELINE_NAMES, *BEYOND_THE_PAPER]
        extra = [m for m in later if m not in self.labels] if self.any_baseline else []
        return self.models + extra

    def label(self, name: str) -> str:
        return self.labels.get(name, name)


FIG4 = Figure(
    "4",
    "fig04_rl_algorithms",
    "influence of the RL algorithm",
    "cifar-mtl",
    {
        "routing-all-fc": "MARL:WPL (table)",
        "qlearning-per-task-table": "Q-learning: table",
        "qlearning-per-task-approx": "Q-learning: approx",
        "reinforce-per-task-approx": "REINFORCE: per-task approx",
        "routing-all-fc-single-agent": "REINFORCE: single agent approx",
    },
)
FIG5 = Figure(
    "5",
    "fig05_architectures",
    "routing architectures",
    "cifar-mtl",
    {
        "routing-all-fc": "routing-all-fc",
        "routing-all-fc-recurrent": "routing-all-fc recurrent/+PASS",
        "routing-all-fc-dispatched": "routing-all-fc dispatched",
        "soft-mixture-all-fc": "soft-mixture-all-fc",
        "routing-all-fc-single-agent": "routing-all-fc single agent",
    },
)
_VS_BASELINES = {
    "routing-all-fc": "routing-all-fc",
    "cross-stitch-all-fc": "cross-stitch-all-fc",
    "task-specific-1-fc": "task-specific-1-fc",
    "task-specific-all-fc": "task-specific-all-fc",
}
FIG6 = Figure("6", "fig06_routing_vs_baselines", "routing vs baselines", "cifar-mtl", _VS_BASELINES, True)
FIG7 = Figure("7", "fig07_routing_vs_baselines", "routing vs baselines", "min-mtl", _VS_BASELINES, True)
FIG8 = Figure(
    "8",
    "fig08_routing_vs_baselines",
    "routing vs baselines",
    "mnist-mtl",
    {**_VS_BASELINES, "soft-mixture-all-fc": "soft-mixture-all-fc"},
    any_baseline=True,
)
FIGURES = {f.number: f for f in (FIG4, FIG5, FIG6, FIG7, FIG8)}


#: The paper's Table 2 (% test accuracy after epochs 1, 5, 10, 20, 50, 100; 3 runs each).
#: Transcribed from the text of the paper, whose table cells are partly garbled; None
#: where a cell is illegible there. Fig. 5's routing-all-fc and Fig. 6's are the run of
#: Fig. 4's MARL:WPL (identical rows), whose epoch-1 cell reads 31.
PAPER_TABLE2: dict[str, dict[str, tuple[int | None, ...]]] = {
    "4": {
        "reinforce-per-task-approx": (None, 20, 20, 20, 20, 20),  # "REINFORCE: approx"
        "qlearning-per-task-approx": (None, 20, 20, 20, 24, 25),
        "qlearning-per-task-table": (None, 36, 47, 50, 55, 55),
        "routing-all-fc": (31, 53, 57, 58, 60, 60),
    },
    "5": {
        "routing-all-fc": (31, 53, 57, 58, 60, 60),
        "routing-all-fc-recurrent": (31, 43, 45, 48, 48, 46),
        "routing-all-fc-dispatched": (None, 23, 28, 37, 42, 41),
        "soft-mixture-all-fc": (None, 24, 27, 30, 32, 35),
        "routing-all-fc-single-agent": (None, 23, 33, 42, 44, 44),
    },
    "6": {
        "routing-all-fc": (31, 53, 57, 58, 60, 60),
        "task-specific-all-fc": (None, 29, 33, 36, 42, 42),
        "task-specific-1-fc": (27, 34, 39, 42, 48, 49),
        "cross-stitch-all-fc": (26, 37, 42, 49, 52, 53),
    },
    "7": {
        "routing-all-fc": (34, 54, 57, 55, 58, 57),
        "task-specific-all-fc": (22, 30, 37, 43, 47, 48),
        "task-specific-1-fc": (29, 38, 43, 46, 51, 51),
        "cross-stitch-all-fc": (29, 41, 48, 53, 56, 55),
    },
    "8": {
        "routing-all-fc": (90, 90, 98, 99, 99, 99),
        "task-specific-all-fc": (90, 91, 94, 95, 95, 96),
        "task-specific-1-fc": (90, 90, 91, 92, 93, 95),
        "soft-mixture-all-fc": (90, 90, 90, 90, 90, 90),
        "cross-stitch-all-fc": (90, 90, 90, 90, 90, 90),
    },
}


#: The paper's block training (section 4): "The learning rate is initialized to 10-2 and
#: annealed by dividing by 10 every 20 epochs", with SGD ("We tried both regular SGD as
#: well as Adam [...] but chose SGD"). ``--setting paper`` applies it to every model.
PAPER_BLOCK_TRAINING: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 1e-2,
    "lr_decay_every": 20,
    "lr_decay_factor": 0.1,
}
#: The paper's collaboration reward: "rho = 0.0 [...] for CIFAR-MTL and MIN-MTL and rho = 0.3
#: for MNIST-MTL". The datasets that are not the paper's get MNIST-MTL's: digits-MTL (the
#: offline stand-in for MNIST-MTL) and Fashion-MTL (MNIST-MTL's construction on Fashion-MNIST,
#: 10 one-vs-rest tasks on 28x28 grey images); the paper swept rho per dataset, not for these.
PAPER_RHO = {"cifar-mtl": 0.0, "min-mtl": 0.0, "mnist-mtl": 0.3, "digits-mtl": 0.3, "fashion-mtl": 0.3}

#: Units of the routed fc layers in each setting: section 4 says "3 fully connected layers,
#: with 128 hidden units each" (the training scripts' default); appendix 7.2 gives the routed
#: layers as "(convolution -> 48), (48 -> 48), (48 -> #classes)", which the authors' code uses.
#: ``--setting paper`` takes 48; ``--hidden`` overrides either.
HIDDEN_WIDTH = {"defaults": 128, "paper": 48}
#: The training scripts' own fc width (``--hidden-width``): run folders trained with it carry
#: no width in their name (they were named before ``--hidden`` existed).
SCRIPT_HIDDEN_WIDTH = 128

#: The WPL policy learning-rate schedule of each setting (``train_wpl.py --policy-lr-schedule``):
#: the scripts' constant rate, or in the paper's setting the blocks' schedule ("The learning
#: rate is initialized to 10-2 and annealed by dividing by 10 every 20 epochs", one schedule
#: for routing and blocks: the policy rate is divided by 10 with the blocks' every 20 epochs).
POLICY_LR_SCHEDULE: dict[str, Literal["constant", "blocks"]] = {"defaults": "constant", "paper": "blocks"}

SETTING_LABELS = {
    "defaults": "Adam 1e-3 (the scripts' defaults)",
    "paper": "SGD 1e-2 (the paper's setting)",
}


# ============================================================== command line
@dataclass
class PaperArgs(DatasetOptions):
    """Options every paper-figure script shares (after the dataset options)."""

    dataset: DatasetName = "cifar-mtl"
    """multi-task dataset (digits-mtl ships with scikit-learn; the others are read from --data-root)"""
    validation_fraction: float | None = 0.1
    """share of the training images every run sets aside as its validation split (the training scripts' --validation-fraction; none: no validation split)"""
    epochs: int = 100
    """training epochs of every run (the paper: 100)"""
    seeds: int = 3
    """runs per model, seeds 0..N-1 (the paper: 3)"""
    first_seed: int = 0
    """train and show only seeds FIRST_SEED..N-1 (a campaign runs seed k of a model as --first-seed k --seeds k+1, the seeds of one model side by side)"""
    setting: Literal["defaults", "paper"] = "defaults"
    """block training of every model: the training scripts' defaults (Adam 1e-3, /10 every 10 epochs, rho 0, routed fc width 128, constant WPL policy lr) or the paper's (SGD 1e-2, /10 every 20 epochs, rho 0.3 on MNIST-MTL, Fashion-MTL and digits-MTL, routed fc width 48 as in appendix 7.2 and the authors' code, and the WPL policy lr on the blocks' schedule)"""
    hidden: int | None = None
    """units of the routed fc layers of every model (the scripts' --hidden-width; none: the setting's, 128 for defaults (section 4), 48 for paper (appendix 7.2, the authors' code))"""
    policy_lr_schedule: Literal["constant", "blocks"] | None = None
    """WPL policy learning rate of the routing-all-fc models (train_wpl.py --policy-lr-schedule; none: the setting's, constant for defaults, blocks for paper: divided by 10 with the block lr)"""
    wpl_weighting: WPLWeighting = "paper"
    """sign of the WPL routers' gradient weighting (train_wpl.py --wpl-weighting): paper (section 3.1.2, Algorithm 3) or abdallah-lesser (appendix 7.4); the figure files of abdallah-lesser are named apart (_al), the run folders are not (a run folder of the other rule is refused, naming the difference)"""
    tuned: str | None = None
    """a JSON of chosen settings per model written by examples/paper/tune.py (chosen on validation accuracy): each model's options there replace the setting's; runs and figures are named apart (-tuned)"""
    models: str = ""
    """comma-separated models to run (default: all of the figure's, in its order); Figs. 6-8 also take any model of examples/train_baseline.py --model"""
    output_dir: str = "runs/paper"
    """folder that receives the figure's CSV, PNG and JSON"""
    runs_dir: str = "runs/paper"
    """folder of the per-run folders (metrics, checkpoints); complete runs found there are reused, runs cut short resumed"""
    reinforce_lr: float = 1e-2
    """Adam learning rate of the REINFORCE routers' and the dispatcher's MLPs (the agents' default)"""
    qlearning_lr: float = 0.1
    """step size of tabular Q-learning (the agent's default)"""
    qlearning_mlp_lr: float = 1e-3
    """Adam learning rate of the Q-learning MLPs"""
    epsilon: float = 0.1
    """exploration rate of the Q-learning routers (epsilon-greedy; the agent's default)"""
    router_update: Literal["trace", "minibatch"] = "trace"
    """how the REINFORCE / Q-learning MLP routers and their dispatcher learn (train_wpl.py --router-update): trace, one optimizer step per sample's trace (the default), or minibatch, one step per minibatch on the mean of its traces' losses (an epoch about 1.7x faster on a CPU, benchmarks/router_update.py; a different learning rule, so it is in the run folders' names, -mb, and the figure's, _mb). The tabular and WPL routers learn trace by trace either way"""
    progress: bool = True
    """draw the training scripts' progress bar on stderr (terminals only)"""
    torch_threads: int = 1
    """torch intra-op threads; 1 keeps results the same on any core count"""
    device: str | None = None
    """torch device of every run's network and of the REINFORCE / Q-learning MLPs (e.g. cuda; none: cpu)"""
    aec: bool = False
    """train the routers sample by sample through the PettingZoo AEC env (train_wpl.py --aec: the reference interface, the same game, about 2-3x slower) instead of one minibatch per step; the baselines train the same either way. A run found in --runs-dir keeps its own path: a complete run is reused, a router run cut short resumes in its path"""
    overwrite: bool = False
    """delete and train again a run folder in --runs-dir that can be neither reused nor resumed (another kind of run, other settings in its config.json, or finished epochs without a checkpoint); without it such a folder is refused, naming what differs, and nothing is deleted"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 1 or self.seeds < 1:
            raise ValueError(f"--epochs and --seeds must be >= 1, got {self.epochs} and {self.seeds}")
        if not 0 <= self.first_seed < self.seeds:
            raise ValueError(
                f"--first-seed must be in 0..--seeds - 1 = {self.seeds - 1}, got {self.first_seed}"
            )
        if self.torch_threads < 1:
            raise ValueError(f"--torch-threads must be >= 1, got {self.torch_threads}")
        if self.hidden is not None and self.hidden < 1:
            raise ValueError(f"--hidden must be >= 1 or none, got {self.hidden}")
        if self.router_update == "minibatch" and self.aec:
            raise ValueError(
                "--router-update minibatch needs the batched path: the AEC path (--aec) hands the "
                "routers one sample's trace at a time"
            )

    def seed_list(self) -> list[int]:
        """The seeds this invocation trains and shows: ``first_seed .. seeds - 1``."""
        return list(range(self.first_seed, self.seeds))

    def hidden_width(self) -> int:
        """The routed fc width of every run: ``--hidden``, else the setting's (:data:`HIDDEN_WIDTH`)."""
        return HIDDEN_WIDTH[self.setting] if self.hidden is None else self.hidden

    def wpl_policy_lr_schedule(self) -> Literal["constant", "blocks"]:
        """The WPL policy-lr schedule: ``--policy-lr-schedule``, else the setting's."""
        if self.policy_lr_schedule is None:
            return POLICY_LR_SCHEDULE[self.setting]
        return self.policy_lr_schedule

    def setting_label(self) -> str:
        """The setting, fc width and WPL policy-lr schedule in words (figure subtitles)."""
        schedule = "on the blocks' schedule" if self.wpl_policy_lr_schedule() == "blocks" else "constant"
        label = (
            f"{SETTING_LABELS[self.setting]}, routed fc width {self.hidden_width()}, WPL policy lr {schedule}"
        )
        if self.router_update == "minibatch":
            label += ", MLP routers one step per minibatch"
        return label

    def model_names(self, figure: Figure) -> list[str]:
        """The models to run: ``--models`` (checked against :meth:`Figure.accepts`), else the figure's."""
        if not self.models.strip():
            return figure.models
        names = [m.strip() for m in self.models.split(",") if m.strip()]
        unknown = [m for m in names if m not in figure.accepts()]
        if unknown:
            raise ValueError(
                f"--models: {unknown} not in Fig. {figure.number}; expected some of {figure.accepts()}"
            )
        return names

    def runs_path(self) -> Path:
        return Path(self.runs_dir)

    def tuned_options(self, model: Model) -> dict[str, Any]:
        """The options ``--tuned`` chose for ``model`` (empty without ``--tuned`` or for a model it did not tune)."""
        if self.tuned is None:
            return {}
        return dict(read_tuned(self.tuned, dataset=self.dataset, setting=self.setting).get(model.name, {}))


# ============================================================== chosen settings
def read_tuned(path: str | os.PathLike[str], *, dataset: str, setting: str) -> dict[str, dict[str, Any]]:
    """The options chosen per model in ``path`` (written by ``tune.py``) for ``dataset`` and ``setting``.

    Raises:
        ValueError: When the file is not such a JSON, or was chosen for another dataset or
            block-training setting, naming both.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"--tuned {path}: cannot read the chosen settings ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("chosen"), dict):
        raise ValueError(
            f"--tuned {path}: not a file of chosen settings (no 'chosen' table); write one with tune.py"
        )
    if data.get("dataset") != dataset or data.get("setting") != setting:
        raise ValueError(
            f"--tuned {path}: chosen on {data.get('dataset')} in the {data.get('setting')} setting, but these runs "
            f"are {dataset} in the {setting} setting"
        )
    return {str(k): dict(v) for k, v in data["chosen"].items()}


# ============================================================== the runs as commands
def run_name(model: Model, args: PaperArgs, seed: int) -> str:
    """The run folder of a model: every setting that changes what it trains is in the name.

    The budget (data seed, subset sizes), ``-<setting>`` unless the defaults, ``-h<width>``
    unless the scripts' 128 units, for a WPL run ``-plr-<schedule>`` unless the
    constant policy rate, and for MLP routers ``-mb`` with ``--router-update minibatch``.
    Folders named before ``--hidden`` and ``--policy-lr-schedule`` existed (width 128,
    constant rate) keep their names, so that a run with other settings never lands in
    one of them; :func:`reuse_problem` checks the rest.
    """
    train = "all" if args.max_train_samples is None else str(args.max_train_samples)
    test = "all" if args.max_test_samples is None else str(args.max_test_samples)
    setting = "" if args.setting == "defaults" else f"-{args.setting}"
    width = args.hidden_width()
    if width != SCRIPT_HIDDEN_WIDTH:
        setting += f"-h{width}"
    if model.runner == "wpl" and args.wpl_policy_lr_schedule() != "constant":
        setting += f"-plr-{args.wpl_policy_lr_schedule()}"
    if minibatch_update(model, args):
        setting += "-mb"
    if args.tuned_options(model):
        setting += "-tuned"
    if args.validation_fraction is not None:
        setting += f"-v{args.validation_fraction:g}"
    return f"{model.name}-{args.dataset}-d{args.data_seed}-n{train}-t{test}{setting}-s{seed}"


#: The ``--learner`` values whose routers are MLPs, which ``--router-update minibatch`` trains.
MLP_LEARNERS = ("reinforce-mlp", "qlearning-mlp")


def minibatch_update(model: Model, args: PaperArgs) -> bool:
    """Whether ``model``'s routers learn one step per minibatch (``--router-update minibatch``
    and MLP routers; the tabular and WPL routers learn trace by trace either way)."""
    return args.router_update == "minibatch" and model.options.get("learner") in MLP_LEARNERS


def output_stem(figure: Figure, args: PaperArgs) -> str:
    """The name of a figure's CSV, PNG and JSON: the setting is in it unless it is the default,
    and so are a width (``_h<width>``) and a WPL schedule (``_plr-<schedule>``) other than the
    setting's, and ``_mb`` for ``--router-update minibatch``."""
    setting = "" if args.setting == "defaults" else f"_{args.setting}-setting"
    if args.hidden_width() != HIDDEN_WIDTH[args.setting]:
        setting += f"_h{args.hidden_width()}"
    if args.wpl_policy_lr_schedule() != POLICY_LR_SCHEDULE[args.setting]:
        setting += f"_plr-{args.wpl_policy_lr_schedule()}"
    if args.router_update == "minibatch":
        setting += "_mb"
    if args.wpl_weighting != "paper":
        setting += "_al"
    if args.tuned is not None:
        setting += "_tuned"
    return f"{figure.key}_{args.dataset}{setting}"


def setting_options(args: PaperArgs, model: Model) -> dict[str, Any]:
    """The training scripts' options that ``--setting`` (with ``--hidden`` and
    ``--policy-lr-schedule``) sets for ``model``."""
    options: dict[str, Any] = {"hidden_width": args.hidden_width()}
    if model.runner == "wpl":  # the REINFORCE / Q-learning routers have their own step sizes
        options["policy_lr_schedule"] = args.wpl_policy_lr_schedule()
        options["wpl_weighting"] = args.wpl_weighting
    if args.setting == "paper":
        options.update(PAPER_BLOCK_TRAINING)
        if model.runner != "baseline":  # the baselines have no router, hence no rho
            options["rho"] = PAPER_RHO[args.dataset]
    return options


#: The options of the REINFORCE / Q-learning runs the figure passes on (``train_wpl.py``'s flags too).
LEARNER_OPTIONS = ("reinforce_lr", "qlearning_lr", "qlearning_mlp_lr", "epsilon")
#: The dataset options' defaults, shared by the figure scripts and the training scripts.
DATASET_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DatasetOptions)}


def run_options(model: Model, args: PaperArgs, seed: int) -> dict[str, Any]:
    """The options of the training command of ``model``'s run with ``seed``, by field name.

    Dataset options at their (shared) defaults are left out, and so are the run folder,
    the terminal and the machine (:func:`run_command` adds them).
    """
    options = dict(model.options)
    options["dataset"] = args.dataset
    for name in ("data_root", "download", "data_seed", "max_train_samples", "max_test_samples"):
        if getattr(args, name) != DATASET_DEFAULTS[name]:
            options[name] = getattr(args, name)
    options["validation_fraction"] = args.validation_fraction  # the scripts' default is not None
    if args.min_per_class is not None and args.dataset == "min-mtl":
        options["min_per_class"] = args.min_per_class
    if model.runner != "baseline":  # the baselines have no routing path
        options["aec"] = args.aec
    options.update(setting_options(args, model))
    if model.runner == "agents":
        options.update({name: getattr(args, name) for name in LEARNER_OPTIONS})
    if minibatch_update(model, args):  # left out at the default, as in runs written before it
        options["router_update"] = "minibatch"
    options.update(
        model.options
    )  # a model's own options win over the setting's (a tuning sweep's configurations)
    options.update(args.tuned_options(model))  # and the options chosen for it on validation win over both
    options.update(seed=seed, epochs=args.epochs)
    return options


def flags(options: Mapping[str, Any]) -> list[str]:
    """``--name value`` for each option (``--name`` / ``--no-name`` for a bool, ``none`` for None)."""
    out = []
    for name, value in options.items():
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            out.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            out += [f"--{flag}", "none" if value is None else str(value)]
    return out


def run_command(model: Model, args: PaperArgs, seed: int, run_dir: Path, *, resume: bool) -> list[str]:
    """The command that trains (``resume``: continues) the run of ``model`` in ``run_dir``.

    The script runs by its path next to this folder with this Python, so the command
    works wherever the examples are (an installed package, a checkout). A resumed run
    takes its options from its own ``config.json`` (``train_wpl.py --resume``).
    """
    options: dict[str, Any] = (
        {"resume": str(run_dir), "epochs": args.epochs}
        if resume
        else {**run_options(model, args, seed), "output_dir": str(run_dir.parent), "run_name": run_dir.name}
    )
    options.update(progress=args.progress, torch_threads=args.torch_threads)
    if not resume:
        options["tensorboard"] = False
    if args.device is not None:
        options["device"] = args.device
    return [sys.executable, str(EXAMPLES / model.script), *flags(options)]


def equivalent_command(model: Model, args: PaperArgs, seed: int, *, aec: bool | None = None) -> str:
    """The single-run command that trains the same run into ``runs/`` (the JSON's and Table 2's).

    ``aec``: the routing path the run was trained with, when it is not ``args.aec`` (a
    run folder reused or resumed keeps its own, see :func:`routing_path`).
    """
    options = run_options(model, args, seed)
    if aec is not None and "aec" in options:
        options["aec"] = aec
    return shlex.join(["python", f"examples/{model.script}", *flags(options)])


#: Options of a run folder's ``config.json`` that may differ from what the figure asks for
#: when the run is reused or resumed: those a resumed training script may change, and the
#: routing path (the same game either way; a run keeps the path it was trained with).
REUSE_MAY_DIFFER = RESUMABLE_OPTIONS | {"aec"}
#: What a run trained with when its ``config.json`` does not record an option: the value
#: the script had before the option existed (options are added with the old behaviour).
UNRECORDED = {
    "policy_lr_schedule": "constant",
    "hidden_width": SCRIPT_HIDDEN_WIDTH,
    "validation_fraction": None,
    "wpl_weighting": "abdallah-lesser",
}
#: The run kinds (``config.json``'s ``"kind"``) each runner reuses and resumes;
#: ``paper-agents``: REINFORCE / Q-learning runs of the former in-process runner.
RUN_KINDS_OF = {"wpl": ("wpl",), "agents": ("wpl", "paper-agents"), "baseline": ("baseline",)}


def reuse_problem(model: Model, args: PaperArgs, seed: int, run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` is not the run of ``model`` with ``seed`` asked for (None: it is).

    Every option of :func:`run_options` must be in its ``config.json`` with the same value
    (a ``paper-agents`` run's nested ``learner_options`` count), but the ones of
    :data:`REUSE_MAY_DIFFER`; an option not recorded must ask for :data:`UNRECORDED`'s value.
    """
    try:
        if run_kind(run_dir) not in RUN_KINDS_OF[model.runner]:
            check_run_kind(run_dir, expected=RUN_KINDS_OF[model.runner][0])  # raises, naming its script
        saved = read_config(run_dir)
    except (OSError, ValueError) as err:
        return str(err)
    saved = with_current_names({**saved.get("learner_options", {}), **saved})
    differ = []
    for name, value in run_options(model, args, seed).items():
        if name in REUSE_MAY_DIFFER:
            continue
        if name in saved:
            if saved[name] != value:
                differ.append(f"{name}={saved[name]!r} (now {value!r})")
        elif name not in UNRECORDED:
            differ.append(f"{name} not recorded (now {value!r})")
        elif UNRECORDED[name] != value:
            differ.append(
                f"{name} not recorded: the default {UNRECORDED[name]!r} of a run written before it (now {value!r})"
            )
    return f"{run_dir} holds a run with other settings: {'; '.join(differ)}." if differ else None


def completed_epochs(run_dir: Path) -> int:
    """The epochs in ``run_dir/metrics.csv`` (0 when there is none)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return 0
    with path.open(newline="", encoding="utf-8") as fh:
        return sum(1 for _ in csv.DictReader(fh))


def routing_path(model: Model, run_dir: Path) -> Literal["batched", "aec"] | None:
    """The routing path the run in ``run_dir`` was trained with (None for a baseline).

    A ``config.json`` without ``"aec"`` was written before the batched path existed: an
    AEC run (``train_wpl.py`` resumes it in that path too).
    """
    if model.runner == "baseline":
        return None
    return "aec" if read_config(run_dir).get("aec", True) else "batched"


def run_model(model: Model, args: PaperArgs, seed: int) -> Path:
    """Reuse, resume or train the run of ``model`` with ``seed`` (see the module's docstring).

    The training command's output goes to stderr: stdout is kept for the figure's results.

    Raises:
        ValueError: When the run folder can be neither reused nor resumed and
            ``--overwrite`` is not given (nothing is changed).
        RuntimeError: When the training command fails.
    """
    run_dir = args.runs_path() / run_name(model, args, seed)
    resume = False
    if run_dir.is_dir() and any(p.name != ".lock" for p in run_dir.iterdir()):
        done, problem = completed_epochs(run_dir), reuse_problem(model, args, seed, run_dir)
        checkpoint = (run_dir / CHECKPOINT_FILE).is_file()
        path = routing_path(model, run_dir) if problem is None else None
        trained_in = f", {'AEC' if path == 'aec' else 'batched'} path" if path else ""
        if problem is None and done >= args.epochs:
            print(f"  reusing {run_dir} ({done} epochs{trained_in})", file=sys.stderr)
            return run_dir
        if problem is None and checkpoint:
            print(f"  resuming {run_dir} after epoch {done}{trained_in}", file=sys.stderr)
            resume = True
        elif problem is None and not done:  # killed in its first epoch: nothing finished in it
            aside = run_dir.with_name(
                f"{run_dir.name}.unfinished-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
            )
            with RunLock(run_dir):  # RunInUseError while a run is training there
                run_dir.rename(aside)
            print(f"  {run_dir} has no finished epoch: set aside as {aside.name}", file=sys.stderr)
        else:
            problem = problem or f"{run_dir} holds {done} epochs but no checkpoint to resume from."
            if not args.overwrite:
                raise ValueError(
                    f"{problem} Nothing was changed: pass --overwrite to delete that folder and train "
                    "the run again, or another --runs-dir."
                )
            print(f"  --overwrite: deleting {run_dir}: {problem}", file=sys.stderr)
            with RunLock(run_dir):  # RunInUseError while a run is training there
                shutil.rmtree(run_dir)
    command = run_command(model, args, seed, run_dir, resume=resume)
    # stdout=2: the script's epoch lines go to this process's stderr (a file descriptor,
    # which sys.stderr need not have)
    finished = subprocess.run(command, stdout=2, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed with exit status {finished.returncode}")
    return run_dir


def changed_options(args: Any) -> dict[str, Any]:
    """The fields of the dataclass ``args`` that differ from their defaults (a figure's command)."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(args)
        if f.default is dataclasses.MISSING or getattr(args, f.name) != f.default
    }


# ============================================================== collecting and plotting
def _float(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def _seconds(text: str) -> float | None:
    return round(float(text), 2) if text not in ("", None) else None


def collect_rows(
    figure: Figure, args: PaperArgs, runs: Sequence[tuple[str, int, Path]]
) -> list[dict[str, Any]]:
    """The figure's CSV rows from the run folders ``(model, seed, run_dir)``: the first ``--epochs``."""
    rows = []
    for model, seed, run_dir in runs:
        config = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        sizes = config.get("dataset_sizes", {})
        with (run_dir / METRICS_FILE).open(newline="", encoding="utf-8") as fh:
            metrics = list(csv.DictReader(fh))[: args.epochs]
        for m in metrics:
            rows.append(
                {
                    "figure": figure.number,
                    "dataset": args.dataset,
                    "model": model,
                    "label": figure.label(model),
                    "seed": seed,
                    "epoch": int(m["epoch"]),
                    "test_accuracy": _float(m["test_accuracy"]),
                    "test_accuracy_stochastic": _float(m["test_accuracy_stochastic"]),
                    "validation_accuracy": _float(m.get("validation_accuracy", "")),
                    "pure_fraction": _float(m.get("pure_fraction", "")),
                    "train_accuracy": _float(m["train_accuracy"]),
                    "lr": _float(m["lr"]),
                    "train_samples": sizes.get("train"),
                    "test_samples": sizes.get("test"),
                    "epoch_time_s": _seconds(m["epoch_time_s"]),
                    "wall_time_s": _seconds(m["wall_time_s"]),
                }
            )
    return rows


#: Columns of a figure's CSV that runs made before them do not have: left out when no row has them.
OPTIONAL_COLUMNS = ("validation_accuracy", "pure_fraction")


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], *, columns: Sequence[str] = CSV_COLUMNS) -> None:
    columns = [c for c in columns if c not in OPTIONAL_COLUMNS or any(r.get(c) is not None for r in rows)]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in columns})


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def figure_title(figure: Figure, dataset: str) -> str:
    title = f"Fig. {figure.number}: {figure.title} on {DATASET_LABELS.get(dataset, dataset)}"
    if dataset != figure.paper_dataset:
        title += f" (substitute for the paper's {DATASET_LABELS[figure.paper_dataset]})"
    return title


def plot(
    figure: Figure, rows: Sequence[Mapping[str, Any]], *, dataset: str, subtitle: str = ""
) -> PlotFigure:
    """Test accuracy (greedy routes) per epoch for each model: the mean over seeds and a band.

    The band is the mean ± the sample standard deviation over seeds from 3 seeds on, and
    the range (min-max) over 2 seeds (:func:`seed_stats.band`); each legend entry says which.
    When ``dataset`` is the paper's for this figure, the paper's Table 2 values are drawn
    as open markers on dashed lines of the same colour.
    """
    fig = PlotFigure(figsize=(7.5, 5.2), layout="constrained")
    ax = fig.subplots()
    paper = PAPER_TABLE2.get(figure.number, {}) if dataset == figure.paper_dataset else {}
    # the figure's models in its order (their colours fixed), then any other model run (--models)
    models = list(dict.fromkeys([*figure.models, *(r["model"] for r in rows)]))
    run_epochs = {int(r["epoch"]) for r in rows if r["test_accuracy"] not in (None, "")}
    single = len(run_epochs) == 1  # one epoch: each model a point, its band an error bar, side by side
    for i, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model and r["test_accuracy"] not in (None, "")]
        color = f"C{i}"
        if mine:
            epochs = sorted({int(r["epoch"]) for r in mine})
            acc = [[100 * float(r["test_accuracy"]) for r in mine if int(r["epoch"]) == e] for e in epochs]
            seeds = len({r["seed"] for r in mine})
            means = [float(np.mean(a)) for a in acc]
            bands = [band(a) for a in acc]
            kinds = sorted({b[2] for b in bands if b is not None}, reverse=True)
            label = f"{figure.label(model)} (ours, {seeds} seed{'s' if seeds > 1 else ''}" + (
                f", {'bar' if single else 'band'} {' / '.join(kinds)})" if kinds else ")"
            )
            if single:
                b = bands[0]
                ax.errorbar(
                    [epochs[0] + 0.06 * (i - (len(models) - 1) / 2)],
                    means,
                    yerr=None if b is None else [[means[0] - b[0]], [b[1] - means[0]]],
                    fmt="o",
                    color=color,
                    markersize=4,
                    capsize=3,
                    label=label,
                )
            else:
                ax.plot(
                    epochs, means, "o-" if len(epochs) < 30 else "-", color=color, markersize=3, label=label
                )
            if kinds and not single:
                ax.fill_between(
                    epochs,
                    [m if b is None else b[0] for m, b in zip(means, bands, strict=True)],
                    [m if b is None else b[1] for m, b in zip(means, bands, strict=True)],
                    color=color,
                    alpha=0.2,
                )
        values = paper.get(model)
        if values is not None:
            points = [(e, v) for e, v in zip(TABLE2_EPOCHS, values, strict=True) if v is not None]
            ax.plot(
                [e for e, _ in points],
                [v for _, v in points],
                "o--",
                color=color,
                mfc="none",
                alpha=0.7,
                label=f"{figure.label(model)} (paper, Table 2)",
            )
    if paper:  # the paper's epochs 1..100 and a short run of ours both stay readable
        ax.set_xscale("log")
        ax.set_xticks(TABLE2_EPOCHS, [str(e) for e in TABLE2_EPOCHS])
        ax.xaxis.set_minor_locator(NullLocator())
        if single:  # room for the side-by-side points left of epoch 1
            ax.set_xlim(left=0.6)
    elif single:
        (only,) = run_epochs
        ax.set_xlim(only - 0.5, only + 0.5)
        ax.set_xticks([only])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch" + (" (log scale)" if paper else ""))
    ax.set_ylabel("test accuracy (%), greedy routes")
    ax.set_title(figure_title(figure, dataset) + (f"\n{subtitle}" if subtitle else ""), fontsize=9)
    ax.grid(alpha=0.3)
    fig.legend(fontsize=7, loc="outside lower center", ncols=2)
    return fig


def git_revision() -> str | None:
    """The checkout's commit (``+dirty`` with uncommitted changes), or None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=EXAMPLES, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=EXAMPLES,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run_figure(figure: Figure, args: PaperArgs, *, script: str) -> dict[str, Path]:
    """Run every (seed, model) of ``figure`` and write its CSV, PNG and JSON after each run.

    Returns:
        The paths written: ``{"csv": ..., "png": ..., "json": ...}``.
    """
    models = args.model_names(figure)  # raises on an unknown model before any work
    resolve_device(args.device)  # raises on a device this machine does not have
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = output_stem(figure, args)
    paths = {kind: out_dir / f"{stem}.{kind}" for kind in ("csv", "png", "json")}
    paths["stats"] = out_dir / f"{stem}_stats.csv"
    context = {
        "figure": figure.number,
        "dataset": args.dataset,
        "setting": args.setting,
        "hidden_width": args.hidden_width(),
        "policy_lr_schedule": args.wpl_policy_lr_schedule(),
    }
    command = shlex.join(["python", script, *flags(changed_options(args))])
    seeds = args.seed_list()
    print(
        f"{figure_title(figure, args.dataset)}: {len(models)} models x {len(seeds)} seeds, "
        f"{args.epochs} epochs each; routers on the {'AEC' if args.aec else 'batched'} path",
        file=sys.stderr,
    )
    started = time.perf_counter()
    revision = git_revision()
    runs: list[tuple[str, int, Path]] = []
    run_info: list[dict[str, Any]] = []
    for seed in seeds:
        for name in models:
            model = model_of(name)
            t0 = time.perf_counter()
            print(
                f"[{len(runs) + 1}/{len(models) * len(seeds)}] {name} seed {seed}",
                file=sys.stderr,
                flush=True,
            )
            run_dir = run_model(model, args, seed)
            runs.append((name, seed, run_dir))
            path = routing_path(model, run_dir)  # a reused or resumed run keeps its own
            run_info.append(
                {
                    "model": name,
                    "seed": seed,
                    "run_dir": str(run_dir),
                    "equivalent_command": equivalent_command(
                        model, args, seed, aec=None if path is None else path == "aec"
                    ),
                    "description": model.description,
                    "routing_path": path,
                }
            )
            rows = collect_rows(figure, args, runs)
            last = [r for r in rows if r["model"] == name and r["seed"] == seed][-1]
            print(
                f"  {name} seed {seed}: test {100 * last['test_accuracy']:.2f}% after epoch {last['epoch']} "
                f"({time.perf_counter() - t0:.0f}s here, {time.perf_counter() - started:.0f}s in all)",
                file=sys.stderr,
                flush=True,
            )
            write_csv(paths["csv"], rows)
            write_csv(paths["stats"], figure_statistics(rows, models, context=context), columns=STATS_COLUMNS)
            sizes = f"{rows[0]['train_samples']} train / {rows[0]['test_samples']} test samples"
            subtitle = f"{args.epochs} epochs, {len(seeds)} seed(s), {sizes}\n{args.setting_label()}"
            plot(figure, rows, dataset=args.dataset, subtitle=subtitle).savefig(paths["png"], dpi=90)
            meta = {
                "figure": figure.number,
                "dataset": args.dataset,
                "command": command,
                "args": dataclasses.asdict(args),
                "epochs": args.epochs,
                "seeds": seeds,
                "setting": args.setting,
                "hidden_width": args.hidden_width(),
                "policy_lr_schedule": args.wpl_policy_lr_schedule(),
                "stats": paths["stats"].name,
                "train_samples": rows[0]["train_samples"],
                "test_samples": rows[0]["test_samples"],
                "runs": run_info,
                "complete": len(runs) == len(models) * len(seeds),
                "git": revision,
                "written_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                "machine": machine_info(),
            }
            paths["json"].write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    rows = collect_rows(figure, args, runs)
    final = {m: [r for r in rows if r["model"] == m and r["epoch"] == args.epochs] for m in models}
    for m, last_rows in final.items():
        accs = [100 * r["test_accuracy"] for r in last_rows]
        spread = f" ± {np.std(accs, ddof=1):.2f}" if len(accs) > 1 else ""
        print(
            f"{figure.label(m):<34} {np.mean(accs):6.2f}%{spread}  (epoch {args.epochs}, {len(accs)} seed(s))"
        )
    reference = "routing-all-fc"
    if reference in models:
        by_seed = {m: {r["seed"]: 100 * r["test_accuracy"] for r in final[m]} for m in models}
        for m in models:
            diff = paired_difference(by_seed[reference], by_seed[m], names=(reference, m))
            if m == reference or diff is None:
                continue
            interval = "" if diff.ci_low is None else f", 95% CI [{diff.ci_low:+.2f}, {diff.ci_high:+.2f}]"
            print(
                f"  {reference} - {m}: {diff.mean:+.2f} points over {diff.n} seed(s){interval}: {diff.note}"
            )
    print(f"wrote {paths['csv']}, {paths['stats']}, {paths['png']} and {paths['json']}", file=sys.stderr)
    return paths
