"""Load the example scripts as modules so their ``main(Args(...))`` can run on tiny budgets."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from routing_env.experiments import global_rng_state, set_global_rng_state

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (registered in ``sys.modules``, which dataclasses and
    ``inspect.getsource`` need)."""
    module_name = f"routing_env_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def train_wpl() -> ModuleType:
    return load_example("train_wpl")


@pytest.fixture(scope="session")
def train_baseline() -> ModuleType:
    return load_example("train_baseline")


@pytest.fixture(autouse=True)
def _restore_global_state() -> Iterator[None]:
    # main() sets torch's thread count and seeds the global generators, as a script does
    threads, rng = torch.get_num_threads(), global_rng_state()
    yield
    torch.set_num_threads(threads)
    set_global_rng_state(rng)
