"""Thin adapters between the routing env and third-party RL libraries.

Nothing here imports an RL library at import time; each library-specific module
imports its library where used and raises an :class:`ImportError` naming the extra
to install when it is missing:

- :mod:`routing_env.integrations.wrappers` (PettingZoo only, no extra):
  :class:`FlatObservation` turns the routing observation into the flat
  ``{"observation": Box, "action_mask": Box}`` dict that Tianshou's and RLlib's
  PettingZoo adapters and their action-masking models read.
- :class:`InfoNoneAsSentinel` (no extra) replaces ``None`` in infos, which
  Tianshou's replay buffer rejects (the routing env itself reports numbers only).
- :mod:`routing_env.integrations.tianshou` (extra ``tianshou``): the env as a
  ``tianshou.env.PettingZooEnv``, a masked actor for Tianshou's policy-gradient
  policies, a fix of the per-agent training flag, and a greedy evaluation of a
  Tianshou policy on the test split.
- :mod:`routing_env.integrations.rllib` (extra ``rllib``): the env as RLlib's
  ``PettingZooEnv`` with every router known from the start, and a greedy evaluation of
  RLlib modules on the test split.
- :mod:`routing_env.integrations.torchrl` (extra ``torchrl``): TorchRL's own
  ``PettingZooWrapper`` takes the env as it is; the module groups the routers, and
  evaluates a TorchRL policy greedily on the test split.
- :mod:`routing_env.integrations.torchrl_batched` (extra ``torchrl``): the batched game as
  a TorchRL ``EnvBase`` (one step routes one depth of a whole minibatch).
- :mod:`routing_env.integrations.benchmarl` (extra ``benchmarl``, a venv of its own): a
  BenchMARL task per configuration, an experiment set up for one routing network, and a
  greedy evaluation of its policy.

See ``docs/integrations.md`` for what each library needs of the env and why.
"""

from __future__ import annotations

from routing_env.integrations.wrappers import FlatObservation, InfoNoneAsSentinel, missing_extra

__all__ = ["FlatObservation", "InfoNoneAsSentinel", "missing_extra"]
