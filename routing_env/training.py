"""Deprecated: the experiment tooling moved to :mod:`routing_env.experiments`.

``routing_env.training`` re-exports the names it had; import them from
:mod:`routing_env.experiments` (command line, run folders, checkpoints, metrics,
progress) and :func:`routing_env.datasets.subsample` instead. This module goes away in
a later release.
"""

from __future__ import annotations

import warnings

from routing_env.experiments import *  # noqa: F403 - the names this module had
from routing_env.experiments import __all__ as _moved

warnings.warn(
    "routing_env.training moved to routing_env.experiments (and subsample to routing_env.datasets); "
    "import from there",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = list(_moved)
