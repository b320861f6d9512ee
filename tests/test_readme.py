"""The README's quick start runs as written and learns (issue 15).

The code is read from README.md itself, so the README and this test cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pettingzoo
import pytest

import routing_env

README = Path(__file__).resolve().parents[1] / "README.md"
MAJORITY_RATE = 0.900  # digits-MTL: every task is 1-vs-rest with 10% positives


def quick_start_code(heading_text: str = "## Quick start") -> str:
    """The first Python block after a README heading (default: "Quick start")."""
    text = README.read_text(encoding="utf-8")
    heading = text.index(heading_text)
    match = re.compile(r"```python\n(.*?)```", re.DOTALL).search(text, heading)
    assert match is not None, "no python block after the quick start heading"
    return match.group(1)


def test_the_quick_start_learner_beats_the_majority_rate_clearly(capsys):
    namespace: dict = {"__name__": "readme_quick_start"}
    exec(compile(quick_start_code(), f"{README}:quick start", "exec"), namespace)
    result = namespace["result"]
    env = namespace["env"]
    assert result["complete"] and result["samples"] == len(env.unwrapped.dataset.test) == 3590
    assert result["accuracy"] > MAJORITY_RATE + 0.03, result
    assert min(result["accuracy_per_task"]) > 0.8, result  # every task, not an average of a few
    out = capsys.readouterr().out
    assert "TrainingConfig(batch_size=64, lr=0.001, optimizer='adam'" in out  # the settings it shows
    assert f"test accuracy {result['accuracy']:.3f} on 3590 samples" in out


def test_the_batched_block_runs_as_printed_and_learns(capsys):
    """WPL routers on the batched path, 10,000 training samples: well above the majority rate."""
    namespace: dict = {"__name__": "readme_batched"}
    exec(compile(quick_start_code("### The batched path"), f"{README}:batched", "exec"), namespace)
    assert namespace["accuracy"] > 0.95
    assert f"test accuracy {namespace['accuracy']:.3f} (majority class: 0.900)" in capsys.readouterr().out


@pytest.mark.skipif(
    not hasattr(pettingzoo, "aec_registry"), reason="PettingZoo's registry exists from pettingzoo 1.27 on"
)
def test_the_registry_id_in_the_readme_makes_the_env(digits):
    assert routing_env.ENV_ID in README.read_text(encoding="utf-8")
    env = pettingzoo.make("aec", routing_env.ENV_ID, dataset=digits, router="per_task")
    env.reset(seed=0)
    assert isinstance(env.unwrapped, routing_env.RoutingEnv)


ARCHITECTURE = README.parent / "docs" / "architecture.md"


def layout_paths() -> list[str]:
    """The paths of the architecture page's layout table (first column; ``a.py`, `b.py`` share a folder)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = text[text.index("## Layout") : text.index("## Tests")]
    paths: list[str] = []
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        names = re.findall(r"`([^`]+)`", cell)
        folder = names[0].rpartition("/")[0]
        paths += [names[0]] + [n if "/" in n else f"{folder}/{n}" for n in names[1:]]
    return paths


def test_the_layout_table_matches_the_tree():
    root = README.parent
    paths = layout_paths()
    assert [p for p in paths if not (root / p).exists()] == []
    listed = {p.rstrip("/") for p in paths}
    # every module and subpackage of the packages, and every top-level code folder, has a row
    tree = {
        str(p.relative_to(root))
        for package in ("routing_env",)
        for p in (root / package).iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())
    } | {"agents", "examples", "examples/paper", "examples/figures", "examples/tutorials", "examples/docs", "benchmarks"}
    assert sorted(tree - listed) == []
