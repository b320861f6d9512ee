"""The routing game over training: distance to equilibrium, entropy and purity (beyond the paper).

Section 5 of Rosenbaum, Klinger & Riemer (ICLR 2018) reads the policy dynamics in the
language of games ("the agents find a pure strategy for routing", "pulled away from
their early Nash equilibrium"). This script measures that. WPL routers train a routed
SimpleConvNet; every ``--analyze-every`` training samples the blocks are frozen and
:func:`routing_env.game.analyze_game` evaluates, on held-out test samples, each
agent's value (expected final reward of its current policy), its best response (the
best pure routing path of each task, every path enumerated) and the gain between them;
their sum is a NashConv-style distance to equilibrium. With per-task agents and frozen
blocks an agent's return does not depend on the others' policies, so NashConv is the
sum of the per-task optimality gaps; with ``--router dispatched`` the dispatcher's
choices couple the agents (see ``docs/policy_dynamics.md``).

Between analyses the agents train on the batched path (:class:`routing_env.BatchedRoutingEnv`,
one step per depth of a whole minibatch, as ``examples/train_wpl.py`` does), which routes
whole minibatches: an analysis falls at the first minibatch boundary at or after each
``--analyze-every`` samples (and at the end of the last epoch), and its ``sample`` column
says where. ``--aec`` trains sample by sample through the PettingZoo AEC env instead (the
reference interface: the same game, about 2-3x slower), with analyses exactly every
``--analyze-every`` samples. The analyses themselves never step the env.

Writes ``--output`` (PNG: NashConv with its standard error and the cross-fitted
estimate, the value, each agent's gain, the mean route entropy and the number of
agents with a pure policy) and two CSVs next to it: ``<output>.csv`` (one row per
analysis) and ``<output>_agents.csv`` (one row per analysis and agent).

    python examples/figures/game_dynamics.py --output docs/figures/game_dynamics.png
    python examples/figures/game_dynamics.py --epochs 10 --analyze-every 2000 --max-samples-per-task 359
    python examples/figures/game_dynamics.py --router dispatched --per-sample --max-samples-per-task 30
    python examples/figures/game_dynamics.py --aec         # train through the per-sample AEC path
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
from agents import WPL, MultiAgentRouter, train, train_batched
from routing_env.experiments import (
    DatasetOptions,
    check_seed,
    load_run_dataset,
    parse_args,
    seed_everything,
    write_rows,
)
from routing_env.extras import import_extra
from routing_env.game import analyze_game

Figure = import_extra("matplotlib.figure", feature=__file__, extra="plots", package="matplotlib").Figure


@dataclass
class Args(DatasetOptions):
    """Track the routing game (NashConv, entropy, purity) over training."""

    output: str = "game_dynamics.png"
    """PNG to write; the numbers go to <output>.csv and <output>_agents.csv"""
    epochs: int = 5
    """training epochs"""
    analyze_every: int = 2000
    """training samples between two analyses (the first is at sample 0; the batched path rounds up to whole minibatches)"""
    max_samples_per_task: int | None = 100
    """held-out test samples per task used by each analysis (none: all)"""
    eps: float = 0.01
    """an agent is pure when its most likely route has probability >= 1 - eps"""
    router: Literal["per_task", "single", "dispatched"] = "per_task"
    """router agents: one WPL per task, one WPL for all tasks, or a REINFORCE dispatcher over WPL routers"""
    per_sample: bool = False
    """analysis: query the router policies per sample (needed for policies that read the representation)"""
    max_test_samples: int | None = None
    """keep a per-task stratified subset of at most this many test samples (the analyses draw from it)"""
    rho: float = 0.0
    """collaboration reward rho (a training signal; not part of the analyzed payoff)"""
    policy_lr: float = 0.3
    """WPL policy learning rate"""
    optimizer: Literal["sgd", "adam"] = "adam"
    """optimizer of the blocks"""
    lr: float = 1e-3
    """learning rate of the blocks"""
    lr_decay_every: int | None = 10
    """divide the block learning rate by 10 every this many epochs (none: constant)"""
    seed: int = 0
    """seed of the run"""
    aec: bool = False
    """train sample by sample through the PettingZoo AEC env (the reference interface, about 2-3x slower) instead of one minibatch per step (the batched path: the same game; agents act on a minibatch with the policies of its start and learn after it)"""
    torch_threads: int = 1
    """torch intra-op threads"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_seed("--seed", self.seed)
        if self.epochs < 1 or self.analyze_every < 1:
            raise ValueError("--epochs and --analyze-every must be >= 1")


