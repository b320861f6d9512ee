"""Figures 13/15: training time per epoch against the number of tasks and function blocks.

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, section 4 and appendix
(Fig. 13, on the first 2, 3, 5 and 10 tasks of CIFAR-MTL as in Fig. 15): "We add a
function block per task and normalize the training time per epoch by dividing by the
number of tasks to isolate the effect of adding function blocks on computation."
A routed sample runs through one block per layer whatever the number of blocks, while
a cross-stitch network runs every sample through every task's column, so per task the
routing time stays flat and the cross-stitch time grows linearly.

For each number of tasks ``T`` the data are the first ``T`` tasks of the dataset with
``--samples-per-task`` training samples each, and every model has ``T`` blocks per fc
layer (``T`` columns for cross-stitch). Measured, as the best of ``--repeats`` epochs
after one warm-up epoch, on this machine:

- ``routing (RL loop, batched)``: a whole routing epoch with per-task WPL agents
  (observations, agents' updates and block training) on the batched path that the
  training scripts use by default (:class:`routing_env.BatchedRoutingEnv`: one step
  decides one depth for a whole minibatch, each block runs once on the samples that
  chose it);
- ``routing (RL loop, AEC)``: the same epoch of the same game sample by sample through
  the PettingZoo AEC env (the reference interface; the scripts' ``--aec``), where each
  decision runs one block on one sample;
- ``routing (network only)``: the routed network's block training alone: trunk, the
  routed fc layers along uniformly random routes (grouped by block, as the env trains
  them), cross-entropy, backward and SGD step per minibatch;
- ``cross-stitch``: ``routing_env.baselines``' cross-stitch-all-fc network, trained
  with ``train_epoch`` (same trunk, widths, minibatches and optimizer).

Both RL loops are timed, since the figure's question (does the per-task time stay flat
as blocks are added?) has an answer for each, and their gap is the cost of deciding
sample by sample. Writes ``--output`` (PNG) and a CSV next to it (one row per model and
number of tasks). Defaults take about a minute:

    python examples/figures/fig13_training_time.py --output docs/figures/fig13_training_time.png
    python examples/figures/fig13_training_time.py --tasks 2,3,5,10 --samples-per-task 500 --repeats 5
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import routing_env
from agents import WPL, MultiAgentRouter, train, train_batched
from routing_env.baselines import build_baseline, model_optimizer, train_epoch
from routing_env.datasets import MultiTaskDataset, TaskSplit, load_dataset
from routing_env.experiments import DatasetName, parse_args, seed_everything, write_rows
from routing_env.extras import import_extra
from routing_env.network import RoutingNetwork
from routing_env.optim import make_optimizer

Figure = import_extra("matplotlib.figure", feature=__file__, extra="plots", package="matplotlib").Figure


@dataclass
class Args:
    """Time one training epoch of routing and cross-stitch networks against the number of tasks (Fig. 13)."""

    output: str = "fig13_training_time.png"
    """PNG to write; the numbers go to the same path with .csv"""
    tasks: str = "2,3,5,10"
    """comma-separated numbers of tasks (= function blocks per layer); the paper: 2,3,5,10"""
    samples_per_task: int = 200
    """training samples of each task in an epoch"""
    repeats: int = 3
    """timed epochs per model and size (the best is kept); one warm-up epoch precedes them"""
    dataset: DatasetName = "digits-mtl"
    """multi-task dataset (its first tasks are used)"""
    data_root: str | None = None
    """dataset folder in torchvision's layout (default $ROUTING_ENV_DATA, else ~/.cache/routing_env)"""
    download: bool = False
    """download MNIST / CIFAR-100 into --data-root if missing"""
    data_seed: int = 0
    """seed of the dataset's train/test construction"""
    hidden_width: int = 128
    """units of the hidden fc blocks / cross-stitch columns"""
    batch_size: int = 64
    """samples per optimizer step"""
    torch_threads: int = 1
    """torch intra-op threads (timings use this many)"""

    def __post_init__(self) -> None:
        sizes = self.task_counts()
        if not sizes or min(sizes) < 1:
            raise ValueError(f"--tasks must be comma-separated positive ints, got {self.tasks!r}")
        if self.samples_per_task < 1 or self.repeats < 1:
            raise ValueError("--samples-per-task and --repeats must be >= 1")

    def task_counts(self) -> list[int]:
        try:
            return [int(t) for t in self.tasks.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"--tasks must be comma-separated ints, got {self.tasks!r}") from None


