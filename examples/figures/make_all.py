"""Make every figure of docs/policy_dynamics.md with one command (Figs. 9-13, game dynamics).

Runs the scripts of this folder one after another, in this process, with the budgets of
an example output: ``digits-mtl`` and ``mnist-mtl`` are the commands that made
``docs/figures/`` and ``docs/figures/mnist-mtl/`` (listed in docs/policy_dynamics.md),
``smoke`` is a tiny digits-MTL budget (under a minute) to check that everything runs, and
``fashion-mtl`` runs MNIST-MTL's budgets on Fashion-MTL (on 2,000 of its test samples).
Each step prints its command first, so any one of them can be rerun alone.

``fig12_rho_sweep.py`` and ``game_dynamics.py`` train on the batched path by default;
``--aec`` passes them ``--aec`` (the per-sample AEC path, which made the committed
outputs: they predate the batched path). The recorder always trains through the AEC
env, and ``fig13_training_time.py`` times both paths.

    python examples/figures/make_all.py --preset smoke --output-dir /tmp/figures
    python examples/figures/make_all.py --preset digits-mtl --output-dir docs/figures
    python examples/figures/make_all.py --preset mnist-mtl --data-root ~/data --output-dir docs/figures/mnist-mtl
    python examples/figures/make_all.py --preset mnist-mtl --only fig09,fig10,fig11 --output-dir docs/figures/mnist-mtl
    python examples/figures/make_all.py --preset digits-mtl --aec --output-dir /tmp/figures   # as committed
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from routing_env.experiments import parse_args

FIGURES = Path(__file__).resolve().parent
REC = "--recording {out}/recording.csv.gz"
REC_FIRST100 = "--recording {out}/recording_first100.csv.gz"
#: The steps' scripts that evaluate on the test split (and take --max-test-samples).
TEST_SUBSET_SCRIPTS = frozenset({"record_policy_dynamics", "fig12_rho_sweep", "game_dynamics"})

#: step -> (script, options); ``{out}`` is --output-dir. Steps that train also get the
#: dataset options (--dataset, --data-root, --download) of the preset and the command line.
PRESETS: dict[str, dict[str, tuple[str, str]]] = {
    "smoke": {
        "record": ("record_policy_dynamics", "--epochs 2 --every 2 --max-train-samples 300 --max-test-samples 50 --output {out}/recording.csv.gz"),
        "fig09": ("fig09_policy_heatmaps", REC + " --output {out}/fig09_policy_heatmaps.png"),
        "fig10": ("fig10_block_probability", REC + " --output {out}/fig10_block_probability.png"),
        "fig11": ("fig11_routing_map", REC + " --output {out}/fig11_routing_map.png"),
        "fig12": ("fig12_rho_sweep", "--rhos 0,1 --epochs 1 --max-train-samples 200 --max-test-samples 50 --output {out}/fig12_rho_sweep.png"),
        "fig13": ("fig13_training_time", "--tasks 2,3 --samples-per-task 20 --repeats 1 --output {out}/fig13_training_time.png"),
        "game": ("game_dynamics", "--epochs 1 --analyze-every 100 --max-samples-per-task 5 --max-train-samples 200 --output {out}/game_dynamics.png"),
    },
    "digits-mtl": {
        "record": ("record_policy_dynamics", "--epochs 6 --every 50 --output {out}/recording.csv.gz"),
        "fig09": ("fig09_policy_heatmaps", REC + " --output {out}/fig09_policy_heatmaps.png"),
        "fig10": ("fig10_block_probability", REC + " --output {out}/fig10_block_probability.png"),
        "fig11": ("fig11_routing_map", REC + " --output {out}/fig11_routing_map.png"),
        "fig12": ("fig12_rho_sweep", "--rhos 0,0.1,0.3,1 --epochs 5 --seeds 2 --output {out}/fig12_rho_sweep.png"),
        "fig13": ("fig13_training_time", "--samples-per-task 500 --repeats 3 --output {out}/fig13_training_time.png"),
        "game": ("game_dynamics", "--epochs 6 --analyze-every 2000 --output {out}/game_dynamics.png"),
    },
    "mnist-mtl": {
        "record": ("record_policy_dynamics", "--epochs 10 --every 500 --max-rows 8000 --output {out}/recording.csv.gz"),
        "fig09": ("fig09_policy_heatmaps", REC + " --output {out}/fig09_policy_heatmaps.png"),
        "fig10": ("fig10_block_probability", REC + " --output {out}/fig10_block_probability.png"),
        "fig11": ("fig11_routing_map", REC + " --output {out}/fig11_routing_map.png"),
        "fig12": ("fig12_rho_sweep", "--rhos 0,0.1,0.3,1 --epochs 5 --seeds 3 --max-train-samples 20000 --output {out}/fig12_rho_sweep.png"),
        "fig13": ("fig13_training_time", "--samples-per-task 500 --repeats 3 --output {out}/fig13_training_time.png"),
        "game": ("game_dynamics", "--epochs 10 --analyze-every 20000 --max-samples-per-task none --output {out}/game_dynamics.png"),
        # the paper's view of Figs. 9 and 10: every decision of the first 100 samples of each task
        "record_first100": ("record_policy_dynamics", "--epochs 1 --max-train-samples 1000 --every 1 --output {out}/recording_first100.csv.gz"),
        "fig09_first100": ("fig09_policy_heatmaps", REC_FIRST100 + " --output {out}/fig09_policy_heatmaps_first100.png"),
        "fig10_first100": ("fig10_block_probability", REC_FIRST100 + " --output {out}/fig10_block_probability_first100.png"),
    },
}  # fmt: skip
#: Fashion-MTL (MNIST-MTL's construction on Fashion-MNIST): MNIST-MTL's budgets, and
#: the steps that evaluate get a 2,000-sample test subset like MNIST-MTL's (Fashion-MTL tests
#: on all 100,000 samples, which makes every evaluation 50x longer than MNIST-MTL's).
PRESETS["fashion-mtl"] = {
    step: (script, options + (" --max-test-samples 2000" if script in TEST_SUBSET_SCRIPTS else ""))
    for step, (script, options) in PRESETS["mnist-mtl"].items()
}
DATASET_OF_PRESET = {
    "smoke": "digits-mtl",
    "digits-mtl": "digits-mtl",
    "mnist-mtl": "mnist-mtl",
    "fashion-mtl": "fashion-mtl",
}
DATA_SCRIPTS = frozenset(
    {"record_policy_dynamics", "fig12_rho_sweep", "fig13_training_time", "game_dynamics"}
)
#: The steps' scripts with a choice of routing path (``--aec``).
PATH_SCRIPTS = frozenset({"fig12_rho_sweep", "game_dynamics"})


@dataclass
class Args:
    """Make every policy-dynamics figure (Figs. 9-13 and the game dynamics) into one folder."""

    preset: Literal["smoke", "digits-mtl", "mnist-mtl", "fashion-mtl"] = "smoke"
    """budgets: tiny (smoke), those of the committed example outputs, or fashion-mtl (MNIST-MTL's budgets, 2,000 test samples)"""
    output_dir: str = "figures"
    """folder that receives the recording, PNGs and CSVs"""
    data_root: str | None = None
    """dataset folder in torchvision's layout (default $ROUTING_ENV_DATA, else ~/.cache/routing_env)"""
    download: bool = False
    """download MNIST into --data-root if missing"""
    only: str | None = None
    """comma-separated steps to run (record, fig09, fig10, fig11, fig12, fig13, game; mnist-mtl and
    fashion-mtl also record_first100, fig09_first100, fig10_first100); none: all"""
    aec: bool = False
    """pass --aec to fig12 and game (train sample by sample through the AEC env, as the committed outputs were; default: the batched path)"""

    def __post_init__(self) -> None:
        unknown = set(self.steps()) - set(PRESETS[self.preset])
        if unknown:
            raise ValueError(
                f"--only: unknown steps {sorted(unknown)}; expected some of {list(PRESETS[self.preset])}"
            )

    def steps(self) -> list[str]:
        if self.only is None:
            return list(PRESETS[self.preset])
        return [s.strip() for s in self.only.split(",") if s.strip()]


def commands(args: Args) -> list[tuple[str, list[str]]]:
    """``(script, argv)`` of each step to run, in order."""
    out = []
    for step in args.steps():
        script, options = PRESETS[args.preset][step]
        argv = shlex.split(options.format(out=args.output_dir))
        if script in DATA_SCRIPTS:
            argv += ["--dataset", DATASET_OF_PRESET[args.preset]]
            if args.data_root is not None:
                argv += ["--data-root", args.data_root]
            if args.download:
                argv += ["--download"]
        if args.aec and script in PATH_SCRIPTS:
            argv += ["--aec"]
        out.append((script, argv))
    return out


def load_script(name: str) -> ModuleType:
    """Import ``examples/figures/<name>.py`` (registered in ``sys.modules`` for dataclasses)."""
    module_name = f"routing_env_figure_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, FIGURES / f"{name}.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {FIGURES / f'{name}.py'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def main(args: Args) -> dict[str, float]:
    """Run the steps; return the wall time of each in seconds."""
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    for step, (script, argv) in zip(args.steps(), commands(args), strict=True):
        print(f"$ python examples/figures/{script}.py {shlex.join(argv)}", flush=True)
        module = load_script(script)
        start = time.perf_counter()
        module.main(parse_args(module.Args, argv))
        times[step] = time.perf_counter() - start
        print(f"[{step}: {times[step]:.0f} s]", flush=True)
    print("wall time per step: " + ", ".join(f"{s} {t:.0f} s" for s, t in times.items()), flush=True)
    return times


if __name__ == "__main__":
    main(parse_args(Args))
