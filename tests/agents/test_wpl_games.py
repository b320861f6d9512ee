"""WPL on two-player matrix games with known answers, played through the AEC loop.

* A game with a unique pure Nash equilibrium: both agents converge to it.
* Matching pennies (unique mixed equilibrium at (0.5, 0.5)): plain projected policy
  gradient keeps oscillating out to the boundary of the simplex; Abdallah & Lesser's
  weights (appendix 7.4) damp the oscillation, so their policies stay close to the
  equilibrium, while the paper's weights (Algorithm 3) make the boundary absorbing:
  the policies end pure, away from the equilibrium.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from agents import WPL, MultiAgentRouter, run_episode

# payoffs[player][a0][a1]. Player 0: action 0 strictly dominates (+1 vs -1). Player 1:
# the best response to 0 is 1 and to 1 is 0. Unique pure equilibrium: (0, 1).
DOMINANCE = np.array(
    [
        [[1.0, 1.0], [-1.0, -1.0]],
        [[-1.0, 1.0], [1.0, -1.0]],
    ]
)
MATCHING_PENNIES = np.array(
    [
        [[1.0, -1.0], [-1.0, 1.0]],
        [[-1.0, 1.0], [1.0, -1.0]],
    ]
)


def play(env, router, episodes):
    """Play ``episodes`` rounds; return the probability of action 0 of both agents per round."""
    history = np.empty((episodes, 2))
    for k in range(episodes):
        run_episode(env, router, learn=True)
        history[k] = [router[a].policy[0, 0] for a in ("router_0", "router_1")]
    return history


@pytest.mark.parametrize("baseline", ["depth", "action"])
def test_wpl_converges_to_the_pure_nash_equilibrium(matrix_game_env, baseline):
    env = matrix_game_env(DOMINANCE)
    # the "action" reading needs a slower average to keep a gradient (see agents/wpl.py)
    rate = None if baseline == "depth" else 0.001
    wpl = functools.partial(WPL, lr=0.01, baseline=baseline, return_average_rate=rate)
    router = MultiAgentRouter.from_env(env, router_factory=wpl, seed=0)
    history = play(env, router, 8000)
    p0, p1 = history[-1]
    assert p0 > 0.95  # player 0 plays its dominant action 0
    assert p1 < (0.05 if baseline == "depth" else 0.2)  # player 1 best-responds with 1


def test_abdallah_lesser_wpl_damps_the_oscillation_on_matching_pennies(matrix_game_env):
    env = matrix_game_env(MATCHING_PENNIES)
    distances = {}
    for weighted in (True, False):
        wpl = functools.partial(WPL, lr=0.02, weighted=weighted, weighting="abdallah-lesser")
        router = MultiAgentRouter.from_env(env, router_factory=wpl, seed=1)
        history = play(env, router, 12000)
        tail = history[-4000:]
        distances[weighted] = np.abs(tail - 0.5).max(axis=1).mean()
    # plain projected policy gradient cycles along the boundary (distance ~0.5)
    assert distances[False] > 0.3
    # WPL stays close to the mixed equilibrium
    assert distances[True] < 0.1
    assert distances[True] < distances[False] / 3


def test_the_papers_wpl_locks_into_pure_policies_on_matching_pennies(matrix_game_env):
    """Algorithm 3's weights: a probability near 0 falls at full speed and rises at speed
    pi ~ 0, so both policies end at the boundary (pure), not at the mixed equilibrium."""
    env = matrix_game_env(MATCHING_PENNIES)
    router = MultiAgentRouter.from_env(env, router_factory=functools.partial(WPL, lr=0.02), seed=1)
    history = play(env, router, 12000)
    assert np.abs(history[-1] - 0.5).min() > 0.49  # both agents pure at the end
