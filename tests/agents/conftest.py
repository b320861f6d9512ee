"""Small AEC environments with known answers, for the agent tests.

They follow the routing env's conventions (observation keys, agent names, the
``final_reward``/``sample_done``/``correct`` infos) so the agents can be tested
without the real network. They live here, as fixtures, so the test modules need no
package of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch
from pettingzoo import AECEnv


@pytest.fixture(autouse=True)
def _single_torch_thread() -> Iterator[None]:
    # the agents' tensors are tiny; on 2 busy cores intra-op threads only add latency
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def router_spaces(
    *, num_actions: int, num_depths: int = 1, num_tasks: int = 1, width: int = 4
) -> tuple[gymnasium.spaces.Dict, gymnasium.spaces.Discrete]:
    """A router's observation and action spaces, as the routing env builds them."""
    obs = gymnasium.spaces.Dict(
        {
            "observation": gymnasium.spaces.Box(-np.inf, np.inf, shape=(width,), dtype=np.float32),
            "task": gymnasium.spaces.Discrete(num_tasks),
            "depth": gymnasium.spaces.Discrete(num_depths),
            "action_mask": gymnasium.spaces.Box(0, 1, shape=(num_actions,), dtype=np.int8),
        }
    )
    return obs, gymnasium.spaces.Discrete(num_actions)


def make_obs(
    *, depth: int = 0, task: int = 0, mask: Sequence[int] = (1, 1), width: int = 4, v: Any = None
) -> dict[str, Any]:
    """One router observation."""
    return {
        "observation": np.zeros(width, dtype=np.float32) if v is None else np.asarray(v, dtype=np.float32),
        "task": task,
        "depth": depth,
        "action_mask": np.asarray(mask, dtype=np.int8),
    }


class FakeRoutingEnv(AECEnv):
    """A routing game without a network: whether a sample is correct depends on its route.

    Samples have a task drawn uniformly. In the per-task configuration agent
    ``router_t`` routes task ``t``; ``"single"`` has one ``router_0``;
    ``"dispatched"`` has ``dispatcher_0``, which picks one of ``num_routers`` routers
    and is rewarded with the sample's final reward. A route is ``num_depths``
    decisions; depth ``i`` allows the first ``layer_sizes[i]`` of ``num_actions``
    actions. Each decision earns ``immediate_reward``; the last one also earns the
    final reward, +1 if ``correct(task, route, router_index, rng)`` else -1.

    Like the routing env's representation, ``"observation"`` reflects the blocks
    applied so far: one-hot of the action taken at each earlier depth, followed by
    two entries of per-sample noise.
    """

    metadata = {"name": "fake_routing_v0", "is_parallelizable": False}

    def __init__(
        self,
        *,
        correct: Callable[[int, tuple[int, ...], int, np.random.Generator], bool],
        num_tasks: int = 2,
        num_actions: int = 3,
        layer_sizes: Sequence[int] = (3, 2),
        router: str = "per_task",
        num_routers: int | None = None,
        samples_per_episode: int = 1,
        immediate_reward: float = 0.0,
    ) -> None:
        super().__init__()
        self.correct_fn = correct
        self.num_tasks = num_tasks
        self.num_actions = num_actions
        self.layer_sizes = tuple(layer_sizes)
        self.num_depths = len(self.layer_sizes)
        self.router_config = router
        self.samples_per_episode = samples_per_episode
        self.immediate_reward = immediate_reward
        self.width = width = self.num_depths * num_actions + 2
        if router == "per_task":
            self.routers = [f"router_{t}" for t in range(num_tasks)]
        elif router == "single":
            self.routers = ["router_0"]
        else:
            self.routers = [f"router_{k}" for k in range(num_routers or num_tasks)]
        self.dispatcher = "dispatcher_0" if router == "dispatched" else None
        self.possible_agents = ([self.dispatcher] if self.dispatcher else []) + self.routers
        obs_space, act_space = router_spaces(
            num_actions=num_actions, num_depths=self.num_depths, num_tasks=num_tasks, width=width
        )
        self._obs_spaces = {a: obs_space for a in self.routers}
        self._act_spaces = {a: act_space for a in self.routers}
        if self.dispatcher:
            k = len(self.routers)
            self._obs_spaces[self.dispatcher], self._act_spaces[self.dispatcher] = router_spaces(
                num_actions=k, num_depths=1, num_tasks=num_tasks, width=width
            )
        self.rng = np.random.default_rng(0)
        self.samples_routed = 0

    def observation_space(self, agent: str) -> gymnasium.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.Space:
        return self._act_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self.infos = {a: {} for a in self.agents}
        self._left = self.samples_per_episode
        self._begin_sample()

    def _begin_sample(self) -> None:
        self._left -= 1
        self.task = int(self.rng.integers(self.num_tasks))
        self.noise = self.rng.normal(size=2).astype(np.float32)
        self.route: list[int] = []
        self.router_index = 0
        if self.dispatcher:
            self.agent_selection = self.dispatcher
        else:
            self.router_index = self.task if self.router_config == "per_task" else 0
            self.agent_selection = self.routers[self.router_index]

    def observe(self, agent: str) -> dict[str, Any]:
        v = np.zeros(self.width, dtype=np.float32)
        for depth, action in enumerate(self.route):
            v[depth * self.num_actions + action] = 1.0
        v[-2:] = self.noise
        if agent == self.dispatcher:
            return make_obs(depth=0, task=self.task, mask=[1] * len(self.routers), width=self.width, v=v)
        depth = min(len(self.route), self.num_depths - 1)
        mask = [1 if a < self.layer_sizes[depth] else 0 for a in range(self.num_actions)]
        return make_obs(depth=depth, task=self.task, mask=mask, width=self.width, v=v)

    def step(self, action: int | None) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        assert action is not None and self.observe(agent)["action_mask"][action], (agent, action)
        self._cumulative_rewards[agent] = 0.0
        for a in self.rewards:
            self.rewards[a] = 0.0
        if agent == self.dispatcher:
            self.router_index = int(action)
            self.infos[agent] = {"sample_done": False}
            self.agent_selection = self.routers[self.router_index]
            self._accumulate_rewards()
            return
        self.route.append(int(action))
        done = len(self.route) == self.num_depths
        final = 0.0
        correct = None
        if done:
            correct = bool(self.correct_fn(self.task, tuple(self.route), self.router_index, self.rng))
            final = 1.0 if correct else -1.0
            self.samples_routed += 1
        self.rewards[agent] = self.immediate_reward + final
        self.infos[agent] = {
            "collaboration_reward": self.immediate_reward,
            "final_reward": final,
            "correct": correct,
            "sample_done": done,
            "task": self.task,
        }
        if done:
            if self.dispatcher:
                self.rewards[self.dispatcher] += final
                self.infos[self.dispatcher] = {"sample_done": True}
            if self._left > 0:
                self._begin_sample()
            else:
                for a in self.agents:
                    self.terminations[a] = True
        self._accumulate_rewards()


