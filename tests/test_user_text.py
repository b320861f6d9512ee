"""What users read holds no absolute paths of a machine and no issue numbers.

Docs, the README, committed result files and run folders use paths relative to the
repository, ``$ROUTING_ENV_DATA`` or ``RUNS/...`` (``examples/paper/portable_paths.py``
rewrites them before results are committed); help texts, docstrings and docs speak of
the code as it is, not of the issues that shaped it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISSUE = re.compile(r"\bissues? #?\d+", re.IGNORECASE)
#: An issue of another project, cited by its repository (``owner/name issues #76``): allowed.
CITED = re.compile(r"[\w.-]+/[\w.-]+ issues? #?\d+", re.IGNORECASE)


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:  # not a git checkout (an sdist): every file under the folders
        return [p for pattern in patterns for p in ROOT.glob(pattern.replace("*", "**/*", 1)) if p.is_file()]
    return [ROOT / line for line in out.stdout.splitlines()]


def test_no_absolute_machine_paths_in_docs_or_the_readme():
    sys.path.insert(0, str(ROOT / "examples" / "paper"))
    try:
        from portable_paths import portable
    finally:
        sys.path.remove(str(ROOT / "examples" / "paper"))
    bad = []
    for path in [ROOT / "README.md", *tracked("docs")]:
        if path.suffix in (".md", ".json", ".csv"):
            text = path.read_text(encoding="utf-8")
            if portable(text, data_root=None) != text:
                bad.append(str(path.relative_to(ROOT)))
    assert bad == [], f"absolute paths in {bad}: run python examples/paper/portable_paths.py --folders ..."


def test_no_issue_numbers_in_what_users_read():
    bad = []
    for path in [ROOT / "README.md", *tracked("docs", "examples", "routing_env", "agents", "benchmarks")]:
        if path.suffix in (".md", ".py", ".json", ".sh", ".toml", ".yml"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if ISSUE.search(CITED.sub("", line)):
                    bad.append(f"{path.relative_to(ROOT)}:{number}")
    assert bad == [], f"issue numbers in user-facing text: {bad}"
