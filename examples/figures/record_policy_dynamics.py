"""Record the policy dynamics of routing agents while they train (input of Figs. 9-11).

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, section 5. Per-task WPL
routers (the paper's MARL:WPL) train a routed SimpleConvNet; the env is wrapped in a
:class:`routing_env.recording.PolicyRecorder`, which asks each agent for its action
probabilities on every decision of every ``--every``-th sample it routes and stores
them with the chosen blocks and rewards. After each epoch the test split is routed
greedily (not recorded). At the end the recording is written to ``--output`` (a tidy
CSV, one row per recorded decision; ``.parquet`` if pyarrow is installed).

Unlike ``train_wpl.py`` and the other figure scripts, which train on the batched path by
default, this script always trains sample by sample through the PettingZoo AEC env (it
has no ``--aec`` option): the recorder is an AEC wrapper that reads each decision of
each sample as it is made, so the recording (and Figs. 9-11 drawn from it) shows the
policies changing after every sample, as in the paper's figures.

    python examples/figures/record_policy_dynamics.py --output docs/figures/recording.csv.gz
    python examples/figures/record_policy_dynamics.py --dataset mnist-mtl --data-root ~/data \\
        --epochs 10 --every 500 --max-rows 8000 --output docs/figures/mnist-mtl/recording.csv.gz
    python examples/figures/record_policy_dynamics.py --help

Then draw the figures from the CSV (``fig09_policy_heatmaps.py``,
``fig10_block_probability.py``, ``fig11_routing_map.py``). Defaults take about 40 s
on 2 CPU cores (5 digits-MTL epochs).
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
from agents import WPL, MultiAgentRouter, evaluate, train
from routing_env.datasets import MultiTaskDataset
from routing_env.experiments import DatasetOptions, check_seed, load_run_dataset, parse_args, seed_everything
from routing_env.recording import PolicyRecorder


@dataclass
class Args(DatasetOptions):
    """Train WPL routers with a PolicyRecorder and export the recording."""

    output: str = "recording.csv"
    """where to write the recording (.csv, or .parquet with pyarrow)"""
    epochs: int = 5
    """training epochs (one epoch routes every training sample once)"""
    every: int = 10
    """record every N-th sample of each agent (all its decisions)"""
    max_rows: int | None = 100_000
    """most rows kept; when full, every other recorded sample is dropped and --every doubles (rows that still do not fit are counted, warned about and noted in the export)"""
    router: Literal["per_task", "single", "dispatched"] = "per_task"
    """router agents: one WPL per task (the paper's), one for all tasks, or a dispatcher over WPL routers"""
    rho: float = 0.0
    """collaboration reward rho in [0, 1]"""
    policy_lr: float = 0.3
    """WPL policy learning rate"""
    optimizer: Literal["sgd", "adam"] = "adam"
    """optimizer of the trunk and function blocks (the paper: sgd at 1e-2)"""
    lr: float = 1e-3
    """learning rate of the trunk and function blocks"""
    lr_decay_every: int | None = 10
    """divide the block learning rate by 10 every this many epochs (none: constant)"""
    seed: int = 0
    """seed of the run (network, data order, agents)"""
    torch_threads: int = 1
    """torch intra-op threads (1 is fastest for these small ops on a shared machine)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_seed("--seed", self.seed)
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.every < 1:
            raise ValueError(f"--every must be >= 1, got {self.every}")


def make_env_and_router(args: Args, dataset: MultiTaskDataset) -> tuple[Any, MultiAgentRouter]:
    env = routing_env.env(
        dataset=dataset,
        router=args.router,
        collaboration_reward=args.rho,
        optimizer=args.optimizer,
        lr=args.lr,
        lr_decay_every=args.lr_decay_every,
    )
    router = MultiAgentRouter.from_env(
        env, router_factory=functools.partial(WPL, lr=args.policy_lr), seed=args.seed
    )
    return env, router


def main(args: Args) -> Path:
    """Train, record, export; return the path of the recording."""
    torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed)
    dataset = load_run_dataset(args)
    env, router = make_env_and_router(args, dataset)
    recorder = PolicyRecorder(env, policies=router, every=args.every, max_rows=args.max_rows)
    print(
        f"{dataset.name}: {len(dataset.train)} train / {len(dataset.test)} test samples, "
        f"{len(router)} agents ({args.router}); recording every {args.every}-th sample of each agent",
        file=sys.stderr,
    )
    start = time.perf_counter()
    for epoch in range(args.epochs):
        # 1. route every training sample once through the recorder (the agents learn, the env trains blocks)
        stats = train(
            recorder, router, num_samples=len(dataset.train), seed=args.seed if epoch == 0 else None
        )
        # 2. greedy test accuracy (evaluation is not recorded)
        evaluate(env, router, num_samples=len(dataset.test))
        test = env.unwrapped.evaluation()["accuracy"]
        print(
            f"epoch {epoch + 1}/{args.epochs}: train {100 * stats.accuracy:.2f}%  test {100 * test:.2f}%  "
            f"{recorder.num_rows} rows (every {recorder.every})  {time.perf_counter() - start:.0f}s",
            flush=True,
        )
    path = recorder.export(args.output)
    usage = recorder.usage_TnA
    used = [int((usage[:, d].sum(axis=0) > 0).sum()) for d in range(usage.shape[1])]
    _, share = recorder.recording.routing_map()
    print(
        f"wrote {recorder.num_rows} rows to {path}; blocks ever used per depth: {used}; "
        f"last recorded probability of each task's favourite block, mean per depth: "
        f"{np.round(np.nanmean(share, axis=0), 2).tolist()}",
        file=sys.stderr,
    )
    return path


if __name__ == "__main__":
    main(parse_args(Args))
