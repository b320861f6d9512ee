"""Training speed of a third-party algorithm on the batched game against this project's own agents.

On digits-MTL, one torch thread, per-task routers, ``--samples`` training samples each,
in interleaved rounds (the best of ``--repeats`` is reported):

- ``wpl``: this project's per-task WPL routers on :class:`routing_env.BatchedRoutingEnv`
  (``agents.train_batched``), what ``examples/train_wpl.py`` runs;
- ``torchrl-collect``: TorchRL's ``Collector`` driving
  :class:`~routing_env.integrations.torchrl_batched.BatchedTorchRLEnv` with the tabular
  policy of ``examples/torchrl_batched_routers.py`` and no policy update (the cost of the
  interface alone);
- ``torchrl-ppo``: ``examples/torchrl_batched_routers.py`` as printed (collector, GAE and
  4 epochs of ``ClipPPOLoss`` per minibatch).

The env trains its blocks on every minibatch in all three (Adam at 1e-3, batch 64).
Printed: samples/s of each, and each TorchRL loop's time over WPL's::

    pip install 'routing-env[torchrl]'
    python benchmarks/torchrl_batched.py
    python benchmarks/torchrl_batched.py --samples 20000 --repeats 3 --csv out.csv
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

import routing_env
from agents import WPL, MultiAgentRouter, train_batched
from routing_env.datasets import load_dataset
from routing_env.experiments import write_rows

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "torchrl_batched_routers.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("torchrl_batched_routers", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def time_wpl(dataset: object, samples: int) -> float:
    env = routing_env.batched_env(dataset=dataset, router="per_task")
    router = MultiAgentRouter.from_env(env, router_factory=WPL, seed=0)
    start = time.perf_counter()
    train_batched(env, router, num_samples=samples, seed=0)
    return time.perf_counter() - start


def time_collect(example: ModuleType, dataset: object, samples: int) -> float:
    from torchrl.collectors import Collector

    from routing_env.integrations.torchrl_batched import BatchedTorchRLEnv

    env = BatchedTorchRLEnv(dataset=dataset, router="per_task", representation=False)
    env.set_seed(0)
    policy, _ = example.build_modules(env)
    frames = env.rows * env.routing.num_decisions
    batches = -(-samples // env.rows)
    collector = Collector(
        env,
        policy,
        frames_per_batch=frames,
        total_frames=frames * batches,
        auto_register_policy_transforms=False,
    )
    start = time.perf_counter()
    for _ in collector:
        pass
    collector.shutdown()
    return time.perf_counter() - start


def time_ppo(example: ModuleType, samples: int) -> float:
    summary = example.main(example.Args(num_samples=samples, validation_fraction=None))
    return float(summary["train_time_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_048, help="training samples per loop")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the best is reported")
    parser.add_argument("--csv", type=Path, default=None, help="also write the rows to this CSV")
    args = parser.parse_args()
    torch.set_num_threads(1)
    example = load_example()
    dataset = load_dataset("digits-mtl")
    loops = {
        "wpl": lambda: time_wpl(dataset, args.samples),
        "torchrl-collect": lambda: time_collect(example, dataset, args.samples),
        "torchrl-ppo": lambda: time_ppo(example, args.samples),
    }
    best = {name: float("inf") for name in loops}
    for _ in range(args.repeats):
        for name, loop in loops.items():
            best[name] = min(best[name], loop())
    rows = [
        {
            "loop": name,
            "samples": args.samples,
            "seconds": round(seconds, 3),
            "samples_per_s": round(args.samples / seconds, 1),
            "time_over_wpl": round(seconds / best["wpl"], 3),
        }
        for name, seconds in best.items()
    ]
    for row in rows:
        print(
            f"{row['loop']:>16}: {row['samples_per_s']:8.1f} samples/s  "
            f"({row['seconds']:.2f} s; {row['time_over_wpl']:.2f}x WPL's time)"
        )
    if args.csv is not None:
        write_rows(args.csv, rows)


if __name__ == "__main__":
    main()
