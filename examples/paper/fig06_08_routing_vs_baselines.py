"""Figures 6, 7 and 8: routing-all-fc against cross-stitch and task-specific baselines.

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, section 4. ``--dataset``
picks the figure: ``cifar-mtl`` Fig. 6, ``min-mtl`` Fig. 7, ``mnist-mtl`` Fig. 8 (the
offline ``digits-mtl`` and ``fashion-mtl``, MNIST-MTL's construction on Fashion-MNIST,
stand in for MNIST-MTL as Fig. 8 substitutes, with Fig. 8's models). The models:

- routing-all-fc: per-task tabular WPL routers (``examples/train_wpl.py``, its defaults);
- cross-stitch-all-fc, task-specific-1-fc, task-specific-all-fc
  (``examples/train_baseline.py --model ...``, the same block-training defaults);
- Fig. 8 also has soft-mixture-all-fc, as the paper's Table 2 does.

``--models`` picks among routing-all-fc and every model ``examples/train_baseline.py
--model`` knows (:data:`routing_env.baselines.ALL_BASELINE_NAMES`, so a baseline added there
can be drawn here too); the default is the paper's set. Each run is one
``train_wpl.py`` / ``train_baseline.py`` command (see ``paper_runs.py``); a run folder
already in ``--runs-dir`` is reused or resumed, and one that cannot be is refused unless
``--overwrite``.

Every model gets the same budget: Adam at 1e-3 divided by 10 every 10 epochs, batches
of 64, routed fc layers of 128 units (the training scripts' defaults), or with
``--setting paper`` the paper's SGD at 1e-2 divided by 10 every 20 epochs, rho 0.3 on
MNIST-MTL and its substitutes (0 on CIFAR-MTL and MIN-MTL), fc layers of 48 units
(appendix 7.2) and the WPL policy learning rate on the blocks' schedule (``--hidden``
and ``--policy-lr-schedule`` override these two). The outputs of ``--setting paper``
are named ``..._paper-setting.{csv,png,json}``.
routing-all-fc trains on the batched path, or with ``--aec`` sample by sample through
the PettingZoo AEC env (``train_wpl.py --aec``); a run it resumes or reuses keeps the
path it was trained with (see ``paper_runs.py``). The baselines have no routing.

Writes ``OUTPUT_DIR/fig0{6,7,8}_routing_vs_baselines_<dataset>.{csv,png,json}`` (one CSV
row per model, seed and epoch; the PNG draws the mean over seeds with a band, and the
paper's Table 2 values when the dataset is the paper's) and ``..._stats.csv`` (mean and
standard deviation over seeds; routing-all-fc minus each baseline, paired by seed, with
a 95% t-interval). The paper's budget (100 epochs, 3 seeds) is the default:

    python examples/paper/fig06_08_routing_vs_baselines.py --dataset cifar-mtl --data-root ~/data  # Fig. 6
    python examples/paper/fig06_08_routing_vs_baselines.py --dataset min-mtl --data-root ~/data    # Fig. 7
    python examples/paper/fig06_08_routing_vs_baselines.py --dataset mnist-mtl --data-root ~/data \\
        --epochs 10 --seeds 1 --output-dir docs/results                                           # Fig. 8
    python examples/paper/fig06_08_routing_vs_baselines.py --dataset fashion-mtl --data-root ~/data \
        --setting paper --epochs 20                                              # Fig. 8 on Fashion-MTL
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paper_runs import FIG6, FIG7, FIG8, Figure, PaperArgs, run_figure

from routing_env.experiments import parse_args

SCRIPT = "examples/paper/fig06_08_routing_vs_baselines.py"
FIGURE_OF_DATASET: dict[str, Figure] = {
    "cifar-mtl": FIG6,
    "min-mtl": FIG7,
    "mnist-mtl": FIG8,
    "digits-mtl": FIG8,
    "fashion-mtl": FIG8,
}


@dataclass
class Args(PaperArgs):
    """Figs. 6-8: routing-all-fc vs cross-stitch and task-specific baselines (the dataset picks the figure)."""


def main(args: Args) -> dict[str, Path]:
    """Run the figure of ``args.dataset``; return the paths of its CSV, PNG and JSON."""
    return run_figure(FIGURE_OF_DATASET[args.dataset], args, script=SCRIPT)


if __name__ == "__main__":
    main(parse_args(Args))
