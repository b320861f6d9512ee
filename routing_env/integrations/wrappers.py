"""PettingZoo wrappers that shape the routing env for third-party RL libraries.

Legend of shape suffixes: ``D`` width of the representation v, ``n`` decisions
(depths), ``T`` tasks, ``A`` actions.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from pettingzoo import AECEnv
from pettingzoo.utils.wrappers import BaseWrapper

from routing_env.extras import missing_extra  # its former home; the integrations import it from here

__all__ = ["FlatObservation", "InfoNoneAsSentinel", "missing_extra"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_ROUTING_KEYS = ("observation", "task", "depth", "action_mask")


class FlatObservation(BaseWrapper[str, dict[str, np.ndarray], int]):
    """Flattens each routing observation into one float vector plus the action mask.

    The routing env observes ``{"observation": v, "task": t, "depth": i,
    "action_mask": m}``. Tianshou's ``PettingZooEnv`` passes only
    ``obs["observation"]`` (and the mask) to a policy, so ``task`` and ``depth`` would
    be lost; RLlib's action-masking modules read a two-key dict. This wrapper observes

    ``{observation_key: concat(v, one_hot(i, n), one_hot(t, T)), "action_mask": m}``

    (``v`` left out with ``representation=False``: a per-task router then sees its
    depth only, the state of the paper's tabular routers). Everything else (agents,
    rewards, infos, ``reset``/``step``) passes through unchanged.

    Args:
        env: A routing env (``routing_env.env(...)``, wrapped or not), or any AEC env
            whose observations are dicts with the keys above and whose observation
            spaces are ``Dict`` spaces with ``Box`` ``observation``/``action_mask`` and
            ``Discrete`` ``task``/``depth``.
        observation_key: Key of the flat vector (RLlib's masking module reads
            ``"observations"``).
        representation: Include the representation ``v``.
        mask_dtype: dtype of the action mask (``np.int8`` as in the env; some
            libraries want floats).

    Raises:
        TypeError: When ``env`` is not an AEC env or an agent's observation space is
            not a routing observation space.
        ValueError: When ``observation_key`` is ``"action_mask"`` or empty.
    """

    def __init__(
        self,
        env: AECEnv,
        *,
        observation_key: str = "observation",
        representation: bool = True,
        mask_dtype: Any = np.int8,
    ) -> None:
        if not isinstance(env, AECEnv):
            raise TypeError(f"FlatObservation wraps a PettingZoo AECEnv, got {type(env).__name__}")
        if not isinstance(observation_key, str) or not observation_key or observation_key == "action_mask":
            raise ValueError(
                f"observation_key must be a non-empty str other than 'action_mask', got {observation_key!r}"
            )
        super().__init__(env)
        self.observation_key = observation_key
        self.representation = bool(representation)
        self.mask_dtype = np.dtype(mask_dtype)
        # one flat space per distinct original space, so that agents that shared a space
        # object still do (Tianshou requires identical spaces for every agent)
        flat_by_id: dict[int, gymnasium.spaces.Dict] = {}
        self.observation_spaces: dict[str, gymnasium.spaces.Dict] = {}
        self._layout: dict[str, tuple[int, int, int]] = {}
        for agent in env.possible_agents:
            space = env.observation_space(agent)
            width, depths, tasks, actions = self._check_space(agent, space)
            if id(space) not in flat_by_id:
                flat_by_id[id(space)] = self._flat_space(width, depths, tasks, actions)
            self.observation_spaces[agent] = flat_by_id[id(space)]
            self._layout[agent] = (width, depths, tasks)

    @staticmethod
    def _check_space(agent: str, space: gymnasium.Space) -> tuple[int, int, int, int]:
        spaces = getattr(space, "spaces", None)
        if (
            not isinstance(space, gymnasium.spaces.Dict)
            or spaces is None
            or set(spaces) != set(_ROUTING_KEYS)
        ):
            raise TypeError(
                f"{agent}'s observation space must be a Dict with keys {list(_ROUTING_KEYS)} "
                f"(a routing env's), got {space}"
            )
        v, mask, task, depth = spaces["observation"], spaces["action_mask"], spaces["task"], spaces["depth"]
        if not (
            isinstance(v, gymnasium.spaces.Box)
            and len(v.shape) == 1
            and isinstance(mask, gymnasium.spaces.Box)
            and len(mask.shape) == 1
            and isinstance(task, gymnasium.spaces.Discrete)
            and isinstance(depth, gymnasium.spaces.Discrete)
        ):
            raise TypeError(
                f"{agent}'s observation space must hold a 1-d Box 'observation' and 'action_mask' and "
                f"Discrete 'task' and 'depth', got {space}"
            )
        return v.shape[0], int(depth.n), int(task.n), mask.shape[0]

    def _flat_space(self, width: int, depths: int, tasks: int, actions: int) -> gymnasium.spaces.Dict:
        low = np.concatenate(
            [np.full(width if self.representation else 0, -_FLOAT32_MAX), np.zeros(depths + tasks)]
        ).astype(np.float32)
        high = np.concatenate(
            [np.full(width if self.representation else 0, _FLOAT32_MAX), np.ones(depths + tasks)]
        ).astype(np.float32)
        return gymnasium.spaces.Dict(
            {
                self.observation_key: gymnasium.spaces.Box(low, high, dtype=np.float32),
                "action_mask": gymnasium.spaces.Box(0, 1, shape=(actions,), dtype=self.mask_dtype),
            }
        )

    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.observation_spaces[agent]

    def observe(self, agent: str) -> dict[str, np.ndarray] | None:
        obs = self.env.observe(agent)
        if obs is None:
            return None
        width, depths, tasks = self._layout[agent]
        flat = np.zeros((width if self.representation else 0) + depths + tasks, dtype=np.float32)
        offset = 0
        if self.representation:
            flat[:width] = obs["observation"]
            offset = width
        flat[offset + int(obs["depth"])] = 1.0
        flat[offset + depths + int(obs["task"])] = 1.0
        return {
            self.observation_key: flat,
            "action_mask": np.asarray(obs["action_mask"], dtype=self.mask_dtype),
        }

    def __str__(self) -> str:
        return f"FlatObservation<{self.env!s}>"


class InfoNoneAsSentinel(BaseWrapper[str, Any, int]):
    """Replaces ``None`` values in the agents' infos with a sentinel.

    The routing env reports ``info["correct"] = None`` on decisions that do not end a
    sample (no prediction was judged yet). Tianshou stores infos in its replay buffer
    and refuses a buffer holding a null value (``MalformedBufferError: Encountered NaNs
    in buffer``); with this wrapper ``correct`` reads 1 (correct), 0 (wrong) or
    ``sentinel`` (not judged). Observations, rewards and actions pass through unchanged.

    Args:
        env: Any AEC env.
        sentinel: The value that replaces ``None`` (default -1).
    """

    def __init__(self, env: AECEnv, *, sentinel: Any = -1) -> None:
        if not isinstance(env, AECEnv):
            raise TypeError(f"InfoNoneAsSentinel wraps a PettingZoo AECEnv, got {type(env).__name__}")
        if sentinel is None:
            raise ValueError("sentinel must not be None (None is what it replaces)")
        super().__init__(env)
        self.sentinel = sentinel

    def _clean(self, info: dict[str, Any]) -> dict[str, Any]:
        return {k: self.sentinel if v is None else v for k, v in info.items()}

    @property
    def infos(self) -> dict[str, dict[str, Any]]:  # type: ignore[override]
        return {agent: self._clean(info) for agent, info in self.env.infos.items()}

    def last(self, observe: bool = True) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.last(observe)
        return obs, reward, terminated, truncated, self._clean(info)

    def __str__(self) -> str:
        return f"InfoNoneAsSentinel<{self.env!s}>"
