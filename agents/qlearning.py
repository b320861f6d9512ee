"""Q-learning router agents: vanilla tabular Watkins Q-learning, or one MLP per depth.

For a trace ``(s_0, a_0, r_0), ..., (s_{n-1}, a_{n-1}, r_{n-1}), r_final`` the target
of decision ``i`` is

* ``r_i + gamma * max_{a' allowed in s_{i+1}} Q(s_{i+1}, a')`` for ``i < n - 1``;
* ``r_{n-1} + r_final`` for the last decision (the end of the route is terminal).

Unlike the policy-gradient agents, which add ``r_final`` undiscounted to every
return (Algorithm 3), the final reward here reaches earlier decisions through the
bootstrap, i.e. discounted by ``gamma`` per decision; with ``gamma = 1`` both agree.

``representation="table"`` keeps ``Q[depth, action]`` and applies Watkins' update
``Q <- Q + lr * (target - Q)`` to each decision in order. ``representation="mlp"``
fits one 2-layer MLP per depth on ``concat(v, one-hot(t))`` by one optimizer step on
the squared TD error of the trace (targets computed without gradient).

Exploration is epsilon-greedy over the allowed actions, with epsilon following an
:class:`EpsilonSchedule` counted in learned traces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium
import numpy as np
import torch

from agents.base import (
    Observation,
    RouterAgent,
    SeedLike,
    Trace,
    check_probability,
    check_rate,
    check_state_array,
    masked_argmax,
)
from agents.networks import Representation, features, make_network, make_optimizer, torch_generator

__all__ = ["EpsilonSchedule", "QLearning"]


@dataclass(frozen=True)
class EpsilonSchedule:
    """Exploration rate as a function of the number of traces learned so far.

    * ``"constant"``: ``epsilon(t) = start``.
    * ``"linear"``: from ``start`` to ``end`` over ``steps`` traces, then ``end``.
    * ``"exponential"``: ``end + (start - end) * exp(-t / steps)`` (``steps`` is the
      time constant).

    Attributes:
        start: Epsilon before any learning, in ``[0, 1]``.
        end: The asymptotic epsilon, in ``[0, 1]``.
        steps: Length (linear) or time constant (exponential) in traces, > 0.
        kind: ``"constant"``, ``"linear"`` or ``"exponential"``.

    Raises:
        ValueError: When a value is out of range or ``kind`` unknown.
    """

    start: float = 1.0
    end: float = 0.05
    steps: int = 1000
    kind: Literal["constant", "linear", "exponential"] = "linear"

    def __post_init__(self) -> None:
        check_probability("epsilon start", self.start)
        check_probability("epsilon end", self.end)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"epsilon steps must be a positive int, got {self.steps!r}")
        if self.kind not in ("constant", "linear", "exponential"):
            raise ValueError(f"kind must be 'constant', 'linear' or 'exponential', got {self.kind!r}")

    @classmethod
    def constant(cls, epsilon: float) -> EpsilonSchedule:
        """A schedule that stays at ``epsilon``."""
        return cls(start=epsilon, end=epsilon, kind="constant")

    def __call__(self, t: int) -> float:
        """Epsilon after ``t`` learned traces."""
        if self.kind == "constant":
            return self.start
        if self.kind == "linear":
            return self.start + (self.end - self.start) * min(1.0, t / self.steps)
        return self.end + (self.start - self.end) * math.exp(-t / self.steps)


class QLearning(RouterAgent):
    """Epsilon-greedy Q-learning, tabular (Watkins) or with one MLP per depth.

    Args:
        observation_space: The router's observation space.
        action_space: The router's ``Discrete(A)`` action space.
        representation: ``"table"`` or ``"mlp"``.
        lr: The Q-learning step size (table) or the optimizer's learning rate (mlp).
        optimizer: ``"adam"`` or ``"sgd"`` (mlp only).
        gamma: The discount factor, in ``[0, 1]``.
        epsilon: A fixed exploration rate in ``[0, 1]`` or an :class:`EpsilonSchedule`.
        hidden_width: Hidden units of each MLP (the paper: 64).
        seed: Seed or Generator (also seeds the agent's torch generator).
        num_depths: Overrides the number of depths read from the observation space.

    Raises:
        ValueError: On a non-positive ``lr``, ``gamma`` or ``epsilon`` outside
            ``[0, 1]``, an unknown option or mismatched spaces.
        TypeError: When ``epsilon`` is neither a number nor an :class:`EpsilonSchedule`.
    """

    def __init__(
        self,
        *,
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        representation: Representation = "table",
        lr: float = 0.1,
        optimizer: Literal["adam", "sgd"] = "adam",
        gamma: float = 1.0,
        epsilon: float | EpsilonSchedule = 0.1,
        hidden_width: int = 64,
        seed: SeedLike = None,
        num_depths: int | None = None,
    ) -> None:
        super().__init__(
            observation_space=observation_space,
            action_space=action_space,
            gamma=gamma,
            seed=seed,
            num_depths=num_depths,
        )
        self.lr = check_rate("lr", lr)
        if isinstance(epsilon, EpsilonSchedule):
            self.epsilon_schedule = epsilon
        elif isinstance(epsilon, (int, float, np.integer, np.floating)) and not isinstance(epsilon, bool):
            self.epsilon_schedule = EpsilonSchedule.constant(check_probability("epsilon", epsilon))
        else:
            raise TypeError(f"epsilon must be a float or an EpsilonSchedule, got {type(epsilon).__name__}")
        if representation not in ("table", "mlp"):
            raise ValueError(f"representation must be 'table' or 'mlp', got {representation!r}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.representation = representation
        self.traces_learned = 0
        n, A = self.num_depths, self.num_actions
        self.q_nA = np.zeros((n, A), dtype=np.float64)
        self.q_net: torch.nn.Module | None = None
        if representation == "mlp":
            self.generator = torch_generator(self.rng)
            self.q_net = make_network(
                "mlp",
                in_features=self.spaces.observation_dim + self.spaces.num_tasks,
                out_features=A,
                num_depths=n,
                hidden_width=hidden_width,
                generator=self.generator,
            )
            self.optimizer = make_optimizer(optimizer, self.q_net.parameters(), self.lr)

    @property
    def epsilon(self) -> float:
        """The current exploration rate."""
        return self.epsilon_schedule(self.traces_learned)

    # ------------------------------------------------------------------ acting
    def q_values(self, obs: Observation) -> np.ndarray:
        """``Q(s, .)`` for every action (masked actions included), float64."""
        depth, _ = self.check_observation(obs)
        if self.q_net is None:
            return self.q_nA[depth].copy()
        x = torch.from_numpy(features(obs, self.spaces.num_tasks))[None]
        with torch.no_grad():
            return self.q_net(x, [depth])[0].double().numpy()

    def action_probs(self, obs: Observation) -> np.ndarray:
        """The epsilon-greedy distribution: ties of the greedy value share its mass."""
        _, mask = self.check_observation(obs)
        q = self.q_values(obs)
        best = mask & (q == q[mask].max())
        eps = self.epsilon
        return eps * mask / mask.sum() + (1.0 - eps) * best / best.sum()

    def greedy_action(self, obs: Observation) -> int:
        _, mask = self.check_observation(obs)
        return masked_argmax(self.q_values(obs), mask)

    # ----------------------------------------------------------------- learning
    def _targets(self, trace: Trace, next_values: list[float]) -> np.ndarray:
        """TD targets; ``next_values[i]`` is ``max_a' Q(s_{i+1}, a')`` for ``i < n - 1``."""
        targets = np.asarray(trace.rewards, dtype=np.float64).copy()
        targets[:-1] += self.gamma * np.asarray(next_values, dtype=np.float64)
        targets[-1] += trace.final_reward
        return targets

    def learn(self, trace: Trace) -> dict[str, float]:
        """Q-learning updates from the decisions of ``trace`` (see the module docstring).

        Returns:
            ``{"td_error": mean absolute TD error before the update}``.
        """
        n = len(trace)
        if n == 0:
            return {}
        checked = [self.check_observation(o) for o in trace.observations]
        for (_, mask), action in zip(checked, trace.actions, strict=True):
            if not mask[action]:
                raise ValueError(f"the trace holds action {action}, which its observation masks")
        if self.q_net is None:
            errors = []
            for i, ((depth, _), action) in enumerate(zip(checked, trace.actions, strict=True)):
                if i + 1 < n:
                    next_depth, next_mask = checked[i + 1]
                    target = trace.rewards[i] + self.gamma * self.q_nA[next_depth][next_mask].max()
                else:
                    target = trace.rewards[i] + trace.final_reward
                error = target - self.q_nA[depth, action]
                self.q_nA[depth, action] += self.lr * error
                errors.append(abs(error))
            stats = {"td_error": float(np.mean(errors))}
        else:
            x_BF = torch.from_numpy(
                np.stack([features(o, self.spaces.num_tasks) for o in trace.observations])
            )
            depths = [d for d, _ in checked]
            masks = torch.from_numpy(np.stack([m for _, m in checked]))
            q_BA = self.q_net(x_BF, depths)
            with torch.no_grad():
                next_max = q_BA[1:].masked_fill(~masks[1:], float("-inf")).max(dim=1).values
            targets_B = torch.from_numpy(self._targets(trace, next_max.double().tolist())).float()
            chosen_B = q_BA.gather(1, torch.as_tensor(trace.actions, dtype=torch.long)[:, None])[:, 0]
            td_B = targets_B - chosen_B
            loss = (td_B**2).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            stats = {"td_error": float(td_B.detach().abs().mean()), "loss": float(loss.detach())}
        self.traces_learned += 1
        stats["epsilon"] = self.epsilon
        return stats

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "q": self.q_nA.copy(),
            "traces_learned": self.traces_learned,
            "rng": self._rng_state(),
        }
        if self.q_net is not None:
            state["q_net"] = {k: v.clone() for k, v in self.q_net.state_dict().items()}
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.q_nA = check_state_array("q", state["q"], self.q_nA.shape)
        if self.q_net is not None:
            try:
                self.q_net.load_state_dict(state["q_net"])
            except RuntimeError as err:
                raise ValueError(f"the state does not fit this agent: {err}") from err
            self.optimizer.load_state_dict(state["optimizer"])
        self.traces_learned = int(state["traces_learned"])
        self._load_rng_state(state.get("rng"))
