"""Draw the architecture page's picture: the packages, and how a sample flows through them.

    python examples/docs/architecture_picture.py            # writes docs/figures/architecture.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routing_env.experiments import parse_args
from routing_env.extras import import_extra

Figure = import_extra("matplotlib.figure", feature=__file__, extra="plots", package="matplotlib").Figure
patches = import_extra("matplotlib.patches", feature=__file__, extra="plots", package="matplotlib")
FancyArrowPatch, FancyBboxPatch = patches.FancyArrowPatch, patches.FancyBboxPatch

ROOT = Path(__file__).resolve().parents[2]

#: (x, y, width, height, title, lines, colour) in axes units (0..10 x 0..6)
BOXES = {
    "data": (0.2, 3.9, 2.2, 1.7, "routing_env.datasets", ["MultiTaskDataset", "train / validation / test"], "#dbe9f6"),
    "network": (2.9, 3.9, 2.4, 1.7, "routing_env.network", ["trunk (SimpleConvNet)", "routed layers of blocks"], "#dbe9f6"),
    "engine": (5.8, 3.9, 2.4, 1.7, "routing_env.engine", ["routes, rewards (rewards.py)", "block training"], "#dbe9f6"),
    "aec": (4.2, 1.9, 2.0, 1.3, "env.py", ["PettingZoo AEC:", "one decision per step"], "#e2f0d9"),
    "batched": (6.6, 1.9, 2.3, 1.3, "batched_env.py", ["one depth of a", "minibatch per step"], "#e2f0d9"),
    "agents": (3.0, 0.1, 3.0, 1.2, "agents/ or any MARL library", ["WPL, REINFORCE, Q-learning;", "TorchRL, Tianshou, RLlib"], "#fbe5d6"),
    "lab": (6.6, 0.1, 3.2, 1.2, "examples/, benchmarks/", ["training scripts, run folders,", "the paper's figures"], "#ededed"),
    "game": (0.2, 1.6, 3.2, 1.6, "recording.py, game.py", ["policies over time,", "NashConv, best responses"], "#fff2cc"),
}
#: (from, to, label)
ARROWS = [
    ("data", "network", "minibatch"),
    ("network", "engine", "v"),
    ("engine", "aec", ""),
    ("engine", "batched", ""),
    ("aec", "agents", "obs, mask, reward"),
    ("batched", "lab", ""),
    ("aec", "game", "wrapped"),
]


@dataclass
class Args:
    """Draw docs/figures/architecture.png."""

    output: str = "docs/figures/architecture.png"
    """where to write the PNG"""


def centre(box: tuple) -> tuple[float, float]:
    x, y, w, h = box[:4]
    return x + w / 2, y + h / 2


def edge(box: tuple, towards: tuple[float, float], gap: float = 0.08) -> tuple[float, float]:
    """Where the line from ``box``'s centre towards a point leaves the box (plus a gap)."""
    (cx, cy), (w, h) = centre(box), box[2:4]
    dx, dy = towards[0] - cx, towards[1] - cy
    t = min((w / 2 + gap) / abs(dx) if dx else float("inf"), (h / 2 + gap) / abs(dy) if dy else float("inf"))
    return cx + dx * t, cy + dy * t


def draw() -> Any:
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 6)
    ax.axis("off")
    for x, y, w, h, title, lines, colour in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#555555"))
        ax.text(x + w / 2, y + h - 0.3, title, ha="center", va="center", fontsize=10, weight="bold")
        for i, line in enumerate(lines):
            ax.text(x + w / 2, y + h - 0.75 - 0.35 * i, line, ha="center", va="center", fontsize=9)
    for start, end, label in ARROWS:
        a, b = BOXES[start], BOXES[end]
        (x0, y0), (x1, y1) = edge(a, centre(b)), edge(b, centre(a))
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=14))
        if label:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.1, label, ha="center", fontsize=8, style="italic")
    ax.text(5, 5.85, "routing_env/: the environment", ha="center", fontsize=11, color="#1f4e79")
    return fig


def main(args: Args) -> Path:
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw().savefig(path, dpi=80)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main(parse_args(Args))
