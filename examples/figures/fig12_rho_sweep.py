"""Figure 12: influence of the collaboration reward rho on accuracy.

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, appendix 7.1 (Fig. 12,
CIFAR-MTL, routing-all-fc with WPL agents): "generally rho = 0.0 (no collaboration
reward) or a small value works best and [...] there is relatively little sensitivity to
the choice in this range." The collaboration reward pays an agent rho times the
historical selection frequency of the block it picks, which should make the agents
share blocks; so besides the greedy test accuracy after each epoch we count the blocks
the greedy routes use at each depth at the end.

For every rho and seed, per-task WPL routers train the routed SimpleConvNet for
``--epochs`` epochs. They train on the batched path (:class:`routing_env.BatchedRoutingEnv`,
one step per depth of a whole minibatch, as ``examples/train_wpl.py`` does); ``--aec``
routes sample by sample through the PettingZoo AEC env instead (the reference interface:
the same game and rewards, with each agent learning after every sample it routes rather
than after every minibatch). Writes ``--output`` (PNG: accuracy per epoch for each rho,
and the final accuracy and blocks used against rho) and a CSV next to it (one row per
rho, seed and epoch). The default budget is small (digits-MTL, 3 epochs, 4 values of
rho, 1 seed: about 1.5 minutes on 2 shared CPU cores, 4 minutes with ``--aec``):

    python examples/figures/fig12_rho_sweep.py --output docs/figures/fig12_rho_sweep.png
    python examples/figures/fig12_rho_sweep.py --rhos 0,0.1,0.3,0.5,1 --epochs 10 --seeds 3
    python examples/figures/fig12_rho_sweep.py --aec        # the per-sample AEC path
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import routing_env
from agents import WPL, MultiAgentRouter, evaluate, evaluate_batched, train, train_batched
from routing_env.datasets import MultiTaskDataset
from routing_env.experiments import DatasetOptions, load_run_dataset, parse_args, seed_everything, write_rows
from routing_env.extras import import_extra

Figure = import_extra("matplotlib.figure", feature=__file__, extra="plots", package="matplotlib").Figure


@dataclass
class Args(DatasetOptions):
    """Sweep the collaboration reward rho: accuracy per epoch and blocks used (Fig. 12)."""

    output: str = "fig12_rho_sweep.png"
    """PNG to write; the numbers go to the same path with .csv"""
    rhos: str = "0,0.1,0.3,1"
    """comma-separated values of rho in [0, 1]"""
    seeds: int = 1
    """runs per rho (seeds 0..N-1); the plot shows their mean"""
    epochs: int = 3
    """training epochs per run"""
    policy_lr: float = 0.3
    """WPL policy learning rate"""
    optimizer: Literal["sgd", "adam"] = "adam"
    """optimizer of the blocks (the paper: sgd at 1e-2)"""
    lr: float = 1e-3
    """learning rate of the blocks"""
    lr_decay_every: int | None = 10
    """divide the block learning rate by 10 every this many epochs (none: constant)"""
    aec: bool = False
    """route sample by sample through the PettingZoo AEC env (the reference interface, about 2-3x slower) instead of one minibatch per step (the batched path: the same game; agents act on a minibatch with the policies of its start and learn after it)"""
    torch_threads: int = 1
    """torch intra-op threads"""

    def __post_init__(self) -> None:
        super().__post_init__()
        values = self.rho_values()
        if not values or any(not 0.0 <= r <= 1.0 for r in values):
            raise ValueError(f"--rhos must be comma-separated numbers in [0, 1], got {self.rhos!r}")
        if self.seeds < 1 or self.epochs < 1:
            raise ValueError("--seeds and --epochs must be >= 1")

    def rho_values(self) -> list[float]:
        try:
            return [float(r) for r in self.rhos.split(",") if r.strip()]
        except ValueError:
            raise ValueError(f"--rhos must be comma-separated numbers, got {self.rhos!r}") from None


def greedy_blocks_used(router: MultiAgentRouter) -> list[int]:
    """Distinct blocks at each depth among the agents' greedy (argmax) routes."""
    routes = np.array([learner.policy.argmax(axis=1) for learner in router.values()])  # agents x depths
    return [len(set(routes[:, d].tolist())) for d in range(routes.shape[1])]


