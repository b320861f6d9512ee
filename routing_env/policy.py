"""What the env shows an acting policy, and what it asks of one, in one place.

:func:`router_observation` builds the observation dict of one decision (the env's, the
game analysis', the recorder's); :class:`ActionProbabilities` is the protocol of a
policy that gives the probability of each action for such an observation, which the
recorder (:mod:`routing_env.recording`) and the game analysis (:mod:`routing_env.game`)
read. Neither needs PettingZoo.

Shape legend: ``D`` observation width, ``A`` actions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["ActionProbabilities", "router_observation"]


@runtime_checkable
class ActionProbabilities(Protocol):
    """Anything that gives the probability of each action for an observation.

    Every :class:`agents.RouterAgent` qualifies (``action_probs(obs)`` returns a float
    array of length ``A`` summing to 1, 0 on masked actions).
    """

    def action_probs(self, obs: Mapping[str, Any]) -> np.ndarray: ...


def router_observation(
    v: np.ndarray, *, width: int, task: int, depth: int, action_mask_A: np.ndarray
) -> dict[str, Any]:
    """The observation of one decision, as :class:`~routing_env.RoutingEnv` shows it.

    Args:
        v: The representation of the sample at this depth (any shape; flattened).
        width: The observation width ``D`` (the widest representation of the network):
            ``v`` is zero-padded to it.
        task: The sample's task id.
        depth: The decision's depth (0 for the dispatcher).
        action_mask_A: 1 where an action is valid (copied).

    Returns:
        ``{"observation": float32 (D,), "task": int, "depth": int, "action_mask": int8 (A,)}``.
    """
    flat = np.asarray(v).reshape(-1)
    observation_D = np.zeros(width, dtype=np.float32)
    observation_D[: flat.size] = flat
    return {"observation": observation_D, "task": task, "depth": depth, "action_mask": action_mask_A.copy()}