def plot(summary: list[dict[str, Any]], agents: list[dict[str, Any]]) -> Figure:
    x = np.array([r["sample"] for r in summary])
    fig = Figure(figsize=(10, 6.4), layout="constrained")
    (ax1, ax2), (ax3, ax4) = fig.subplots(2, 2, sharex=True)
    nc = np.array([r["nash_conv"] for r in summary])
    se = np.array([r["nash_conv_se"] for r in summary])
    ax1.plot(x, nc, "o-", color="C3", ms=3, label="NashConv (plug-in)")
    ax1.fill_between(x, nc - 2 * se, nc + 2 * se, color="C3", alpha=0.2, label="± 2 SE")
    ax1.plot(x, [r["nash_conv_heldout"] for r in summary], "s--", color="C0", ms=3, label="cross-fitted")
    ax1.axhline(0, color="k", lw=0.6)
    ax1.set_ylabel("sum of best-response gains")
    ax1.set_title("distance to equilibrium (frozen blocks)", fontsize=10)
    ax1.legend(fontsize=8)
    value = np.array([r["value"] for r in summary])
    ax2.plot(x, 100 * (value + 1) / 2, "o-", ms=3, color="k", label="current policies")
    best = [np.mean([a["best_response_value"] for a in agents if a["sample"] == s]) for s in x]
    ax2.plot(x, 100 * (np.array(best) + 1) / 2, "--", color="0.5", label="best pure paths")
    ax2.set_ylabel("held-out accuracy (%) = (value + 1) / 2")
    ax2.set_title("value of the current policies", fontsize=10)
    ax2.legend(fontsize=8)
    names = sorted(
        {a["agent"] for a in agents}, key=lambda a: (a.startswith("router"), int(a.rsplit("_", 1)[-1]))
    )
    for i, name in enumerate(names):
        mine = [a for a in agents if a["agent"] == name]
        ax3.plot([a["sample"] for a in mine], [a["gain"] for a in mine], lw=1, color=f"C{i % 10}", label=name)
    ax3.set_ylabel("best-response gain")
    ax3.set_xlabel("training samples")
    ax3.set_title("per agent", fontsize=10)
    ax3.legend(fontsize=6, ncol=2)
    ax4.plot(
        x, [r["mean_entropy"] for r in summary], "o-", ms=3, color="C2", label="mean route entropy (nats)"
    )
    ax4.set_ylabel("entropy (nats)")
    ax4.set_xlabel("training samples")
    twin = ax4.twinx()
    twin.step(x, [r["num_pure"] for r in summary], where="post", color="C1", label="pure agents")
    twin.set_ylim(-0.3, max(r["num_agents"] for r in summary) + 0.3)
    twin.set_ylabel("agents with a pure policy")
    ax4.set_title("entropy and purity", fontsize=10)
    handles = ax4.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax4.legend(handles, [h.get_label() for h in handles], fontsize=8)
    return fig


def main(args: Args) -> Path:
    torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed)
    dataset = load_run_dataset(args)
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
    # the batched path plays the same game on the AEC env's engine; the analyses read the network
    trainer: Any = env if args.aec else routing_env.BatchedRoutingEnv(env=env)
    run_epoch = train if args.aec else train_batched
    env.reset(seed=args.seed)
    print(
        f"{dataset.name}: {len(dataset.train)} train / {len(dataset.test)} test samples; "
        f"{len(router)} WPL agents ({args.router}, {'AEC' if args.aec else 'batched'} path)",
        file=sys.stderr,
    )
    summary: list[dict[str, Any]] = []
    agent_rows: list[dict[str, Any]] = []
    total = args.epochs * len(dataset.train)
    done, start = 0, time.perf_counter()
    while True:
        # 1. freeze the blocks and analyze the game the agents play now
        game = analyze_game(
            env, router, max_samples_per_task=args.max_samples_per_task, per_sample=args.per_sample,
            eps=args.eps, seed=args.seed,
        )  # fmt: skip
        summary.append({"sample": done, "epoch": done / len(dataset.train), **game.summary()})
        agent_rows.extend({"sample": done, **row} for row in game.rows())
        print(
            f"sample {done:>6}: value {game.value:+.3f}  NashConv {game.nash_conv:.3f} ± {game.nash_conv_se:.3f} "
            f"(cross-fitted {game.nash_conv_heldout:.3f})  entropy {game.mean_entropy:.2f}  "
            f"pure {game.num_pure}/{len(game.agents)}  {time.perf_counter() - start:.0f}s",
            flush=True,
        )
        if done >= total:
            break
        # 2. train on (the env trains the blocks, the agents learn the routes); the batched
        # path routes whole minibatches, so count the samples it routed
        step = min(args.analyze_every, total - done)
        done += run_epoch(trainer, router, num_samples=step).num_samples
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_rows(out.with_suffix(".csv"), summary)
    write_rows(out.with_name(out.stem + "_agents.csv"), agent_rows)
    plot(summary, agent_rows).savefig(out, dpi=100)
    print(
        f"wrote {out}, {out.with_suffix('.csv')} and {out.with_name(out.stem + '_agents.csv')}",
        file=sys.stderr,
    )
    return out


if __name__ == "__main__":
    main(parse_args(Args))
