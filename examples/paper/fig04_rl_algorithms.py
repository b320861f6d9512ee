"""Figure 4: influence of the RL algorithm that trains the routers (CIFAR-MTL in the paper).

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, section 4 and Table 3. The
same routed SimpleConvNet (one function block per task in each routed fc layer) is
trained with five router implementations:

- MARL:WPL (table): one tabular Weighted Policy Learner per task (routing-all-fc,
  ``examples/train_wpl.py`` with its defaults);
- Q-learning, table: one tabular Q-learner per task, epsilon-greedy
  (``train_wpl.py --learner qlearning-table``);
- Q-learning, approx: one Q-learner per task, one MLP (64 hidden units) per depth on
  ``concat(v, one-hot(t))`` (``--learner qlearning-mlp``);
- REINFORCE, per-task approx: one REINFORCE agent per task, one MLP per depth
  (``--learner reinforce-mlp``);
- REINFORCE, single agent approx: one REINFORCE agent for all tasks
  (``--learner reinforce-mlp --router single``).

Each run is one ``train_wpl.py`` command (see ``paper_runs.py``): the figure reads the
run folders' ``metrics.csv``; a run folder already in ``--runs-dir`` is reused or
resumed, and one that cannot be is refused unless ``--overwrite``.

The function blocks are trained as ``train_wpl.py`` trains them (its defaults: Adam at
1e-3, divided by 10 every 10 epochs; rho = 0; routed fc layers of 128 units;
``--setting paper``: the paper's SGD at 1e-2, divided by 10 every 20 epochs, its rho,
fc layers of 48 units as in appendix 7.2, and WPL's policy learning rate divided by 10
with the blocks'). The learners' settings are their
classes' defaults (see ``--help``); as for WPL, nothing was tuned for this figure,
whereas the paper swept the learning rate and rho per algorithm. Every router trains on
the batched path (one step per depth of a minibatch), or with ``--aec`` sample by sample
through the PettingZoo AEC env (``train_wpl.py --aec``); a run folder found in
``--runs-dir`` keeps the path it was trained with (see ``paper_runs.py``).

Writes ``OUTPUT_DIR/fig04_rl_algorithms_<dataset>.{csv,png,json}``: one CSV row per
model, seed and epoch (test accuracy of the greedy routes, and of the sampled ones),
the accuracy curves (mean over seeds with a band), and the command and budget; and
``..._stats.csv``: mean and standard deviation over seeds, and MARL:WPL minus each
other router, paired by seed, with a 95% t-interval. The paper's budget (100 epochs,
3 seeds) is the default:

    python examples/paper/fig04_rl_algorithms.py --data-root ~/data                # CIFAR-MTL, as the paper
    python examples/paper/fig04_rl_algorithms.py --dataset mnist-mtl --data-root ~/data \\
        --max-train-samples 10000 --epochs 10 --seeds 1 --output-dir docs/results
    python examples/paper/fig04_rl_algorithms.py --help
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paper_runs import FIG4, PaperArgs, run_figure

from routing_env.experiments import parse_args

SCRIPT = "examples/paper/fig04_rl_algorithms.py"


@dataclass
class Args(PaperArgs):
    """Fig. 4: routers trained by WPL, REINFORCE or Q-learning on one routing network."""


def main(args: Args) -> dict[str, Path]:
    """Run the figure; return the paths of its CSV, PNG and JSON."""
    return run_figure(FIG4, args, script=SCRIPT)


if __name__ == "__main__":
    main(parse_args(Args))
