"""Time per CIFAR-MTL epoch on a device: routing-all-fc (WPL through the env) and a baseline.

How long does the paper's budget (100 epochs of CIFAR-MTL: 50,000 training and 10,000
test samples, 20 tasks of 5 classes, 32x32 colour images) take on this machine? This
benchmark trains on CIFAR-shaped synthetic inputs (the shapes, task count and batch
size of CIFAR-MTL; the pixel values do not change the arithmetic), times a slice of an
epoch and projects it to the full budget:

- ``routing``: per-task tabular WPL routers (``examples/train_wpl.py``'s defaults) on
  the batched path (``routing-aec``: through the AEC API, one decision per step): 3
  routing decisions per sample, block training every 64 samples; then a greedy
  evaluation pass (counted twice in the projection: ``train_wpl.py`` also evaluates the
  sampled routes each epoch);
- ``cross-stitch``: the cross-stitch-all-fc baseline trained by plain PyTorch
  (``routing_env.baselines.train_epoch``), then evaluated.

Each ``--device`` is timed in turn (``cpu``, ``cuda``, ...)::

    python benchmarks/epoch_time.py                               # cpu, 3,000 samples
    python benchmarks/epoch_time.py --device cpu --device cuda --samples 10000

The projection assumes the time per sample stays as measured over the slice (it does
not include data loading, which is a one-off, or checkpointing).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from env_overhead import cifar_shaped

import routing_env
from agents import WPL, MultiAgentRouter, evaluate, evaluate_batched, train, train_batched
from routing_env.baselines import DeviceSplit, build_baseline, evaluate_model, model_optimizer, train_epoch

#: CIFAR-MTL's split sizes (CIFAR-100: 500 train and 100 test images per class, 100 classes).
CIFAR_MTL_TRAIN, CIFAR_MTL_TEST = 50_000, 10_000


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_routing(
    data, device: torch.device, batch_size: int, warmup: int, *, batched: bool = True
) -> tuple[float, float]:
    """Seconds per training sample and per evaluation sample of per-task WPL through the env
    (the batched path, or the per-sample AEC path)."""
    kwargs = dict(dataset=data, batch_size=batch_size, optimizer="adam", lr=1e-3, device=str(device))
    env = routing_env.batched_env(**kwargs) if batched else routing_env.env(**kwargs)
    router = MultiAgentRouter.from_env(env, router_factory=WPL, seed=0)
    run = train_batched if batched else train
    run(env, router, num_samples=warmup, seed=0)  # first kernels, allocator, caches
    sync(device)
    start = time.perf_counter()
    stats = run(env, router, num_samples=len(data.train) - warmup)
    sync(device)
    train_s = (time.perf_counter() - start) / stats.num_samples
    start = time.perf_counter()
    if batched:
        evaluate_batched(env, router)
    else:
        evaluate(env, router, num_samples=len(data.test))
    sync(device)
    eval_s = (time.perf_counter() - start) / len(data.test)
    return train_s, eval_s


def time_baseline(data, device: torch.device, batch_size: int, warmup: int) -> tuple[float, float]:
    """Seconds per training sample and per evaluation sample of cross-stitch-all-fc."""
    model = build_baseline("cross-stitch-all-fc", dataset=data, seed=0).to(device)
    opt = model_optimizer(model, optimizer="adam", lr=1e-3)
    rng = np.random.default_rng(0)
    train_held = DeviceSplit(dataset=data, split=data.train, device=device)
    test_held = DeviceSplit(dataset=data, split=data.test, device=device)
    train_epoch(model, opt, data, batch_size=batch_size, rng=rng, device=device, data=train_held)  # warm-up
    sync(device)
    start = time.perf_counter()
    train_epoch(model, opt, data, batch_size=batch_size, rng=rng, device=device, data=train_held)
    sync(device)
    train_s = (time.perf_counter() - start) / len(data.train)
    start = time.perf_counter()
    evaluate_model(model, data, device=device, data=test_held)
    sync(device)
    eval_s = (time.perf_counter() - start) / len(data.test)
    return train_s, eval_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", action="append", help="torch device to time (repeatable; default: cpu)")
    parser.add_argument(
        "--samples", type=int, default=3000, help="training samples timed per model and device"
    )
    parser.add_argument(
        "--epochs", type=int, default=100, help="epochs of the projected budget (the paper: 100)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (the training scripts' default: 1)"
    )
    parser.add_argument(
        "--models",
        default="routing,routing-aec,cross-stitch",
        help="comma-separated: routing (batched path), routing-aec (per-sample AEC path), cross-stitch",
    )
    args = parser.parse_args()
    devices = [torch.device(d) for d in (args.device or ["cpu"])]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - {"routing", "routing-aec", "cross-stitch"}
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; expected routing, routing-aec, cross-stitch")
    if args.samples < 200:
        parser.error("--samples must be at least 200")
    torch.set_num_threads(args.threads)
    warmup = min(256, args.samples // 4)
    data = cifar_shaped(args.samples)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{platform.processor() or platform.machine()}, {args.samples} CIFAR-shaped training samples "
        f"and {len(data.test)} test samples timed; projection: {args.epochs} epochs of "
        f"{CIFAR_MTL_TRAIN:,} train + {CIFAR_MTL_TEST:,} test samples"
    )
    header = f"{'model':<14}{'device':<26}{'train/s':>10}{'eval/s':>10}{'epoch (min)':>13}{'budget (h)':>12}"
    print(header)
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        for model in models:
            if model == "cross-stitch":
                train_s, eval_s = time_baseline(data, device, args.batch_size, warmup)
            else:
                train_s, eval_s = time_routing(
                    data, device, args.batch_size, warmup, batched=model == "routing"
                )
            passes = 1 if model == "cross-stitch" else 2  # train_wpl.py: greedy and sampled routes
            epoch_s = CIFAR_MTL_TRAIN * train_s + passes * CIFAR_MTL_TEST * eval_s
            print(
                f"{model:<14}{name[:25]:<26}{1 / train_s:>10.0f}{1 / eval_s:>10.0f}"
                f"{epoch_s / 60:>13.2f}{args.epochs * epoch_s / 3600:>12.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
