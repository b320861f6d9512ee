"""Loading ``examples/paper/`` scripts as modules, shared by the paper-figure tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PAPER = Path(__file__).resolve().parents[2] / "examples" / "paper"


def load_paper(name: str) -> ModuleType:
    """Import ``examples/paper/<name>.py`` (registered in ``sys.modules``, which dataclasses need).

    The shared modules (``paper_runs``, ``seed_stats``) get their own names, as the scripts
    import them; a script gets ``routing_env_paper_<name>``. The scripts import those modules
    from their own folder: a test module that loads them puts ``PAPER`` on ``sys.path`` first.
    """
    module_name = name if name in ("paper_runs", "seed_stats") else f"routing_env_paper_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, PAPER / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]
