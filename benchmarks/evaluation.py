"""Time of one evaluation pass over a test split, with and without merging duplicate inputs.

One-vs-rest splits (digits-MTL, MNIST-MTL, Fashion-MTL) hold each test image once per
task. Evaluation runs the shared trunk once per distinct image and copies its output
(``TrainingConfig(merge_duplicate_inputs=...)`` for the routing env,
``evaluate_model(merge_duplicates=...)`` for the baselines). For each model this times
a full pass over ``--dataset``'s test split both ways, in interleaved rounds (the first a
warm-up; the median of the others is reported) on one torch thread, and checks that the
two give the same per-task accuracies:

- ``routing``: the batched routing env with per-task WPL routers (``train_wpl.py``'s
  router; greedy routes), after ``--train-samples`` training samples;
- each ``--baselines`` model through :func:`routing_env.baselines.evaluate_model`, after
  one optimizer pass over the same number of samples.

::

    python benchmarks/evaluation.py
    ROUTING_ENV_DATA=DIR python benchmarks/evaluation.py --dataset fashion-mtl --rounds 3
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import numpy as np
import torch

import routing_env
from agents import WPL, MultiAgentRouter, evaluate_batched, train_batched
from routing_env.baselines import (
    ALL_BASELINE_NAMES,
    build_baseline,
    evaluate_model,
    model_optimizer,
    train_epoch,
)
from routing_env.datasets import MultiTaskDataset, load_dataset, subsample


def routing_pass(dataset: MultiTaskDataset, train_samples: int) -> Callable[[bool], list[float]]:
    """A routing env and WPL routers trained a little; the returned call evaluates once."""
    envs = {
        merge: routing_env.batched_env(dataset=dataset, merge_duplicate_inputs=merge)
        for merge in (True, False)
    }
    routers = {}
    for merge, env in envs.items():
        routers[merge] = MultiAgentRouter.from_env(env, router_factory=functools.partial(WPL, lr=0.1), seed=0)
        train_batched(env, routers[merge], num_samples=train_samples, seed=0)

    def evaluate(merge: bool) -> list[float]:
        evaluate_batched(envs[merge], routers[merge], greedy=True)
        return envs[merge].evaluation()["accuracy_per_task"]  # type: ignore[no-any-return]

    return evaluate


def baseline_pass(name: str, dataset: MultiTaskDataset, train_samples: int) -> Callable[[bool], list[float]]:
    """A baseline trained on ``train_samples`` samples; the returned call evaluates once."""
    model = build_baseline(name, dataset=dataset, seed=0)
    optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
    part = subsample(dataset, max_train=train_samples, seed=0)
    train_epoch(model, optimizer, part, batch_size=64, rng=np.random.default_rng(0))

    def evaluate(merge: bool) -> list[float]:
        return evaluate_model(model, dataset, merge_duplicates=merge).accuracy_per_task

    return evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits-mtl", help="dataset name (default: digits-mtl)")
    parser.add_argument("--data-root", default=None, help="dataset folder (default: $ROUTING_ENV_DATA)")
    parser.add_argument(
        "--baselines",
        default="task-specific-all-fc,cross-stitch-all-fc",
        help="comma-separated baselines to time besides routing (default: task-specific-all-fc,cross-stitch-all-fc)",
    )
    parser.add_argument(
        "--train-samples", type=int, default=2000, help="training samples before timing (default: 2000)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed rounds, the first a warm-up (default: 3)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    args = parser.parse_args()
    names = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = sorted(set(names) - set(ALL_BASELINE_NAMES))
    if unknown:
        parser.error(f"unknown baselines {unknown}; choose from {list(ALL_BASELINE_NAMES)}")
    if args.rounds < 2 or args.train_samples < 1:
        parser.error("--rounds must be >= 2 and --train-samples >= 1")
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset, root=args.data_root, seed=0, download=False)
    first = dataset.test.first_occurrence_N
    distinct = len(dataset.test) if first is None else len(np.unique(first))
    print(f"{args.dataset}: {len(dataset.test):,} test samples, {distinct:,} distinct inputs")
    models = {"routing": routing_pass(dataset, args.train_samples)}
    models.update({name: baseline_pass(name, dataset, args.train_samples) for name in names})
    for label, evaluate in models.items():
        times: dict[bool, list[float]] = {True: [], False: []}
        counts: dict[bool, list[float]] = {}
        for _ in range(args.rounds):
            for merge in (True, False):
                start = time.perf_counter()
                counts[merge] = evaluate(merge)
                times[merge].append(time.perf_counter() - start)
        if counts[True] != counts[False]:
            raise SystemExit(f"{label}: merging changed the accuracies: {counts[True]} != {counts[False]}")
        merged, whole = (float(np.median(times[m][1:])) for m in (True, False))
        print(
            f"{label}: {merged:.2f} s merged, {whole:.2f} s every row ({whole / merged:.1f}x faster; "
            f"{len(dataset.test) / merged:,.0f} vs {len(dataset.test) / whole:,.0f} samples/s; same counts)"
        )


if __name__ == "__main__":
    main()
