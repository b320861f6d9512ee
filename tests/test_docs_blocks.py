"""Every Python block of the docs runs as printed (blocks of one page share a namespace, in order)."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: page -> the extras its blocks import (they skip without them)
PAGES = {
    "docs/integrations.md": ("torchrl",),
    "docs/policy_dynamics.md": (),
    "docs/tutorials/third-party.md": ("torchrl",),
}


def python_blocks(page: str) -> list[str]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


@pytest.mark.slow  # the policy-dynamics page records a whole digits-MTL epoch (about a minute)
@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_pages_python_blocks_run_as_printed(page, tmp_path, monkeypatch):
    for module in PAGES[page]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{page} needs {module}: pip install 'routing-env[{module}]'")
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python block"
    monkeypatch.chdir(tmp_path)  # a block may write files (recording.csv.gz)
    namespace: dict = {"__name__": f"docs_{Path(page).stem}"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{page}:block {i + 1}", "exec"), namespace)
    assert os.getcwd() == str(tmp_path)
