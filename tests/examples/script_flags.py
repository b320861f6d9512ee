"""The flag set of every example and benchmark script's ``--help``, and its snapshot.

``flags_snapshot.json`` holds, for each script with a command line, every flag its
``--help`` lists and the choices it offers (``{a,b}`` metavars); help texts are not
compared, so they may improve, but a flag renamed, dropped or given other choices
fails ``test_script_flags.py``. The parse reads both argparse's help and tyro's (a box
drawn around the options). Regenerate the snapshot, after a deliberate change of a
script's flags, with::

    python tests/examples/script_flags.py --update
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("flags_snapshot.json")
#: Helper modules of the script folders: they have no command line.
HELPERS = frozenset({"examples/paper/paper_runs.py", "examples/paper/seed_stats.py"})


def tracked_scripts() -> list[str]:
    """The scripts git tracks under examples/ and benchmarks/ (what ``--update`` snapshots)."""
    listed = subprocess.run(
        [
            "git",
            "ls-files",
            "examples/*.py",
            "examples/paper/*.py",
            "examples/figures/*.py",
            "benchmarks/*.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(p for p in listed if p not in HELPERS)


_BOX = "│╭╰─╮╯┃━┏┗┓┛"
_OPTION = re.compile(r"(--?[A-Za-z0-9][\w-]*)(?:[ =](\{[^}]*\}))?")


def help_flags(text: str) -> dict[str, list[str]]:
    """Every flag of a ``--help`` text, with the choices it offers (sorted, without ``none``).

    An option entry is a line (inside tyro's box, if any) that starts with ``-`` at the
    least indentation of such lines; its continuation lines, indented further, are help.
    """
    entries: list[tuple[int, str]] = []
    in_options = False
    for original in text.splitlines():
        boxed = original.startswith(tuple(_BOX))  # tyro draws its options in boxes
        if not boxed and original and not original[0].isspace():
            in_options = original.rstrip().endswith(":") and "usage" not in original  # argparse's "options:"
            continue
        if not (boxed or in_options):
            continue
        body = original.lstrip(" " + _BOX)
        if body.startswith("-"):
            entries.append((len(original) - len(body), body.rstrip(" " + _BOX)))
    if not entries:
        return {}
    least = min(indent for indent, _ in entries)
    flags: dict[str, list[str]] = {}
    for indent, line in entries:
        if indent != least:
            continue
        head = re.split(r"\s{2,}", line, maxsplit=1)[0]  # the option part, before its help
        for alias in head.split(", "):
            match = _OPTION.match(alias.strip())
            if match is None:
                continue
            choices = match.group(2)
            values = [] if choices is None else choices.strip("{}").split(",")
            flags[match.group(1)] = sorted(v for v in values if v.lower() != "none")
    return flags


def script_help(script: str) -> str:
    """What ``python SCRIPT --help`` prints, wide enough that no option line wraps.

    The script runs in this process (as ``__main__``, its folder on ``sys.path``, as
    ``python SCRIPT`` would have it), which saves a Python start with torch per script.
    """
    path = ROOT / script
    saved_argv, saved_path, saved_columns = sys.argv, list(sys.path), os.environ.get("COLUMNS")
    out = io.StringIO()
    sys.argv = [str(path), "--help"]
    sys.path.insert(0, str(path.parent))
    os.environ["COLUMNS"] = "400"
    code: object = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        if saved_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved_columns
    if code not in (0, None):
        raise RuntimeError(f"{script} --help exited {code!r}")
    return out.getvalue()


def all_flags(scripts: list[str]) -> dict[str, dict[str, list[str]]]:
    return {script: help_flags(script_help(script)) for script in scripts}


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(f"usage: python {sys.argv[0]} --update")
    SNAPSHOT.write_text(
        json.dumps(all_flags(tracked_scripts()), indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    print(f"wrote {SNAPSHOT}")
