"""Figure 5: routing architectures (CIFAR-MTL in the paper).

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, section 4 and Table 4:

- routing-all-fc: per-task tabular WPL routers over the 3 routed fc layers
  (``examples/train_wpl.py`` with its defaults);
- routing-all-fc recurrent/+PASS: the same, but any block of fitting width may be
  picked at any depth, or PASS (appendix 7.2; ``train_wpl.py --routing recurrent``);
- routing-all-fc dispatched: a REINFORCE dispatcher sends each sample to one of T
  REINFORCE routers (one MLP per depth each; Fig. 3c; ``train_wpl.py --learner
  reinforce-mlp --router dispatched``);
- soft-mixture-all-fc: the routed blocks mixed by a per-layer softmax instead of hard
  routing (``examples/train_baseline.py --model soft-mixture-all-fc``);
- routing-all-fc single agent: one REINFORCE router, one MLP per depth (Fig. 3a;
  ``train_wpl.py --learner reinforce-mlp --router single``).

Each run is one training command (see ``paper_runs.py``); a run folder already in
``--runs-dir`` is reused or resumed, and one that cannot be is refused unless ``--overwrite``.

Function blocks are trained with ``train_wpl.py``'s defaults for every model (Adam at
1e-3, divided by 10 every 10 epochs, fc layers of 128 units), or with ``--setting paper``
the paper's (SGD at 1e-2, divided by 10 every 20 epochs, its rho, fc layers of 48 units
and WPL's policy learning rate on the blocks' schedule); the learners use their classes'
defaults (see ``--help``), untuned. The routers train on the batched path, or with
``--aec`` sample by sample through the PettingZoo AEC env (``train_wpl.py --aec``); a run
folder found in ``--runs-dir`` keeps the path it was trained with (see ``paper_runs.py``).

Writes ``OUTPUT_DIR/fig05_architectures_<dataset>.{csv,png,json}`` (one CSV row per
model, seed and epoch; mean curves with bands) and ``..._stats.csv`` (mean and standard
deviation over seeds; routing-all-fc minus each other model, paired by seed, with a 95%
t-interval). Runs shared with Fig. 4 (routing-all-fc, the single agent) are
reused when both scripts get the same ``--runs-dir`` and data options:

    python examples/paper/fig05_architectures.py --data-root ~/data                # CIFAR-MTL, as the paper
    python examples/paper/fig05_architectures.py --dataset mnist-mtl --data-root ~/data \\
        --max-train-samples 10000 --epochs 10 --seeds 1 --output-dir docs/results
    python examples/paper/fig05_architectures.py --help
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paper_runs import FIG5, PaperArgs, run_figure

from routing_env.experiments import parse_args

SCRIPT = "examples/paper/fig05_architectures.py"


@dataclass
class Args(PaperArgs):
    """Fig. 5: routing architectures (recurrent/PASS, dispatched, soft mixture, single agent)."""


def main(args: Args) -> dict[str, Path]:
    """Run the figure; return the paths of its CSV, PNG and JSON."""
    return run_figure(FIG5, args, script=SCRIPT)


if __name__ == "__main__":
    main(parse_args(Args))
