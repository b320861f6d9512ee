"""The tutorials the docs site shows run as printed (examples/tutorials/)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "examples" / "tutorials"


def test_the_readme_quick_start_is_the_own_router_tutorial():
    """The README shows the tutorial's code (tests/test_readme.py runs it there)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.compile(r"```python\n(.*?)```", re.DOTALL).search(readme, readme.index("## Quick start"))
    assert block is not None
    script = (TUTORIALS / "own_router.py").read_text(encoding="utf-8")
    code = script[script.index('"""', 3) + 3 :].lstrip("\n")  # after the docstring
    assert block.group(1) == code


@pytest.mark.slow  # about a minute each on a busy core
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("wpl_routers.py", r"chosen policy lr [\d.]+: test accuracy 0\.9[5-9]\d*"),
        ("policy_dynamics.py", r"NashConv \d+\.\d+ \(standard error"),
    ],
)
def test_a_tutorial_runs_and_prints_what_it_says(name, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # files a tutorial writes land here
    runpy.run_path(str(TUTORIALS / name), run_name="__main__")
    out = capsys.readouterr().out
    assert re.search(expected, out), out
    if name == "policy_dynamics.py":
        assert (tmp_path / "policy_heatmap.png").stat().st_size > 5_000
