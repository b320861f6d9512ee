"""CI installs what the README's set-up command installs and runs its test command, verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_setup() -> list[str]:
    """The lines of the README's first bash block: the install command and the test command."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```bash\n(.*?)```", text, re.DOTALL)
    assert match is not None, "the README has no bash block"
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


def ci_lines() -> list[str]:
    return [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]


def test_the_readme_starts_with_an_install_and_a_test_command():
    install, test = readme_setup()
    assert install.startswith("pip install -e ") and test == "python -m pytest"


def test_ci_runs_the_readme_commands_verbatim_before_anything_else_is_installed():
    lines = ci_lines()
    install, test = readme_setup()
    assert install in lines and test in lines
    first_install = min(
        i for i, line in enumerate(lines) if line.startswith(("pip install", "python -m pip"))
    )
    assert lines[first_install] == install  # nothing installed before the README's command...
    assert lines.index(test) == lines.index(install) + 1  # ...and its test command right after it
    # no pip upgrade: the README's command must work with the pip a fresh venv ships
    assert not any("--upgrade pip" in line or "-U pip" in line for line in lines)


def test_the_extras_step_installs_every_extra_the_marked_tests_need():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    extras = re.findall(
        r"^(\w+) = \[", pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0], re.M
    )
    steps = [
        line for line in ci_lines() if re.match(r"(\S*/)?pip install -e", line) and line != readme_setup()[0]
    ]
    installed = {extra for step in steps for extra in re.search(r"\[(.*)\]", step).group(1).split(",")}
    # every extra of pyproject.toml is either in dev (step 1) or installed in the extras step
    dev = re.search(r'dev = \["routing-env\[(.*?)\]"', pyproject).group(1).split(",")
    assert set(extras) - {"dev", "test"} <= installed | set(dev)
    assert '-m "extras and not slow"' in " ".join(ci_lines())
