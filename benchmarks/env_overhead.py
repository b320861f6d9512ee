"""Env overhead: one epoch driven through the AEC API vs a plain PyTorch loop, side by side.

Both train the same routed SimpleConvNet (same initial weights, same
minibatches of the same size, the same optimizer) on CIFAR-shaped synthetic inputs (3x32x32, 20 tasks of 5
classes, like CIFAR-MTL), with the routes fixed: the agent of task t always picks block
t. The plain loop is what one would write by hand: trunk, blocks grouped by route, loss,
backward, step. The env loop routes every sample through ``reset``/``agent_iter``/
``last``/``step``. Reported: decisions per second through the public AEC API, epoch
times, and their ratio (target: env <= 1.2x plain).

    python benchmarks/env_overhead.py            # 5,000 samples, 3 repeats
    python benchmarks/env_overhead.py --samples 50000 --repeats 1
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from routing_env import RoutingEnv
from routing_env.datasets import MultiTaskDataset, TaskSplit


def cifar_shaped(samples: int, *, tasks: int = 20, classes: int = 5, seed: int = 0) -> MultiTaskDataset:
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> TaskSplit:
        return TaskSplit(
            inputs_NCHW=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            tasks_N=torch.arange(n) % tasks,
            targets_N=torch.randint(0, classes, (n,), generator=g),
        )

    return MultiTaskDataset(
        name="cifar-shaped",
        train=split(samples),
        test=split(max(tasks, samples // 10)),
        num_classes=(classes,) * tasks,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )


def env_epoch(env: RoutingEnv, samples: int) -> tuple[float, int]:
    """One epoch through the AEC API with the fixed route; returns (seconds, decisions)."""
    decisions = 0
    start = time.perf_counter()
    env.reset(seed=0)
    for episode in range(samples):
        if episode:
            env.reset()
        for _agent in env.agent_iter():
            obs, reward, terminated, truncated, info = env.last()
            if terminated or truncated:
                env.step(None)
            else:
                env.step(int(obs["task"]))  # block t at every depth
                decisions += 1
    return time.perf_counter() - start, decisions


def plain_epoch(env: RoutingEnv, samples: int) -> float:
    """The same epoch as a hand-written PyTorch loop over the same network and data order."""
    env.reset(seed=0)  # same initial weights as the env run, and a fresh optimizer
    net, data, opt = env.network, env.dataset, env.block_optimizer
    # a data order of its own: which samples form a minibatch does not change its cost
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(data.train))[:samples])
    B = env.training.batch_size
    start = time.perf_counter()
    net.train()
    for i in range(0, samples, B):
        idx = perm[i : i + B]
        x = data.normalize(data.train.inputs_NCHW[idx])
        tasks = data.train.tasks_N[idx]
        routes = tasks[:, None].expand(-1, net.num_decisions)
        loss = F.cross_entropy(net(x, routes), data.train.targets_N[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=5000, help="training samples per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per loop (best is reported)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = cifar_shaped(args.samples)
    env = RoutingEnv(dataset=data, batch_size=args.batch_size, lr_decay_every=None)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
        f"{args.samples} CIFAR-shaped samples, 20 tasks, 3 routed fc layers x 20 blocks, batch {args.batch_size}"
    )
    env_times, plain_times = [], []
    for _ in range(args.repeats):  # interleaved so drifts in machine speed hit both
        seconds, decisions = env_epoch(env, args.samples)
        env_times.append(seconds)
        plain_times.append(plain_epoch(env, args.samples))
    env_s, plain_s = min(env_times), min(plain_times)
    print(f"{'loop':<28}{'epoch (s)':>12}{'samples/s':>12}{'decisions/s':>14}")
    print(f"{'plain PyTorch, fixed routes':<28}{plain_s:>12.2f}{args.samples / plain_s:>12.0f}{'-':>14}")
    print(f"{'env through AEC API':<28}{env_s:>12.2f}{args.samples / env_s:>12.0f}{decisions / env_s:>14.0f}")
    print(f"env / plain: {env_s / plain_s:.3f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
