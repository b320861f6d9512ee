"""Reward terms of a routing network (paper section 3.1.1), as pure functions."""

from __future__ import annotations

import numpy as np

__all__ = ["collaboration_reward", "final_reward", "final_rewards"]


def collaboration_reward(*, rho: float, selections_A: np.ndarray, action: int) -> float:
    """Immediate reward for choosing ``action``: ``rho`` x its historical selection frequency.

    The paper rewards the router with rho times "the average number of times that block
    was chosen by the router historically" (or its average historical probability; the
    two agree in expectation, and only the choices are visible to the environment).
    The frequency is over all agents' past training decisions at this depth, before the
    current one; it is 0 while nothing has been chosen yet.

    Args:
        rho: Weight of the collaboration reward, in [0, 1].
        selections_A: Past selection counts of each action at this depth.
        action: The action just chosen.
    """
    total = float(selections_A.sum())
    if rho == 0.0 or total == 0.0:
        return 0.0
    return float(rho * selections_A[action] / total)


def final_reward(*, correct: bool | None = None, loss: float | None = None) -> float:
    """Reward at the end of a route: +1 / -1 for a correct / wrong classification,
    or ``-loss`` for regression (pass ``loss`` instead of ``correct``)."""
    if correct is not None:
        return 1.0 if correct else -1.0
    if loss is None:
        raise ValueError("final_reward needs either correct (classification) or loss (regression)")
    return -float(loss)


def final_rewards(*, correct_N: np.ndarray | None = None, loss_N: np.ndarray | None = None) -> np.ndarray:
    """:func:`final_reward` of many routes at once: float64 ``+1``/``-1`` per correct /
    wrong classification, or ``-loss`` per regression loss (pass one of the two)."""
    if correct_N is not None:
        return np.where(np.asarray(correct_N, dtype=bool), 1.0, -1.0)
    if loss_N is None:
        raise ValueError("final_rewards needs either correct_N (classification) or loss_N (regression)")
    return -np.asarray(loss_N, dtype=np.float64)
