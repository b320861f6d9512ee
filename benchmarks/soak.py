"""Soak: drive many routing decisions through the AEC API and watch resident memory.

Memory must stay flat: the env keeps no autograd graph or per-sample history beyond
the current minibatch. Random valid actions on digits-MTL (the env trains its blocks
all along, so this also exercises many epochs of block updates).

    python benchmarks/soak.py                      # 1,000,000 decisions
    python benchmarks/soak.py --decisions 100000 --router dispatched
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from routing_env import RoutingEnv


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--router", default="per_task", choices=["per_task", "single", "dispatched"])
    parser.add_argument("--routing", default="layered", choices=["layered", "recurrent"])
    parser.add_argument("--reports", type=int, default=10, help="memory readings along the way")
    args = parser.parse_args()

    env = RoutingEnv(router=args.router, routing=args.routing, collaboration_reward=0.3)
    rng = np.random.default_rng(0)

    def route(samples: int) -> int:
        """Route ``samples`` samples (one episode each); return the decisions made."""
        made = 0
        for _ in range(samples):
            env.reset()
            for _agent in env.agent_iter():
                obs, reward, terminated, truncated, info = env.last()
                if terminated or truncated:
                    env.step(None)
                    continue
                env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
                made += 1
        return made

    env.reset(seed=0)
    route(1000)  # warm-up: allocator pools and the first block updates
    start_rss, start = rss_mb(), time.perf_counter()
    print(f"after warm-up: RSS {start_rss:.1f} MB", flush=True)
    decisions, chunk = 0, max(1, args.decisions // (args.reports * env.num_decisions))
    while decisions < args.decisions:
        decisions += route(chunk)
        print(
            f"{decisions:>10,} decisions  epoch {env.epochs_completed:>3}  RSS {rss_mb():8.1f} MB  "
            f"{decisions / (time.perf_counter() - start):8,.0f} decisions/s",
            flush=True,
        )
    end_rss = rss_mb()
    print(
        f"RSS after warm-up {start_rss:.1f} MB, at the end {end_rss:.1f} MB "
        f"(change {end_rss - start_rss:+.1f} MB) over {decisions:,} decisions, "
        f"{env.block_updates:,} block updates, {env.epochs_completed} epochs"
    )


if __name__ == "__main__":
    main()
