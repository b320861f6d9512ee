"""Make the paths in result files portable before they are committed: no machine's absolute paths.

A run's ``config.json``, a figure's JSON and the docs quote the folders a run used: the
data root, the runs folder, the output folder. Absolute paths of the machine that made
them mean nothing elsewhere, so before results are committed this rewrites, in every
``.json``, ``.md`` and ``.csv`` file under the given folders (in place, only files that
change):

- a path inside the repository -> relative to the repository root;
- a path inside the data root (``--data-root``, default ``$ROUTING_ENV_DATA``) ->
  ``$ROUTING_ENV_DATA/...``;
- any other absolute path -> ``RUNS/<its last component>`` (``RUNS`` for a folder named
  ``runs``): a runs or output folder of the machine that made it (figure scripts read only
  the last component of a run folder).

    python examples/paper/portable_paths.py docs/results --data-root ~/data
    python examples/paper/portable_paths.py docs --check      # exit 1 if a file would change
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from routing_env.experiments import parse_args

ROOT = Path(__file__).resolve().parents[2]
#: An absolute POSIX path in text: a slash after a delimiter, then path characters.
ABSOLUTE = re.compile(r"(?<![\w.$~/-])(/(?:[\w.+@-]+/?)+)")
SUFFIXES = (".json", ".md", ".csv")


@dataclass
class Args:
    """Rewrite absolute paths in result files (JSON, Markdown, CSV) as portable ones."""

    folders: tuple[str, ...] = ("docs",)
    """folders (or files) to rewrite, recursively"""
    data_root: str | None = None
    """the data root the results used (default: $ROUTING_ENV_DATA)"""
    check: bool = False
    """change nothing; list the files that would change and exit with status 1 if any"""


def portable(text: str, *, data_root: str | None) -> str:
    """``text`` with every absolute path made portable (see the module docstring)."""
    data = None if not data_root else os.path.realpath(data_root).rstrip("/")
    repo = str(ROOT)

    def one(match: re.Match[str]) -> str:
        path = match.group(1)
        trailing = "/" if path.endswith("/") and len(path) > 1 else ""
        bare = path.rstrip("/") or "/"
        resolved = os.path.realpath(bare)
        for anchor, name in ((data, "$ROUTING_ENV_DATA"), (repo, None)):
            if anchor and (resolved == anchor or resolved.startswith(anchor + "/")):
                rest = os.path.relpath(resolved, anchor)
                if name is None:
                    return ("." if rest == "." else rest) + trailing
                return name + ("" if rest == "." else "/" + rest) + trailing
        if bare in ("/", "/dev/null") or not bare.startswith(("/work", "/tmp", "/home", "/root", "/mnt", "/data")):
            return path  # not a machine's folder (a URL path, a regex)
        name = Path(bare).name
        return ("RUNS" if name == "runs" else f"RUNS/{name}") + trailing

    return ABSOLUTE.sub(one, text)


def files(folders: tuple[str, ...]) -> list[Path]:
    out = []
    for folder in folders:
        path = Path(folder)
        out += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES)
    return out


def main(args: Args) -> list[Path]:
    data_root = args.data_root or os.environ.get("ROUTING_ENV_DATA")
    changed = []
    for path in files(args.folders):
        text = path.read_text(encoding="utf-8")
        new = portable(text, data_root=data_root)
        if new != text:
            changed.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "would change" if args.check else "rewrote"
    print(f"{verb} {len(changed)} file(s)" + "".join(f"\n  {p}" for p in changed), file=sys.stderr)
    return changed


if __name__ == "__main__":
    arguments = parse_args(Args)
    sys.exit(1 if main(arguments) and arguments.check else 0)
