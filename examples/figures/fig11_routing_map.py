"""Figure 11: the routing map, which block each task uses at each depth.

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, section 5: "tasks are at the
top and each layer below represents one routing decision [...] the agents have
converged on a strategy which first uses 7 function blocks, then compresses to just 4,
then again expands to use 5."

For each task and depth the map shows the most probable block, averaged over the last
``--window`` recorded decisions up to time ``--at`` (default: the end of the
recording); a line's opacity is that probability. Reads a recording made by
``record_policy_dynamics.py``:

    python examples/figures/fig11_routing_map.py --recording docs/figures/recording.csv \\
        --output docs/figures/fig11_routing_map.png
    python examples/figures/fig11_routing_map.py --recording rec.csv --at 5000 --window 5
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
    """Draw Fig. 11 (routing map: block per task and depth) from a policy recording."""

    recording: str = "recording.csv"
    """recording CSV written by record_policy_dynamics.py"""
    output: str = "fig11_routing_map.png"
    """PNG to write"""
    at: int | None = None
    """time (training samples) of the map; none: the end of the recording"""
    window: int = 1
    """recorded decisions averaged per task and depth (1: the latest policy)"""


def plot(recording: PolicyRecording, *, at: int | None = None, window: int = 1) -> Figure:
    blocks, share = recording.routing_map(at=at, window=window)
    T, n = blocks.shape
    A = recording.num_actions
    width = max(T, A)
    fig = Figure(figsize=(max(6.0, 0.6 * width + 2), 1.3 * n + 1.6), layout="constrained")
    ax = fig.add_subplot()
    task_x = np.linspace(0, width - 1, T)
    block_x = np.linspace(0, width - 1, A)
    # block nodes, one row per depth (depth 0 at the top, under the tasks)
    for d in range(n):
        used = set(blocks[:, d][blocks[:, d] >= 0].tolist())
        for a in range(A):
            ax.scatter(
                block_x[a], -(d + 1), s=260, marker="s", zorder=3,
                color="0.35" if a in used else "0.9", edgecolor="0.2",
            )  # fmt: skip
            ax.text(block_x[a], -(d + 1), str(a), ha="center", va="center", fontsize=7, zorder=4,
                    color="white" if a in used else "0.3")  # fmt: skip
        ax.text(width - 0.2, -(d + 1), f"  depth {d}: {len(used)} blocks", va="center", fontsize=8)
    # one path per task, slightly offset so that shared blocks show every task's line
    offsets = (np.arange(T) - (T - 1) / 2) * min(0.3 / max(T - 1, 1), 0.04)
    for t in range(T):
        xs, ys = [task_x[t]], [0.0]
        for d in range(n):
            if blocks[t, d] < 0:
                break
            xs.append(block_x[blocks[t, d]] + offsets[t])
            ys.append(-(d + 1))
        alpha = float(np.nanmin(share[t])) if np.isfinite(share[t]).any() else 0.0
        ax.plot(xs, ys, color=f"C{t % 10}", lw=2.2, alpha=0.25 + 0.75 * alpha, zorder=2)
        ax.text(
            task_x[t], 0.25, f"T{t}", ha="center", va="bottom", fontsize=9, color=f"C{t % 10}", weight="bold"
        )
    ax.set_xlim(-0.8, width + 1.8)
    ax.set_ylim(-(n + 0.6), 0.8)
    ax.set_axis_off()
    when = "end of the recording" if at is None else f"sample {at}"
    ax.set_title(
        f"Routing map at the {when} (opacity: probability of the route's least sure step)", fontsize=9
    )
    return fig


def main(args: Args) -> Path:
    recording = load_recording(args.recording)
    fig = plot(recording, at=args.at, window=args.window)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    blocks, share = recording.routing_map(at=args.at, window=args.window)
    for t, (route, p) in enumerate(zip(blocks.tolist(), share.tolist(), strict=True)):
        print(f"task {t}: blocks {route}  probabilities {np.round(p, 2).tolist()}", file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main(parse_args(Args))
