"""Shared fixtures: the offline digits-MTL dataset is built once per session."""

from __future__ import annotations

import pytest
import torch

from routing_env.datasets import digits_mtl

# The suite is dominated by many small ops; on a 2-core machine shared with other work,
# intra-op threads mostly wait on each other (an order of magnitude slower at times).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    return digits_mtl()
