"""Atomic file writes shared by the run folder, metrics and checkpoint modules."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class DamagedFileError(ValueError):
    """A run's file (checkpoint, metrics) is damaged: refused, naming the file and the fix."""


def temp_file(path: Path) -> tuple[int, str]:
    """A temp file next to ``path`` (same file system, so ``os.replace`` is atomic), with the
    permissions a plain ``open`` would give (``mkstemp`` makes it private)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
