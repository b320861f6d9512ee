"""routing-env: routing networks (Rosenbaum, Klinger & Riemer, ICLR 2018) as a PettingZoo AEC env.

Importing the package registers the environment with PettingZoo's registry::

    import pettingzoo, routing_env
    env = pettingzoo.make("aec", "routing_env/Routing-v0", router="per_task")
"""

from __future__ import annotations

from routing_env.batched_env import BatchedRoutingEnv, BatchObservation, batched_env
from routing_env.engine import RoutingEngine, StepOutcome, TrainingConfig
from routing_env.env import MAX_SEED, RoutingEnv, env, raw_env
from routing_env.network import PASS, RoutingNetwork, SimpleConvNet, build_default_network, fc_block
from routing_env.parallel_env import RoutingParallelEnv, parallel_env

__all__ = [
    "MAX_SEED",
    "PASS",
    "BatchObservation",
    "BatchedRoutingEnv",
    "RoutingEngine",
    "RoutingEnv",
    "RoutingParallelEnv",
    "RoutingNetwork",
    "SimpleConvNet",
    "StepOutcome",
    "TrainingConfig",
    "batched_env",
    "build_default_network",
    "env",
    "fc_block",
    "parallel_env",
    "raw_env",
]

__version__ = "0.1.0"

ENV_ID = "routing_env/Routing-v0"


def _register() -> None:
    """Register the env with PettingZoo's registry, which PettingZoo has from 1.27 on (before
    it, ``pettingzoo.make`` does not exist and the env is made by ``routing_env.env()``)."""
    import pettingzoo

    registry = getattr(pettingzoo, "aec_registry", None)
    if registry is not None and ENV_ID not in registry:
        pettingzoo.register("aec", ENV_ID, entry_point="routing_env.env:env")


_register()