class MatrixGameEnv(AECEnv):
    """A two-player matrix game as an AEC episode: ``router_0`` then ``router_1`` pick one
    of two blocks, then each gets ``payoffs[i][a0][a1]`` as its final reward."""

    metadata = {"name": "matrix_game_v0", "is_parallelizable": False}

    def __init__(self, payoffs: np.ndarray) -> None:
        super().__init__()
        self.payoffs = np.asarray(payoffs, dtype=np.float64)  # player x a0 x a1
        self.possible_agents = ["router_0", "router_1"]
        self._obs_space, self._act_space = router_spaces(num_actions=self.payoffs.shape[1])

    def observation_space(self, agent: str) -> gymnasium.Space:
        return self._obs_space

    def action_space(self, agent: str) -> gymnasium.Space:
        return self._act_space

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        self.agents = list(self.possible_agents)
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self.infos = {a: {} for a in self.agents}
        self.actions: list[int] = []
        self.agent_selection = "router_0"

    def observe(self, agent: str) -> dict[str, Any]:
        return make_obs(mask=[1] * self.payoffs.shape[1])

    def step(self, action: int | None) -> None:
        agent = self.agent_selection
        if self.terminations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        self.actions.append(int(action))
        if len(self.actions) == 1:
            self.agent_selection = "router_1"
            return
        a0, a1 = self.actions
        for i, a in enumerate(self.possible_agents):
            self.rewards[a] = float(self.payoffs[i, a0, a1])
            self.infos[a] = {"final_reward": self.rewards[a], "sample_done": True}
            self.terminations[a] = True
        self._accumulate_rewards()


@pytest.fixture
def fake_routing_env() -> type[FakeRoutingEnv]:
    return FakeRoutingEnv


@pytest.fixture
def matrix_game_env() -> type[MatrixGameEnv]:
    return MatrixGameEnv


@pytest.fixture
def spaces() -> Callable[..., tuple[gymnasium.spaces.Dict, gymnasium.spaces.Discrete]]:
    return router_spaces


@pytest.fixture
def obs() -> Callable[..., dict[str, Any]]:
    return make_obs
