"""Running the example and benchmark scripts from tests: importing one as a module, or running
one as a command. Shared by the paper-figure, figure and benchmark tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "examples" / "paper"


def load_script(path: Path, module_name: str) -> ModuleType:
    """Import the script at ``path`` as ``module_name``, once (registered in ``sys.modules``,
    which dataclasses need)."""
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def load_paper(name: str) -> ModuleType:
    """Import ``examples/paper/<name>.py``.

    The shared modules (``paper_runs``, ``seed_stats``) get their own names, as the scripts
    import them; a script gets ``routing_env_paper_<name>``. The scripts import those modules
    from their own folder: a test module that loads them puts ``PAPER`` on ``sys.path`` first.
    """
    module_name = name if name in ("paper_runs", "seed_stats") else f"routing_env_paper_{name}"
    return load_script(PAPER / f"{name}.py", module_name)


def run_benchmark(script: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/<script>`` with ``flags`` from the checkout, on one thread."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, f"benchmarks/{script}", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
