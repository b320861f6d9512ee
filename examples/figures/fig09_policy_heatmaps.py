"""Figure 9: the policy of every agent over time at one depth, a heat map per task.

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, section 5: "Each rectangle
labeled Ti on the left represents the evolution of the agent's policy for that task.
For each task, the horizontal axis is number of samples per task and the vertical axis
is actions (decisions). Each vertical slice shows the probability distribution over
actions after having seen that many samples of its task, with darker shades indicating
higher probability." The paper shows the first 100 samples of each MNIST-MTL task at
the first routed layer (``--depth 0 --until 100``).

Reads a recording made by ``record_policy_dynamics.py``:

    python examples/figures/fig09_policy_heatmaps.py --recording docs/figures/recording.csv \\
        --output docs/figures/fig09_policy_heatmaps.png
    python examples/figures/fig09_policy_heatmaps.py --recording rec.csv --depth 1 --until 100
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routing_env.experiments import parse_args
from routing_env.extras import import_extra
from routing_env.recording import PolicyRecording, load_recording

Figure = import_extra("matplotlib.figure", feature=__file__, extra="plots", package="matplotlib").Figure


@dataclass
class Args:
    """Draw Fig. 9 (policy heat maps per task) from a policy recording."""

    recording: str = "recording.csv"
    """recording CSV written by record_policy_dynamics.py"""
    output: str = "fig09_policy_heatmaps.png"
    """PNG to write"""
    depth: int = 0
    """routing depth to show (0: the first routed layer, as in the paper)"""
    until: int | None = None
    """show only each agent's first N samples (the paper: 100); none: the whole run"""
    agent_prefix: str = "router_"
    """agents whose policies are drawn (the dispatcher has its own action space)"""


def plot(
    recording: PolicyRecording, *, depth: int, until: int | None = None, agent_prefix: str = "router_"
) -> Figure:
    """One heat map per agent: samples seen by the agent (x) by action (y), shade = probability."""
    agents = [
        a
        for a in recording.agent_names
        if a.startswith(agent_prefix) and len(recording.rows(agent=a, depth=depth))
    ]
    if not agents:
        raise ValueError(f"the recording has no decision at depth {depth} by agents named {agent_prefix}*")
    A = recording.num_actions
    fig = Figure(figsize=(7.5, 0.55 * len(agents) + 1.2), layout="constrained")
    axes = fig.subplots(len(agents), 1, sharex=True, squeeze=False)[:, 0]
    mesh = None
    for ax, agent in zip(axes, agents, strict=True):
        x, probs = recording.policy(agent, depth=depth)
        if until is not None:
            keep = x < until
            x, probs = x[keep], probs[keep]
        if len(x) == 0:
            ax.set_axis_off()
            continue
        # each recorded policy holds until the next recorded sample
        edges = np.append(x, x[-1] + (x[-1] - x[-2] if len(x) > 1 else 1))
        mesh = ax.pcolormesh(
            edges,
            np.arange(A + 1) - 0.5,
            np.nan_to_num(probs.T),
            cmap="Greys",
            vmin=0,
            vmax=1,
            shading="flat",
        )
        ax.set_yticks([0, A - 1])
        ax.tick_params(axis="y", labelsize=6)
        ax.set_ylabel(f"T{agent.rsplit('_', 1)[-1]}", rotation=0, ha="right", va="center", fontsize=8)
    axes[-1].set_xlabel("samples of its task seen by the agent")
    fig.suptitle(f"Policy of each agent over time at depth {depth} (rows: blocks 0..{A - 1})", fontsize=10)
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes), label="probability", shrink=0.6)
    return fig


def main(args: Args) -> Path:
    recording = load_recording(args.recording)
    fig = plot(recording, depth=args.depth, until=args.until, agent_prefix=args.agent_prefix)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main(parse_args(Args))