def first_tasks(
    dataset: MultiTaskDataset, num_tasks: int, *, train_per_task: int, test_per_task: int = 10
) -> MultiTaskDataset:
    """The first ``num_tasks`` tasks, with at most so many samples of each (in order)."""
    if not 1 <= num_tasks <= dataset.num_tasks:
        raise ValueError(f"{dataset.name} has {dataset.num_tasks} tasks, asked for {num_tasks}")

    def cut(split: TaskSplit, per_task: int) -> TaskSplit:
        tasks = split.tasks_N.numpy()
        idx = np.concatenate([np.flatnonzero(tasks == t)[:per_task] for t in range(num_tasks)])
        i = torch.from_numpy(np.sort(idx))
        return TaskSplit(
            inputs_NCHW=split.inputs_NCHW[i], tasks_N=split.tasks_N[i], targets_N=split.targets_N[i]
        )

    return dataclasses.replace(
        dataset,
        train=cut(dataset.train, train_per_task),
        test=cut(dataset.test, test_per_task),
        num_classes=dataset.num_classes[:num_tasks],
        task_names=dataset.task_names[:num_tasks],
        class_names=dataset.class_names[:num_tasks] if dataset.class_names else (),
    )


def best_time(epoch: Callable[[], Any], repeats: int) -> float:
    epoch()  # warm-up: allocations, lazy initialization
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - start)
    return min(times)


def time_routing_rl(args: Args, data: MultiTaskDataset, *, aec: bool) -> float:
    """One routing epoch with per-task WPL agents, batched or through the AEC env."""
    env: Any = routing_env.env(dataset=data, hidden_width=args.hidden_width, batch_size=args.batch_size)
    if not aec:  # the same game on the same engine, one minibatch per step
        env = routing_env.BatchedRoutingEnv(env=env)
    run_epoch = train if aec else train_batched
    router = MultiAgentRouter.from_env(env, router_factory=functools.partial(WPL, lr=0.3), seed=0)
    seeds = iter([0])  # the warm-up epoch starts the run; each timed one routes the next whole epoch
    return best_time(
        lambda: run_epoch(env, router, num_samples=len(data.train), seed=next(seeds, None)), args.repeats
    )


