"""Drivers used by the env tests: run episodes through the public AEC API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def run_episodes(
    env,
    episodes: int,
    choose: Callable[[str, dict[str, Any]], int],
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
):
    """Route ``episodes`` episodes (the first reset takes ``seed`` and ``options``);
    return [(agent, reward, terminated, info, action, obs)] per turn."""
    log = []
    for episode in range(episodes):
        if episode == 0:
            env.reset(seed=seed, options=options)
        else:
            env.reset()
        for agent in env.agent_iter():
            obs, reward, terminated, truncated, info = env.last()
            action = None if (terminated or truncated) else choose(agent, obs)
            log.append((agent, reward, terminated, info, action, obs))
            env.step(action)
    return log


def random_choice(seed: int) -> Callable[[str, dict[str, Any]], int]:
    rng = np.random.default_rng(seed)
    return lambda agent, obs: int(rng.choice(np.flatnonzero(obs["action_mask"])))


def fixed_routes(num_tasks: int, num_decisions: int, num_actions: int, seed: int) -> Callable:
    """A random *pure* policy: one fixed route per task, drawn once."""
    rng = np.random.default_rng(seed)
    routes = rng.integers(num_actions, size=(num_tasks, num_decisions))
    return lambda agent, obs: int(routes[obs["task"], obs["depth"]])
