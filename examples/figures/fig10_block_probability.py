"""Figure 10: the probability of choosing one block over time, one curve per agent.

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, section 5: "we pick one
particular function block (block 7) and plot the probability, for each agent, of
choosing that block over time. [...] there is considerable oscillation over time until
two agents [...] emerge as the 'victors' for the use of block 7."

Reads a recording made by ``record_policy_dynamics.py``. Without ``--block`` the block
that the most agents favour at the end of the recording is drawn (the most contested).

    python examples/figures/fig10_block_probability.py --recording docs/figures/recording.csv \\
        --output docs/figures/fig10_block_probability.png
    python examples/figures/fig10_block_probability.py --recording rec.csv --block 7 --depth 0
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from routing_env.experiments import parse_args
from routing_env.extras import import_extra
from routing_env.recording import PolicyRecording, load_recording

Figure = import_extra("matplotlib.figure", feature=__file__, extra="plots", package="matplotlib").Figure


@dataclass
class Args:
    """Draw Fig. 10 (probability of one block per agent over time) from a policy recording."""

    recording: str = "recording.csv"
    """recording CSV written by record_policy_dynamics.py"""
    output: str = "fig10_block_probability.png"
    """PNG to write"""
    block: int | None = None
    """the block (action) to follow; none: the one most agents favour at the end"""
    depth: int = 0
    """routing depth of the block"""
    x: Literal["sample", "agent_sample"] = "sample"
    """time axis: training samples of all tasks, or samples seen by each agent"""
    until: int | None = None
    """show only times below this (none: the whole run)"""


def contested_block(recording: PolicyRecording, *, depth: int) -> int:
    """The block that the most tasks favour at the end (lowest index on ties)."""
    blocks, _ = recording.routing_map()
    favoured = blocks[:, depth]
    favoured = favoured[favoured >= 0]
    if len(favoured) == 0:
        raise ValueError(f"the recording has no decision at depth {depth}")
    return int(np.bincount(favoured).argmax())


def plot(
    recording: PolicyRecording,
    *,
    block: int,
    depth: int,
    x: Literal["sample", "agent_sample"] = "sample",
    until: int | None = None,
) -> Figure:
    if not 0 <= block < recording.num_actions:
        raise ValueError(f"block must be in [0, {recording.num_actions}), got {block}")
    agents = [a for a in recording.agent_names if a.startswith("router_")]
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(agents))]
    for agent, color in zip(agents, colors, strict=True):
        t, probs = recording.policy(agent, depth=depth, x=x)
        if until is not None:
            keep = t < until
            t, probs = t[keep], probs[keep]
        if len(t):
            ax.plot(t, probs[:, block], color=color, lw=1.2, label=f"T{agent.rsplit('_', 1)[-1]}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(
        "training samples (all tasks)" if x == "sample" else "samples of its task seen by the agent"
    )
    ax.set_ylabel(f"P(block {block} at depth {depth})")
    ax.set_title(f"Probability of each agent choosing block {block} at depth {depth}", fontsize=10)
    ax.legend(ncol=2, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="agent")
    return fig


def main(args: Args) -> Path:
    recording = load_recording(args.recording)
    block = args.block if args.block is not None else contested_block(recording, depth=args.depth)
    fig = plot(recording, block=block, depth=args.depth, x=args.x, until=args.until)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out} (block {block}, depth {args.depth})", file=sys.stderr)
    return out


if __name__ == "__main__":
    main(parse_args(Args))
