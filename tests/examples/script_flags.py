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

    The option entries start at the ``-h, --help`` line: each is a line that starts with
    ``-`` at that line's indentation (inside tyro's box, if any); help lines are
    indented further. Text before it (the description) is not read.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "-h, --help" in line), None)
    if start is None:
        return {}
    indent = lines[start].index("-h, --help")
    flags: dict[str, list[str]] = {}
    for line in lines[start:]:
        body = line[indent:]
        if not body.startswith("-"):
            continue
        if line[:indent].strip(" " + _BOX):  # something else stands before the entry column
            continue
        head = re.split(r"\s{2,}", body.rstrip(" " + _BOX), maxsplit=1)[0]  # the option, before its help
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


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (``x: int = 1`` then ``\"\"\"doc\"\"\"``),
    read from its source (and its dataclass bases'), whitespace folded."""
    import ast
    import dataclasses
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0]
        assert isinstance(body, ast.ClassDef)
        for node, after in zip(body.body, body.body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def args_help(cls: type) -> str:
    """What ``parse_args(cls, ["--help"])`` prints, box drawing removed and whitespace folded
    (a help text wrapped over several lines reads as one)."""
    from routing_env.experiments import parse_args

    out = io.StringIO()
    saved_columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "400"
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            parse_args(cls, ["--help"])
    finally:
        if saved_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved_columns
    text = out.getvalue()
    return " ".join("".join(" " if c in _BOX else c for c in text).split())


def undocumented_fields(cls: type) -> list[str]:
    """The fields of ``cls`` whose docstring is missing or not shown by ``--help``."""
    import dataclasses

    docs = field_docs(cls)
    shown = args_help(cls)
    return [f.name for f in dataclasses.fields(cls) if not docs.get(f.name) or docs[f.name] not in shown]
