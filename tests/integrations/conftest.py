"""Fixtures of the third-party integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from routing_env.experiments import global_rng_state, set_global_rng_state


@pytest.fixture(autouse=True)
def _restore_global_state() -> Iterator[None]:
    # the examples' main() sets torch's thread count and seeds the global generators, as
    # scripts do; one thread also keeps the many small ops fast on 2 busy cores
    threads, rng = torch.get_num_threads(), global_rng_state()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    set_global_rng_state(rng)
