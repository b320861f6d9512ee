"""Cost per minibatch of block training with a torchjd aggregator against the plain mean.

For each ``--aggregators`` value, a :class:`routing_env.BatchedRoutingEnv` on
``--dataset`` (batch 64, Adam 1e-3, the default network) routes minibatches with random
valid routes and trains its blocks (``TrainingConfig(aggregator=...)``). The envs are
timed in rounds of ``--minibatches`` minibatches, interleaved, so that the load of a
shared machine hits each alike; the first round warms up and the median of the others
is reported (with the minimum), one torch thread by default::

    python benchmarks/aggregator_cost.py --dataset digits-mtl --aggregators mean,pcgrad,upgrad,mgda
    python benchmarks/aggregator_cost.py --dataset fashion-mtl --aggregators mean,pcgrad,upgrad

Needs the mtl extra (``pip install 'routing-env[mtl]'``) for any aggregator but mean.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import routing_env
from routing_env.datasets import load_dataset


def run_minibatch(env: routing_env.BatchedRoutingEnv, rng: np.random.Generator) -> None:
    """Route one minibatch with uniformly random allowed blocks; the env trains at its end."""
    obs, done = env.reset(), False
    while not done:
        actions = np.array([rng.choice(np.flatnonzero(row)) for row in obs["action_mask"]])
        obs, _, done, _ = env.step(actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits-mtl", help="dataset name (default: digits-mtl)")
    parser.add_argument("--data-root", default=None, help="dataset folder (default: $ROUTING_ENV_DATA)")
    parser.add_argument("--aggregators", default="mean,pcgrad,upgrad", help="comma-separated aggregators")
    parser.add_argument(
        "--rounds", type=int, default=6, help="timed rounds, the first a warm-up (default: 6)"
    )
    parser.add_argument("--minibatches", type=int, default=10, help="minibatches per round (default: 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    args = parser.parse_args()
    if args.rounds < 2 or args.minibatches < 1:
        parser.error("--rounds must be >= 2 and --minibatches >= 1")
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset, root=args.data_root, seed=0, download=False)
    names = [a.strip() for a in args.aggregators.split(",") if a.strip()]
    envs = {name: routing_env.batched_env(dataset=dataset, aggregator=name) for name in names}
    for env in envs.values():
        env.reset(seed=0)
    rngs = {name: np.random.default_rng(0) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            start = time.perf_counter()
            for _ in range(args.minibatches):
                run_minibatch(envs[name], rngs[name])
            times[name].append((time.perf_counter() - start) / args.minibatches)
    base = float(np.median(times[names[0]][1:]))
    for name in names:
        t = np.array(times[name][1:])
        print(
            f"{args.dataset} {name}: {1000 * np.median(t):.1f} ms per minibatch "
            f"(median of {len(t)} rounds of {args.minibatches}; min {1000 * t.min():.1f}; "
            f"{np.median(t) / base:.2f}x {names[0]})"
        )


if __name__ == "__main__":
    main()
