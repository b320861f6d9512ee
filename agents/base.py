"""The interface shared by every router agent: acting, learning from a trace, state.

An agent sees only what a third-party algorithm sees through PettingZoo's AEC API:
the observation dict (``"observation"``, ``"task"``, ``"depth"``, ``"action_mask"``),
the rewards handed out by ``last()``, and the infos. As in Tianshou, acting is kept
apart from learning: :meth:`RouterAgent.act` and :meth:`RouterAgent.action_probs`
never change the policy or values (a tabular agent only records which actions a
depth allows the first time it sees them), and :meth:`RouterAgent.learn` consumes one
finished :class:`Trace`, the paper's ``T = (S, A, R, r_final)`` of Algorithm 2.
Driving the AEC loop and collecting traces is the job of :mod:`agents.multi`.

Returns follow Algorithm 3 of the paper, ``R_i = r_final + sum_{j>=i} gamma^(j-i) r_j``:
the final reward is added *undiscounted* to the return of every decision of the trace
while the immediate (collaboration) rewards are discounted. See
:func:`compute_returns`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium
import numpy as np

__all__ = [
    "Observation",
    "RouterAgent",
    "RouterSpaces",
    "SeedLike",
    "Trace",
    "TraceBatch",
    "observation_row",
    "select_rows",
    "as_generator",
    "check_probability",
    "check_rate",
    "check_state_array",
    "check_update",
    "compute_returns",
    "masked_argmax",
    "sample_from",
]

Observation = Mapping[str, Any]
"""One router observation: ``{"observation", "task", "depth", "action_mask"}``."""

SeedLike = int | np.random.Generator | None
"""An agent's source of randomness: an int seed, a Generator (used as is) or None."""

_OBS_KEYS = ("observation", "task", "depth", "action_mask")


# ----------------------------------------------------------------- validation
#: How a neural agent's :meth:`RouterAgent.learn_batch` trains: one optimizer step per
#: trace, in row order, or one per minibatch on the mean of the traces' losses.
UPDATES: tuple[str, ...] = ("trace", "minibatch")


def check_update(update: str) -> Literal["trace", "minibatch"]:
    """Return ``update`` if it is ``"trace"`` or ``"minibatch"``, else raise ValueError."""
    if update == "trace":
        return "trace"
    if update == "minibatch":
        return "minibatch"
    raise ValueError(f"update must be one of {UPDATES}, got {update!r}")


