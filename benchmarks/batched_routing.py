"""Training speed of the routing paths against plain PyTorch, side by side in one run.

For each input shape (``cifar``: 3x32x32, 20 tasks of 5 classes, as CIFAR-MTL;
``mnist``: 1x28x28, 10 one-vs-rest tasks, as MNIST-MTL), each torch thread count and
each device, one training epoch of ``--samples`` synthetic samples (the shapes, task
count and batch size are what matter for speed, not the pixel values) is timed for:

- ``plain``: a hand-written PyTorch loop over the routed SimpleConvNet with fixed routes
  (task t takes block t at every depth): trunk, blocks grouped by route, loss, backward,
  step. The floor any routing implementation is measured against.
- ``batched``: the batched routing game (:class:`routing_env.BatchedRoutingEnv`) with
  per-task WPL routers deciding and learning every route (``agents.train_batched``):
  what ``examples/train_wpl.py`` runs by default.
- ``aec``: the same game and routers through the PettingZoo AEC API, one decision per
  ``step`` (``examples/train_wpl.py --aec``).
- ``cross-stitch``: the cross-stitch-all-fc baseline (``routing_env.baselines``).

All use Adam at 1e-3 and batch 64 (``--batch-size``) on the same network sizes; each
loop is timed ``--repeats`` times, interleaved, and the best is reported. The ratios
printed are the issue's targets: batched / plain (CPU: <= 1.1x) and batched /
cross-stitch (GPU: <= 1.3x)::

    python benchmarks/batched_routing.py                          # cpu, 1 and 2 threads, both shapes
    python benchmarks/batched_routing.py --device cuda --samples 20000 --csv out.csv
    python benchmarks/batched_routing.py --loops plain,batched --shapes mnist --threads 1
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import routing_env
from agents import WPL, MultiAgentRouter, train, train_batched
from routing_env.baselines import DeviceSplit, build_baseline, model_optimizer, train_epoch
from routing_env.datasets import MultiTaskDataset, TaskSplit
from routing_env.experiments import write_rows

LOOPS = ("plain", "batched", "aec", "cross-stitch")
SHAPES = {
    # name: (channels, size, tasks, classes per task)
    "cifar": (3, 32, 20, 5),
    "mnist": (1, 28, 10, 2),
}


def synthetic(shape: str, samples: int, seed: int = 0) -> MultiTaskDataset:
    """Random inputs of a real dataset's shape, tasks and classes (speed does not depend on pixels)."""
    channels, size, tasks, classes = SHAPES[shape]
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> TaskSplit:
        return TaskSplit(
            inputs_NCHW=torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g),
            tasks_N=torch.arange(n) % tasks,
            targets_N=torch.randint(0, classes, (n,), generator=g),
        )

    return MultiTaskDataset(
        name=f"{shape}-shaped",
        train=split(samples),
        test=split(max(tasks, samples // 10)),
        num_classes=(classes,) * tasks,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def env_kwargs(data: MultiTaskDataset, batch_size: int, device: torch.device) -> dict:
    return dict(
        dataset=data,
        batch_size=batch_size,
        optimizer="adam",
        lr=1e-3,
        lr_decay_every=None,
        device=str(device),
    )


def plain_epoch_factory(data: MultiTaskDataset, batch_size: int, device: torch.device) -> Callable[[], None]:
    env = routing_env.RoutingEnv(**env_kwargs(data, batch_size, device))
    env.reset(seed=0)
    net, opt = env.network, env.block_optimizer
    rng = np.random.default_rng(0)
    inputs = data.train.inputs_NCHW.to(device)
    targets_all = data.train.targets_N.to(device)
    routes_all = data.train.tasks_N[:, None].expand(-1, net.num_decisions).contiguous()

    def epoch() -> None:
        net.train()
        perm = torch.from_numpy(rng.permutation(len(data.train)))
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            idx_d = idx.to(device)
            x = data.normalize(inputs[idx_d])
            loss = F.cross_entropy(net(x, routes_all[idx]), targets_all[idx_d])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return epoch


def routing_epoch_factory(
    data: MultiTaskDataset, batch_size: int, device: torch.device, *, batched: bool
) -> Callable[[], None]:
    kwargs = env_kwargs(data, batch_size, device)
    env = routing_env.batched_env(**kwargs) if batched else routing_env.env(**kwargs)
    router = MultiAgentRouter.from_env(env, router_factory=WPL, seed=0)
    run = train_batched if batched else train
    first = [True]

    def epoch() -> None:
        run(env, router, num_samples=len(data.train), seed=0 if first[0] else None)
        first[0] = False

    return epoch


def cross_stitch_epoch_factory(
    data: MultiTaskDataset, batch_size: int, device: torch.device
) -> Callable[[], None]:
    model = build_baseline("cross-stitch-all-fc", dataset=data, seed=0).to(device)
    opt = model_optimizer(model, optimizer="adam", lr=1e-3)
    rng = np.random.default_rng(0)
    held = DeviceSplit(dataset=data, split=data.train, device=device)  # as train_baseline.py does

    def epoch() -> None:
        train_epoch(model, opt, data, batch_size=batch_size, rng=rng, device=device, data=held)

    return epoch


def make_epoch(
    loop: str, data: MultiTaskDataset, batch_size: int, device: torch.device
) -> Callable[[], None]:
    if loop == "plain":
        return plain_epoch_factory(data, batch_size, device)
    if loop in ("batched", "aec"):
        return routing_epoch_factory(data, batch_size, device, batched=loop == "batched")
    return cross_stitch_epoch_factory(data, batch_size, device)


def time_loops(
    loops: list[str], data: MultiTaskDataset, batch_size: int, device: torch.device, repeats: int
) -> dict[str, float]:
    """Best epoch time of each loop; one warm-up epoch each, then repeats interleaved."""
    epochs = {loop: make_epoch(loop, data, batch_size, device) for loop in loops}
    for epoch in epochs.values():
        epoch()  # warm-up: first kernels, allocator, lazily built state
    sync(device)
    best = {loop: float("inf") for loop in loops}
    for _ in range(repeats):
        for loop, epoch in epochs.items():
            start = time.perf_counter()
            epoch()
            sync(device)
            best[loop] = min(best[loop], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", action="append", help="torch device (repeatable; default: cpu)")
    parser.add_argument(
        "--threads", type=int, action="append", help="torch threads (repeatable; default: 1 and 2)"
    )
    parser.add_argument("--shapes", default="cifar,mnist", help=f"comma-separated of {sorted(SHAPES)}")
    parser.add_argument("--loops", default=",".join(LOOPS), help=f"comma-separated of {LOOPS}")
    parser.add_argument("--samples", type=int, default=3200, help="training samples per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per loop (best is reported)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--csv", type=Path, default=None, help="also write the table to this CSV file")
    args = parser.parse_args()
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    loops = [s.strip() for s in args.loops.split(",") if s.strip()]
    if set(shapes) - set(SHAPES) or set(loops) - set(LOOPS):
        parser.error(f"--shapes must be of {sorted(SHAPES)} and --loops of {LOOPS}")
    if args.samples < args.batch_size:
        parser.error("--samples must be at least --batch-size")
    devices = [torch.device(d) for d in (args.device or ["cpu"])]
    threads = args.threads or [1, 2]
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}; {args.samples} samples per "
        f"epoch, batch {args.batch_size}, best of {args.repeats}"
    )
    header = f"{'shape':<7}{'device':<22}{'threads':>8}  {'loop':<13}{'epoch (s)':>10}{'samples/s':>11}{'/ plain':>9}"
    print(header)
    rows = []
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for shape in shapes:
                data = synthetic(shape, args.samples)
                best = time_loops(loops, data, args.batch_size, device, args.repeats)
                for loop in loops:
                    seconds = best[loop]
                    ratio = seconds / best["plain"] if "plain" in best else float("nan")
                    rows.append(
                        {
                            "shape": shape,
                            "device": name,
                            "threads": n_threads,
                            "loop": loop,
                            "epoch_s": round(seconds, 4),
                            "samples_per_s": round(args.samples / seconds, 1),
                            "vs_plain": round(ratio, 3),
                        }
                    )
                    print(
                        f"{shape:<7}{name[:21]:<22}{n_threads:>8}  {loop:<13}{seconds:>10.3f}"
                        f"{args.samples / seconds:>11.0f}{ratio:>8.2f}x",
                        flush=True,
                    )
                if "batched" in best and "cross-stitch" in best:
                    print(f"{'':<37}batched / cross-stitch: {best['batched'] / best['cross-stitch']:.2f}x")
    if args.csv is not None:
        write_rows(args.csv, rows)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
