"""The routing game under PettingZoo's parallel API: every agent observes every step.

:class:`RoutingParallelEnv` plays the AEC env's game (:class:`~routing_env.env.RoutingEnv`:
the same engine, rewards and block training) one decision per ``step``, as a
:class:`pettingzoo.ParallelEnv`: ``step(actions)`` takes a dict with an action for every
live agent and returns every agent's observation, reward, termination, truncation and info.
Only one agent decides at a time (the router of the sample being routed, or the
dispatcher); every other agent is *idle* on that step, and says so:

- its observation has ``"idle": 1`` (the acting agent's ``0``), a zero representation, and
  an action mask that allows only action 0, whose value is ignored;
- its reward is 0 (the acting agent gets the collaboration reward of its decision, and on a
  sample's last decision the +1/-1 final reward; the dispatcher gets the final reward of
  the sample it dispatched, on that step);
- ``info["action_mask"]`` repeats the observation's mask (AgileRL reads it there) and
  ``info["idle"]`` the flag.

An episode routes ``samples_per_episode`` samples; when it ends every agent terminates on
the same step. With ``flat=True`` an observation is one ``float32`` Box instead of a dict:
the representation, one-hot task, one-hot depth, the action mask and the idle flag, in that
order (what libraries that take one vector per agent need).

Masked actions: an acting agent's action must be allowed by its mask (as in the AEC env),
or the step raises. ``invalid_action="first_valid"`` routes with the lowest allowed action
instead and sets ``info["action_replaced"]`` to 1 (for tools that sample actions without
the mask, such as PettingZoo's ``parallel_seed_test``).

    env = routing_env.parallel_env(router="per_task")
    observations, infos = env.reset(seed=0)
    while env.agents:
        actions = {a: int(np.flatnonzero(observations[a]["action_mask"])[0]) for a in env.agents}
        observations, rewards, terminations, truncations, infos = env.step(actions)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

import gymnasium
import numpy as np
from gymnasium.spaces import Box, Discrete
from pettingzoo import ParallelEnv

from routing_env.env import RoutingEnv

__all__ = ["RoutingParallelEnv", "parallel_env"]


class RoutingParallelEnv(ParallelEnv[str, Any, int]):
    """The routing game as a PettingZoo ``ParallelEnv`` (see the module docstring).

    Args:
        flat: Observations as one ``float32`` Box per agent instead of a dict.
        invalid_action: ``"raise"`` (default): an acting agent's masked action raises, as
            in the AEC env. ``"first_valid"``: it is replaced by the lowest allowed action
            (``info["action_replaced"] = 1``).
        **kwargs: The arguments of :class:`~routing_env.env.RoutingEnv` (``dataset``,
            ``router``, ``routing``, ``collaboration_reward``, ``samples_per_episode`` ...).
    """

    metadata = {"name": "routing_parallel_v0", "render_modes": ["ansi", "human"], "is_parallelizable": True}

    def __init__(
        self, *, flat: bool = False, invalid_action: Literal["raise", "first_valid"] = "raise", **kwargs: Any
    ) -> None:
        if invalid_action not in ("raise", "first_valid"):
            raise ValueError(f"invalid_action must be 'raise' or 'first_valid', got {invalid_action!r}")
        self.aec_env = RoutingEnv(**kwargs)
        self.flat = bool(flat)
        self.invalid_action = invalid_action
        self.render_mode = self.aec_env.render_mode
        self.possible_agents = list(self.aec_env.possible_agents)
        self.agents: list[str] = []
        self._observation_spaces = {a: self._make_observation_space(a) for a in self.possible_agents}
        self.state_space = self.aec_env.state_space

    # -------------------------------------------------------------- spaces
    def _make_observation_space(self, agent: str) -> gymnasium.spaces.Space:
        inner = self._inner_space(agent)
        if not self.flat:
            return gymnasium.spaces.Dict({**inner.spaces, "idle": gymnasium.spaces.Discrete(2)})
        return gymnasium.spaces.Box(-np.inf, np.inf, (self._flat_width(agent),), np.float32)

    def _inner_space(self, agent: str) -> gymnasium.spaces.Dict:
        inner = self.aec_env.observation_space(agent)
        assert isinstance(inner, gymnasium.spaces.Dict)
        return inner

    def _sizes(self, agent: str) -> tuple[int, int, int, int]:
        """``(D, T, n, A)``: the representation's width, tasks, depths and actions of ``agent``."""
        inner = self._inner_space(agent)
        width, mask = cast(Box, inner["observation"]), cast(Box, inner["action_mask"])
        tasks, depths = cast(Discrete, inner["task"]), cast(Discrete, inner["depth"])
        return int(width.shape[0]), int(tasks.n), int(depths.n), int(mask.shape[0])

    def _flat_width(self, agent: str) -> int:
        return sum(self._sizes(agent)) + 1

    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        return self._observation_spaces[agent]  # the same object every call, as PettingZoo asks

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.aec_env.action_space(agent)

    # -------------------------------------------------------------- the game
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        self.aec_env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return self._observations(), self._infos(dict.fromkeys(self.agents, 0))

    def step(
        self, actions: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, float], dict[str, bool], dict[str, bool], dict[str, dict[str, Any]]]:
        if not self.agents:
            raise RuntimeError("the episode is over (every agent has terminated); call reset()")
        acting = self.aec_env.agent_selection
        if acting not in actions:
            raise ValueError(f"step needs an action for {acting}, the agent deciding now; got {sorted(actions)}")
        action, replaced = self._acting_action(acting, actions[acting])
        self.aec_env.step(action)
        rewards = {a: float(self.aec_env.rewards.get(a, 0.0)) for a in self.agents}
        over = self.aec_env._episode_over
        terminations = dict.fromkeys(self.agents, over)
        truncations = dict.fromkeys(self.agents, False)
        observations = self._observations()
        infos = self._infos({a: int(a == acting and replaced) for a in self.agents})
        if over:
            while self.aec_env.agents:  # the AEC env's terminated turns: nothing left to decide
                self.aec_env.step(None)
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def _acting_action(self, agent: str, action: Any) -> tuple[int, bool]:
        """The acting agent's action, checked, or replaced by the first allowed one."""
        mask = np.asarray(self.aec_env.observe(agent)["action_mask"], dtype=bool)
        if self.invalid_action == "first_valid":
            valid = isinstance(action, (int, np.integer)) and not isinstance(action, (bool, np.bool_))
            if not (valid and 0 <= int(action) < len(mask) and mask[int(action)]):
                return int(np.flatnonzero(mask)[0]), True
        return action, False

    # -------------------------------------------------------------- what agents see
    def _observations(self) -> dict[str, Any]:
        acting = self.aec_env.agent_selection if self.aec_env.agents else None
        out = {}
        for agent in self.agents:
            if agent == acting and not self.aec_env.terminations.get(agent, True):
                obs = dict(self.aec_env.observe(agent))
                obs["idle"] = 0
            else:
                obs = self._idle_observation(agent)
            out[agent] = self._flatten(agent, obs) if self.flat else obs
        return out

    def _idle_observation(self, agent: str) -> dict[str, Any]:
        width, _, _, actions = self._sizes(agent)
        mask = np.zeros(actions, dtype=np.int8)
        mask[0] = 1  # one allowed action, which the env ignores
        return {
            "observation": np.zeros(width, dtype=np.float32),
            "task": 0,
            "depth": 0,
            "action_mask": mask,
            "idle": 1,
        }

    def _flatten(self, agent: str, obs: Mapping[str, Any]) -> np.ndarray:
        _, tasks, depths, _ = self._sizes(agent)
        task = np.zeros(tasks, dtype=np.float32)
        depth = np.zeros(depths, dtype=np.float32)
        if not obs["idle"]:
            task[int(obs["task"])] = 1.0
            depth[int(obs["depth"])] = 1.0
        return np.concatenate(
            [
                np.asarray(obs["observation"], dtype=np.float32),
                task,
                depth,
                np.asarray(obs["action_mask"], dtype=np.float32),
                np.array([float(obs["idle"])], dtype=np.float32),
            ]
        )

    def _infos(self, replaced: Mapping[str, int]) -> dict[str, dict[str, Any]]:
        acting = self.aec_env.agent_selection if self.aec_env.agents else None
        infos = {}
        for agent in self.agents:
            idle = not (agent == acting and not self.aec_env.terminations.get(agent, True))
            mask = (
                self._idle_observation(agent)["action_mask"]
                if idle
                else np.asarray(self.aec_env.observe(agent)["action_mask"])
            )
            infos[agent] = {
                **self.aec_env.infos.get(agent, {}),
                "action_mask": mask,
                "idle": int(idle),
                "action_replaced": int(replaced.get(agent, 0)),
            }
        return infos

    # -------------------------------------------------------------- the rest of the API
    def state(self) -> np.ndarray:
        return self.aec_env.state()

    def render(self) -> str | None:
        return self.aec_env.render()

    def close(self) -> None:
        self.aec_env.close()

    @property
    def unwrapped(self) -> RoutingParallelEnv:
        return self


def parallel_env(**kwargs: Any) -> RoutingParallelEnv:
    """The routing game as a PettingZoo ``ParallelEnv`` (:class:`RoutingParallelEnv`)."""
    return RoutingParallelEnv(**kwargs)