def check_rate(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is a finite learning rate, else raise.

    Raises:
        TypeError: When ``value`` is not a real number.
        ValueError: When it is negative, not finite, or zero while ``allow_zero`` is False.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def check_probability(name: str, value: float) -> float:
    """Return ``value`` as a float if it lies in ``[0, 1]`` (a discount, an epsilon), else raise.

    Raises:
        TypeError: When ``value`` is not a real number.
        ValueError: When it lies outside ``[0, 1]``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def as_generator(seed: SeedLike) -> np.random.Generator:
    """Turn ``seed`` into a :class:`numpy.random.Generator` (a Generator is used as is).

    Raises:
        TypeError: When ``seed`` is neither an int, a Generator nor None.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")


# ----------------------------------------------------------------- spaces
def _discrete_size(space: gymnasium.Space, key: str) -> int | None:
    if isinstance(space, gymnasium.spaces.Discrete):
        return int(space.start) + int(space.n)
    if isinstance(space, gymnasium.spaces.Box) and space.shape in ((), (1,)):
        high = float(np.asarray(space.high).reshape(-1)[0])
        if math.isfinite(high):
            return int(high) + 1
    return None


@dataclass(frozen=True)
class RouterSpaces:
    """The sizes an agent reads off a router's observation and action spaces.

    Attributes:
        num_actions: ``A``, the size of the ``Discrete`` action space.
        num_depths: ``n``, how many decisions (depths) a trace can hold.
        num_tasks: ``T``, how many task ids the ``"task"`` entry can take.
        observation_dim: ``D``, the width of the (zero-padded) representation ``v``.
    """

    num_actions: int
    num_depths: int
    num_tasks: int
    observation_dim: int

    @classmethod
    def from_spaces(
        cls,
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        *,
        num_depths: int | None = None,
    ) -> RouterSpaces:
        """Read the sizes from a router's spaces.

        Args:
            observation_space: A ``Dict`` space with the keys ``"observation"`` (a 1-D
                ``Box``), ``"task"`` and ``"depth"`` (``Discrete``) and ``"action_mask"``
                (length ``A``).
            action_space: A ``Discrete(A)`` space.
            num_depths: Overrides the number of depths read from ``"depth"``.

        Raises:
            TypeError: When a space has the wrong type or misses a key.
            ValueError: When the sizes disagree (e.g. the mask's length is not ``A``).
        """
        if not isinstance(action_space, gymnasium.spaces.Discrete):
            raise TypeError(f"router agents need a Discrete action space, got {action_space!r}")
        if int(action_space.start) != 0:
            raise ValueError(f"the action space must start at 0, got start={action_space.start}")
        num_actions = int(action_space.n)
        if not isinstance(observation_space, gymnasium.spaces.Dict):
            raise TypeError(
                f"router agents need a Dict observation space with keys {_OBS_KEYS}, got {observation_space!r}"
            )
        missing = [k for k in _OBS_KEYS if k not in observation_space.spaces]
        if missing:
            raise TypeError(f"the observation space misses the keys {missing}; expected {_OBS_KEYS}")
        mask_shape = observation_space["action_mask"].shape
        if mask_shape != (num_actions,):
            raise ValueError(
                f"mismatched spaces: the action mask has shape {mask_shape} but the action space has "
                f"{num_actions} actions"
            )
        obs_shape = observation_space["observation"].shape
        if obs_shape is None or len(obs_shape) != 1:
            raise ValueError(f"the 'observation' entry must be a 1-D vector, got shape {obs_shape}")
        num_tasks = _discrete_size(observation_space["task"], "task")
        if num_tasks is None:
            raise TypeError(f"cannot read the number of tasks from {observation_space['task']!r}")
        if num_depths is None:
            num_depths = _discrete_size(observation_space["depth"], "depth")
            if num_depths is None:
                raise TypeError(
                    f"cannot read the number of depths from {observation_space['depth']!r}; pass num_depths="
                )
        if isinstance(num_depths, bool) or not isinstance(num_depths, (int, np.integer)) or num_depths < 1:
            raise ValueError(f"num_depths must be a positive int, got {num_depths!r}")
        return cls(
            num_actions=num_actions,
            num_depths=int(num_depths),
            num_tasks=int(num_tasks),
            observation_dim=int(obs_shape[0]),
        )


# ----------------------------------------------------------------- traces
@dataclass
class Trace:
    """One finished routing of a sample by one agent: the paper's ``T = (S, A, R, r_final)``.

    Attributes:
        observations: The observation of each decision ``s_i`` (copied, so later env
            steps cannot change them).
        actions: The action ``a_i`` taken at each decision.
        rewards: The immediate reward ``r_i`` of each action (the collaboration reward),
            *without* the final reward.
        final_reward: ``r_final`` (+1 correct, -1 wrong on classification), 0.0 when
            the environment reports none.
        infos: The info the agent read after each action (may be empty).
        truncated: True when the trace was cut short by a truncation.
    """

    observations: list[Observation] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    final_reward: float = 0.0
    infos: list[Mapping[str, Any]] = field(default_factory=list)
    truncated: bool = False

    def __post_init__(self) -> None:
        if not (len(self.observations) == len(self.actions) == len(self.rewards)):
            raise ValueError(
                "a trace needs one observation, action and reward per decision, got "
                f"{len(self.observations)} observations, {len(self.actions)} actions and "
                f"{len(self.rewards)} rewards"
            )
        # a NaN reward would silently poison every later policy update
        bad = [i for i, r in enumerate(self.rewards) if not math.isfinite(r)]
        if bad or not math.isfinite(self.final_reward):
            where = (
                f"final reward {self.final_reward}"
                if not math.isfinite(self.final_reward)
                else f"immediate reward(s) {[self.rewards[i] for i in bad]} at decision(s) {bad}"
            )
            raise ValueError(
                f"the environment handed out a non-finite {where}; router agents learn only from finite "
                "rewards (a regression loss on a non-finite prediction or target?)"
            )

    def __len__(self) -> int:
        return len(self.actions)

    @classmethod
    def from_env_rewards(
        cls,
        observations: Sequence[Observation],
        actions: Sequence[int],
        env_rewards: Sequence[float],
        infos: Sequence[Mapping[str, Any]],
        *,
        truncated: bool = False,
    ) -> Trace:
        """Build a trace from the rewards as the environment hands them out.

        The environment adds the final reward to the reward of a sample's last
        decision; the info read after that decision names it (``"final_reward"``),
        so it is split off here. Without that key the rewards are taken as they are
        and ``final_reward`` is 0 (the returns are then ordinary discounted returns).
        """
        rewards = [float(r) for r in env_rewards]
        final = 0.0
        if infos and rewards:
            value = infos[-1].get("final_reward")
            if value is not None:
                final = float(value)
                rewards[-1] -= final
        return cls(
            observations=list(observations),
            actions=[int(a) for a in actions],
            rewards=rewards,
            final_reward=final,
            infos=list(infos),
            truncated=truncated,
        )


def observation_row(obs: Observation, i: int) -> dict[str, Any]:
    """Row ``i`` of a batched observation as the per-sample observation dict.

    A batched observation (e.g. :class:`routing_env.BatchObservation`) maps the keys of
    the per-sample one to arrays with a leading batch axis; ``"observation"`` may be a
    torch tensor (it is read only here, so an agent that never calls this never makes
    the environment compute it).
    """
    if hasattr(obs, "row"):
        return obs.row(i)  # type: ignore[no-any-return]
    v = obs["observation"][i]
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return {
        "observation": np.asarray(v, dtype=np.float32),
        "task": int(obs["task"][i]),
        "depth": int(obs["depth"][i]),
        "action_mask": np.asarray(obs["action_mask"][i]),
    }


def _batch_size(obs: Observation) -> int:
    return int(np.shape(obs["task"])[0])


def select_rows(obs: Observation, rows: np.ndarray) -> Observation:
    """Rows ``rows`` of a batched observation (its own ``select`` when it has one, so that a
    lazily computed ``"observation"`` stays lazy)."""
    if hasattr(obs, "select"):
        return obs.select(rows)  # type: ignore[no-any-return]
    out = {}
    for key, value in obs.items():
        if hasattr(value, "index_select"):  # a torch tensor: index on its own device
            import torch

            out[key] = value[torch.as_tensor(rows, device=value.device)]
        else:
            out[key] = np.asarray(value)[rows]
    return out


@dataclass
class TraceBatch:
    """The finished traces of one agent in a routed minibatch, one row per sample.

    The batched counterpart of :class:`Trace`: every sample of a minibatch makes the same
    number of decisions ``n`` (PASS is a decision too), so the traces stack.

    Attributes:
        observations: One batched observation per decision (rows = the traces), with the
            keys of the per-sample observation (``"observation"`` read only on demand).
        actions: ``b x n`` int64 actions.
        rewards: ``b x n`` float64 immediate (collaboration) rewards, without the final.
        final_rewards: ``(b,)`` float64 final rewards.
    """

    observations: list[Observation]
    actions: np.ndarray
    rewards: np.ndarray
    final_rewards: np.ndarray

    def __post_init__(self) -> None:
        b = len(self.final_rewards)
        n = len(self.observations)
        if self.actions.shape != (b, n) or self.rewards.shape != (b, n):
            raise ValueError(
                f"a trace batch of {b} traces and {n} decisions needs actions and rewards of shape "
                f"({b}, {n}), got {self.actions.shape} and {self.rewards.shape}"
            )
        if not (np.isfinite(self.rewards).all() and np.isfinite(self.final_rewards).all()):
            raise ValueError(
                "the environment handed out a non-finite reward; router agents learn only from finite "
                "rewards (a regression loss on a non-finite prediction or target?)"
            )

    def __len__(self) -> int:
        return len(self.final_rewards)

    @property
    def num_decisions(self) -> int:
        return len(self.observations)

    def select(self, rows: np.ndarray) -> TraceBatch:
        """The traces of ``rows`` only (int positions), in that order."""
        return TraceBatch(
            observations=[select_rows(obs, rows) for obs in self.observations],
            actions=self.actions[rows],
            rewards=self.rewards[rows],
            final_rewards=self.final_rewards[rows],
        )

    def trace(self, i: int) -> Trace:
        """Trace ``i`` as a per-sample :class:`Trace`."""
        return Trace(
            observations=[observation_row(obs, i) for obs in self.observations],
            actions=[int(a) for a in self.actions[i]],
            rewards=[float(r) for r in self.rewards[i]],
            final_reward=float(self.final_rewards[i]),
        )

    def returns(self, gamma: float) -> np.ndarray:
        """:func:`compute_returns` of every trace, ``b x n`` (the same floats, row by row)."""
        r = self.rewards
        out = np.empty_like(r)
        running = np.zeros(len(r))
        for i in range(r.shape[1] - 1, -1, -1):
            running = r[:, i] + gamma * running
            out[:, i] = running
        return out + self.final_rewards[:, None]


def compute_returns(rewards: Sequence[float], final_reward: float = 0.0, gamma: float = 1.0) -> np.ndarray:
    """The return of every decision of a trace, Algorithm 3 line 2.

    ``R_i = r_final + sum_{j>=i} gamma^(j-i) r_j``. Note that, as in the paper, the
    final reward is added undiscounted to every decision's return (it judges the
    whole route), while the immediate rewards are discounted. With ``gamma = 1``
    this equals the ordinary undiscounted return of the rewards the env hands out.

    Args:
        rewards: Immediate rewards ``r_i`` (without the final reward).
        final_reward: ``r_final``.
        gamma: The discount factor in ``[0, 1]``.

    Returns:
        A float64 array with one return per decision.

    Raises:
        ValueError: When ``gamma`` lies outside ``[0, 1]``.
    """
    gamma = check_probability("gamma", gamma)
    r = np.asarray(rewards, dtype=np.float64)
    out = np.empty_like(r)
    running = 0.0
    for i in range(len(r) - 1, -1, -1):
        running = r[i] + gamma * running
        out[i] = running
    return out + float(final_reward)


# ----------------------------------------------------------------- acting helpers
def masked_argmax(values: np.ndarray, mask: np.ndarray) -> int:
    """Index of the largest value among the allowed actions (first one on ties)."""
    allowed = np.asarray(mask, dtype=bool)
    return int(np.flatnonzero(allowed)[np.argmax(np.asarray(values)[allowed])])


def sample_from(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Draw an index from ``probs``; zero-probability entries are never drawn."""
    cdf = np.cumsum(probs)
    # side="right" skips entries whose probability is 0 (their cdf equals the previous one)
    index = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    if index >= len(probs) or probs[index] <= 0:  # float round-off at the top end
        index = int(np.flatnonzero(probs > 0)[-1])
    return index


# ----------------------------------------------------------------- the interface
class RouterAgent(ABC):
    """Base class of the router agents: one learner behind one PettingZoo agent id.

    Subclasses implement :meth:`action_probs`, :meth:`learn`, :meth:`state_dict` and
    :meth:`load_state_dict`; they may override :meth:`greedy_action` (used by
    evaluation) when the greedy choice is not the argmax of :meth:`action_probs`.

    Args:
        observation_space: The agent's observation space (see :class:`RouterSpaces`).
        action_space: The agent's ``Discrete(A)`` action space.
        gamma: Discount of the immediate rewards in the returns, in ``[0, 1]``.
        seed: An int seed, a :class:`numpy.random.Generator` (shared, used as is) or
            None (fresh entropy). Drives action sampling.
        num_depths: Overrides the number of depths read from the observation space.

    Raises:
        TypeError: When the spaces have the wrong type.
        ValueError: When the spaces disagree or ``gamma`` lies outside ``[0, 1]``.
    """

    def __init__(
        self,
        *,
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        gamma: float = 1.0,
        seed: SeedLike = None,
        num_depths: int | None = None,
    ) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.spaces = RouterSpaces.from_spaces(observation_space, action_space, num_depths=num_depths)
        self.gamma = check_probability("gamma", gamma)
        self.rng = as_generator(seed)

    # -- sizes
    @property
    def num_actions(self) -> int:
        return self.spaces.num_actions

    @property
    def num_depths(self) -> int:
        return self.spaces.num_depths

    # -- acting
    def check_observation(self, obs: Observation) -> tuple[int, np.ndarray]:
        """Validate an observation; return its depth and its boolean action mask.

        Raises:
            ValueError: When the mask has the wrong length or allows nothing, or the
                depth is out of range.
        """
        mask = np.asarray(obs["action_mask"]).astype(bool, copy=False).reshape(-1)
        if mask.shape != (self.num_actions,):
            raise ValueError(f"the action mask has length {mask.shape[0]}, expected {self.num_actions}")
        if not mask.any():
            raise ValueError("the action mask allows no action")
        depth = int(obs["depth"])
        if not 0 <= depth < self.num_depths:
            raise ValueError(f"depth {depth} is out of range [0, {self.num_depths})")
        return depth, mask

    @abstractmethod
    def action_probs(self, obs: Observation) -> np.ndarray:
        """The probability of each action under the acting policy (0 on masked actions).

        Returns:
            A float64 array of length ``A`` that sums to 1.
        """

    def greedy_action(self, obs: Observation) -> int:
        """The action a greedy (evaluation) policy takes: argmax of :meth:`action_probs`."""
        _, mask = self.check_observation(obs)
        return masked_argmax(self.action_probs(obs), mask)

    def act(self, obs: Observation, *, greedy: bool = False) -> int:
        """Choose an action for ``obs``; never a masked one.

        Args:
            obs: The observation dict read from ``env.last()``.
            greedy: Take :meth:`greedy_action` instead of sampling.
        """
        if greedy:
            return self.greedy_action(obs)
        return sample_from(self.action_probs(obs), self.rng)

    def act_batch(self, obs: Observation, *, greedy: bool = False) -> np.ndarray:
        """Actions for every row of a batched observation (the batched routing path).

        The default acts on each row in turn, as :meth:`act` would on the row's own
        observation (so sampling draws from the generator in row order); subclasses
        override it to act on the whole batch at once.

        Returns:
            An int64 array with one action per row.
        """
        return np.array(
            [self.act(observation_row(obs, i), greedy=greedy) for i in range(_batch_size(obs))],
            dtype=np.int64,
        )

    @classmethod
    def act_group(
        cls, learners: Sequence[RouterAgent], obs: Observation, owner_B: np.ndarray, *, greedy: bool = False
    ) -> np.ndarray:
        """Actions for every row of ``obs``, row ``b`` decided by ``learners[owner_B[b]]``.

        The batched loop calls this once per step for the learners of one class, so a
        class can act for several agents at once. The default calls each learner's
        :meth:`act_batch` on its own rows; an override must give the same actions and
        draw from each learner's generator as that does.
        """
        actions = np.empty(len(owner_B), dtype=np.int64)
        for k, learner in enumerate(learners):
            rows = np.flatnonzero(owner_B == k)
            if len(rows):
                actions[rows] = learner.act_batch(select_rows(obs, rows), greedy=greedy)
        return actions

    @classmethod
    def learn_group(cls, learners: Sequence[RouterAgent], traces: TraceBatch, owner_B: np.ndarray) -> None:
        """Each learner learns from its rows of ``traces`` (row ``b`` is ``learners[owner_B[b]]``'s).

        The default calls each learner's :meth:`learn_batch` on its own rows; an override
        must give the same updates.
        """
        for k, learner in enumerate(learners):
            rows = np.flatnonzero(owner_B == k)
            if len(rows):
                learner.learn_batch(traces.select(rows))

    # -- learning
    def learn_batch(self, traces: TraceBatch) -> dict[str, float]:
        """Learn from a minibatch's traces, one after another in row order.

        The default calls :meth:`learn` on each trace, which is exactly the per-sample
        sequence of updates; subclasses override it with a faster loop that gives the
        same updates.

        Returns:
            The mean of the per-trace statistics.
        """
        stats: dict[str, list[float]] = {}
        for i in range(len(traces)):
            for key, value in self.learn(traces.trace(i)).items():
                stats.setdefault(key, []).append(value)
        return {key: float(np.mean(values)) for key, values in stats.items()}

    @abstractmethod
    def learn(self, trace: Trace) -> dict[str, float]:
        """Update the agent from one finished trace.

        Returns:
            Scalars worth logging (e.g. ``{"loss": ...}``); may be empty.
        """

    def returns(self, trace: Trace) -> np.ndarray:
        """:func:`compute_returns` of ``trace`` with this agent's ``gamma``."""
        return compute_returns(trace.rewards, trace.final_reward, self.gamma)

    # -- state
    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything learned (and the sampling generator's state), as a plain dict."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            ValueError: When the state does not fit this agent's sizes.
        """

    def _rng_state(self) -> dict[str, Any]:
        return dict(self.rng.bit_generator.state)

    def _load_rng_state(self, state: Mapping[str, Any] | None) -> None:
        if state is not None:
            self.rng.bit_generator.state = dict(state)


def check_state_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 copy of a :meth:`RouterAgent.state_dict` entry, checked against ``shape``.

    Raises:
        ValueError: When the shape differs.
    """
    array = np.array(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"state entry {name!r} has shape {array.shape}, expected {shape}")
    return array
