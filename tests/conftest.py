"""Shared fixtures: the offline digits-MTL dataset is built once per session."""

from __future__ import annotations

import pytest

from routing_env.datasets import digits_mtl


@pytest.fixture(scope="session")
def digits():
    return digits_mtl()