def time_routing_network(args: Args, data: MultiTaskDataset) -> float:
    env = routing_env.RoutingEnv(dataset=data, hidden_width=args.hidden_width)
    env.reset(seed=0)
    network: RoutingNetwork = env.network
    optimizer = make_optimizer(network.parameters(), name="sgd", lr=1e-2)
    rng = np.random.default_rng(0)
    split = data.train
    n, T = network.num_decisions, data.num_tasks

    def epoch() -> None:
        network.train()
        perm = torch.from_numpy(rng.permutation(len(split)))
        for start in range(0, len(perm), args.batch_size):
            idx = perm[start : start + args.batch_size]
            x = data.normalize(split.inputs_NCHW[idx])
            routes = torch.from_numpy(rng.integers(0, T, size=(len(idx), n)))
            loss = F.cross_entropy(network(x, routes), split.targets_N[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return best_time(epoch, args.repeats)


def time_cross_stitch(args: Args, data: MultiTaskDataset) -> float:
    model = build_baseline("cross-stitch-all-fc", dataset=data, hidden_width=args.hidden_width, seed=0)
    optimizer = model_optimizer(model, optimizer="sgd", lr=1e-2)
    rng = np.random.default_rng(0)
    return best_time(
        lambda: train_epoch(model, optimizer, data, batch_size=args.batch_size, rng=rng), args.repeats
    )


MODELS: dict[str, Callable[[Args, MultiTaskDataset], float]] = {
    "routing (RL loop, batched)": functools.partial(time_routing_rl, aec=False),
    "routing (RL loop, AEC)": functools.partial(time_routing_rl, aec=True),
    "routing (network only)": time_routing_network,
    "cross-stitch": time_cross_stitch,
}


def growth_per_block(num_tasks: list[int], per_task_seconds: np.ndarray) -> float:
    """Slope of a least-squares line through the per-task times, relative to the smallest size:
    how much one more block adds to the per-task time (0: flat; cross-stitch: linear growth)."""
    if len(num_tasks) < 2:
        return 0.0
    slope = np.polyfit(np.asarray(num_tasks, dtype=float), per_task_seconds, 1)[0]
    return float(slope / per_task_seconds[0])


def plot(rows: list[dict[str, Any]]) -> Figure:
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    sizes = sorted({r["num_tasks"] for r in rows})
    for i, model in enumerate(MODELS):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["num_tasks"])
        T = [r["num_tasks"] for r in mine]
        per_task = np.array([r["seconds_per_epoch_per_task"] for r in mine])
        ax1.plot(T, 1000 * per_task, "o-", color=f"C{i}", label=model)
        slope = growth_per_block(T, per_task)
        ax2.plot(
            T, per_task / per_task[0], "o-", color=f"C{i}", label=f"{model}: {100 * slope:+.1f}% per block"
        )
    ax2.axhline(1.0, color="0.5", lw=0.6)
    samples = rows[0]["samples_per_task"]
    ax1.set_ylabel("ms per epoch / number of tasks")
    ax1.set_title(f"per-task training time ({samples} samples per task)", fontsize=10)
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize=8)
    ax2.set_ylabel(f"per-task time relative to T={sizes[0]}")
    ax2.set_title("scaling with the number of blocks", fontsize=10)
    ax2.set_ylim(0, None)
    ax2.legend(fontsize=8, title="least-squares growth", title_fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xlabel("tasks T = function blocks per layer")
        ax.set_xticks(sizes)
    return fig


def main(args: Args) -> Path:
    torch.set_num_threads(args.torch_threads)
    seed_everything(0)
    dataset = load_dataset(args.dataset, root=args.data_root, seed=args.data_seed, download=args.download)
    rows: list[dict[str, Any]] = []
    for T in args.task_counts():
        data = first_tasks(dataset, T, train_per_task=args.samples_per_task)
        for model, timer in MODELS.items():
            seconds = timer(args, data)
            rows.append(
                {
                    "model": model,
                    "num_tasks": T,
                    "samples_per_task": args.samples_per_task,
                    "train_samples": len(data.train),
                    "seconds_per_epoch": seconds,
                    "seconds_per_epoch_per_task": seconds / T,
                }
            )
            print(
                f"T={T:>2} {model:<26} {seconds:7.3f} s/epoch  {1000 * seconds / T:7.1f} ms/epoch/task",
                flush=True,
            )
    rows.sort(key=lambda r: (list(MODELS).index(r["model"]), r["num_tasks"]))
    for model in MODELS:
        mine = [r for r in rows if r["model"] == model]
        per_task = np.array([r["seconds_per_epoch_per_task"] for r in mine])
        growth = growth_per_block([r["num_tasks"] for r in mine], per_task)
        print(f"{model}: per-task time grows {100 * growth:+.1f}% per added block", flush=True)
    out = Path(args.output)
    write_rows(out.with_suffix(".csv"), rows)
    plot(rows).savefig(out, dpi=100)
    print(f"wrote {out} and {out.with_suffix('.csv')}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main(parse_args(Args))
