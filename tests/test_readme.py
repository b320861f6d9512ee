"""The README's quick start runs as written and learns (issue 15).

The code is read from README.md itself, so the README and this test cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pettingzoo

import routing_env

README = Path(__file__).resolve().parents[1] / "README.md"
MAJORITY_RATE = 0.900  # digits-MTL: every task is 1-vs-rest with 10% positives


def quick_start_code() -> str:
    """The first Python block after the README's "Quick start" heading."""
    text = README.read_text(encoding="utf-8")
    heading = text.index("### Quick start")
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


def test_the_registry_id_in_the_readme_makes_the_env(digits):
    assert routing_env.ENV_ID in README.read_text(encoding="utf-8")
    env = pettingzoo.make("aec", routing_env.ENV_ID, dataset=digits, router="per_task")
    env.reset(seed=0)
    assert isinstance(env.unwrapped, routing_env.RoutingEnv)
