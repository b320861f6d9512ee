"""Every script's ``--help`` offers the flags (and choices) of ``flags_snapshot.json``.

The snapshot was taken before the command lines moved to tyro (issue 16); a script
whose flags change on purpose updates it with ``python tests/examples/script_flags.py --update``.
"""

from __future__ import annotations

import json

import pytest

from .script_flags import SNAPSHOT, help_flags, script_help

EXPECTED: dict[str, dict[str, list[str]]] = json.loads(SNAPSHOT.read_text(encoding="utf-8"))


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_flags_match_the_snapshot(script: str) -> None:
    assert help_flags(script_help(script)) == EXPECTED[script]


def test_help_flags_reads_argparse_and_tyro() -> None:
    argparse_help = """usage: x.py [-h] [--mode {a,b,none}]

Some text.
- a bullet with --not-a-flag

options:
  -h, --help            show this help message and exit
  --mode {a,b,none}     the mode
  --fast, --no-fast     go fast
                        --also-not-a-flag in a wrapped help line
"""
    tyro_help = """usage: x.py [-h] [OPTIONS]

╭─ options ──────────────────────────────╮
│ -h, --help         show this help      │
│ --mode {None,a,b}  the mode            │
│ --fast, --no-fast  go fast             │
│                    --also-not-a-flag   │
╰────────────────────────────────────────╯
"""
    expected = {"-h": [], "--help": [], "--mode": ["a", "b"], "--fast": [], "--no-fast": []}
    assert help_flags(argparse_help) == expected
    assert help_flags(tyro_help) == expected