def run(args: Args, dataset: MultiTaskDataset, rho: float, seed: int) -> list[dict[str, Any]]:
    """Train one run; one row per epoch."""
    seed_everything(seed)
    aec_env = routing_env.env(
        dataset=dataset,
        collaboration_reward=rho,
        optimizer=args.optimizer,
        lr=args.lr,
        lr_decay_every=args.lr_decay_every,
    )
    router = MultiAgentRouter.from_env(
        aec_env, router_factory=functools.partial(WPL, lr=args.policy_lr), seed=seed
    )
    # the batched path plays the same game on the AEC env's engine
    env = None if args.aec else routing_env.BatchedRoutingEnv(env=aec_env)
    rows = []
    for epoch in range(args.epochs):
        first_seed = seed if epoch == 0 else None
        if env is None:
            stats = train(aec_env, router, num_samples=len(dataset.train), seed=first_seed)
            evaluate(aec_env, router, num_samples=len(dataset.test))
        else:
            stats = train_batched(env, router, num_samples=len(dataset.train), seed=first_seed)
            evaluate_batched(env, router)  # the whole test split
        test = aec_env.unwrapped.evaluation()["accuracy"]
        used = greedy_blocks_used(router)
        rows.append(
            {
                "rho": rho,
                "seed": seed,
                "epoch": epoch + 1,
                "train_accuracy": stats.accuracy,
                "test_accuracy": test,
                **{f"blocks_used_depth_{d}": u for d, u in enumerate(used)},
            }
        )
    return rows


def plot(rows: list[dict[str, Any]]) -> Figure:
    rhos = sorted({r["rho"] for r in rows})
    epochs = sorted({r["epoch"] for r in rows})
    depths = sorted(int(k.rsplit("_", 1)[-1]) for k in rows[0] if k.startswith("blocks_used_depth_"))
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)

    def mean(rho: float, key: str, epoch: int) -> float:
        return float(np.mean([r[key] for r in rows if r["rho"] == rho and r["epoch"] == epoch]))

    for i, rho in enumerate(rhos):
        ax1.plot(
            epochs,
            [100 * mean(rho, "test_accuracy", e) for e in epochs],
            "o-",
            color=f"C{i}",
            label=f"rho={rho:g}",
        )
    ax1.set_xticks(epochs)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("test accuracy (%), greedy routes")
    ax1.set_title("accuracy per epoch", fontsize=10)
    ax1.legend(fontsize=8)
    last = epochs[-1]
    finals = [
        [100 * r["test_accuracy"] for r in rows if r["rho"] == rho and r["epoch"] == last] for rho in rhos
    ]
    ax2.errorbar(
        rhos, [np.mean(f) for f in finals], yerr=[np.std(f) for f in finals], fmt="o-", capsize=3, color="k"
    )
    ax2.set_xlabel("rho")
    ax2.set_ylabel(f"test accuracy (%) after epoch {last}")
    ax2.set_title("final accuracy vs rho", fontsize=10)
    for d in depths:
        ax3.plot(rhos, [mean(rho, f"blocks_used_depth_{d}", last) for rho in rhos], "o-", label=f"depth {d}")
    ax3.yaxis.get_major_locator().set_params(integer=True)
    ax3.set_xlabel("rho")
    ax3.set_ylabel("distinct blocks in the greedy routes")
    ax3.set_title("block sharing vs rho", fontsize=10)
    ax3.legend(fontsize=8)
    return fig


def main(args: Args) -> Path:
    torch.set_num_threads(args.torch_threads)
    dataset = load_run_dataset(args)
    print(
        f"{dataset.name}: {len(dataset.train)} train / {len(dataset.test)} test samples; "
        f"{'AEC' if args.aec else 'batched'} path",
        file=sys.stderr,
    )
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for rho in args.rho_values():
        for seed in range(args.seeds):
            run_rows = run(args, dataset, rho, seed)
            rows.extend(run_rows)
            last = run_rows[-1]
            used = [v for k, v in last.items() if k.startswith("blocks_used")]
            print(
                f"rho={rho:g} seed={seed}: test {100 * last['test_accuracy']:.2f}% after {last['epoch']} epochs, "
                f"blocks used per depth {used}  ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
    out = Path(args.output)
    write_rows(out.with_suffix(".csv"), rows)
    plot(rows).savefig(out, dpi=100)
    print(f"wrote {out} and {out.with_suffix('.csv')}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main(parse_args(Args))
