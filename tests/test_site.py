"""The documentation site builds with warnings as errors, and every page works in a real browser."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="needs the 'docs' extra: pip install 'routing-env[docs]'"
)


def build(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.mark.extras
@needs_mkdocs
def test_the_site_builds_strict(tmp_path):
    done = build(tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "environment" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "agents" / "index.html").read_text().count("class") > 10


@pytest.mark.slow
@pytest.mark.extras
@needs_mkdocs
def test_every_page_loads_in_chromium_with_its_images_navigation_and_search(tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's browser: sudo apt-get install chromium chromium-driver")
    pytest.importorskip("selenium", reason="needs the 'docs' extra: pip install 'routing-env[docs]'")
    assert build(tmp_path / "site").returncode == 0
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "docs" / "check_site.py"),
            "--site-dir",
            str(tmp_path / "site"),
            "--screenshots",
            str(tmp_path / "shots"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 problem(s)" in done.stdout
    assert {p.name for p in (tmp_path / "shots").iterdir()} == {"home.png", "environment.png", "verdict.png"}
