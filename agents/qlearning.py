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

The batched routing path (:meth:`QLearning.act_batch`, :meth:`QLearning.learn_batch`)
acts on a minibatch's rows at once with the generator draws of acting row by row, and
learns from its traces in row order with the updates of :meth:`QLearning.learn`. With
``update="minibatch"`` an MLP agent instead takes one optimizer step per minibatch, on
the mean over its traces of each trace's loss (the authors' code, cle-ros/RoutingNetworks,
also takes one step per batch on its routing loss): every target then comes from the
network as it was at the start of the minibatch. :meth:`QLearning.learn` (one trace, the
AEC path) is the same either way.
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
    TraceBatch,
    check_probability,
    check_rate,
    check_state_array,
    check_update,
    masked_argmax,
)
from agents.networks import (
    DeviceLike,
    PerDepthMLP,
    Representation,
    batch_features,
    batch_inputs,
    check_device,
    cpu_state,
    features,
    make_network,
    masked_argmax_rows,
    sample_rows,
    torch_generator,
    trace_inputs,
)
from routing_env.optim import make_optimizer

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
        update: How :meth:`learn_batch` trains the MLP: ``"trace"`` (one optimizer step
            per trace, in row order: :meth:`learn`'s updates, bit for bit) or
            ``"minibatch"`` (one step on the mean of the traces' losses, with the
            targets of the network at the start of the minibatch; fewer, larger steps,
            and a different learning rule). The table's update is Watkins', trace
            by trace, so it takes ``"trace"`` only.
        seed: Seed or Generator (also seeds the agent's torch generator).
        num_depths: Overrides the number of depths read from the observation space.
        device: Where the MLP and the optimizer's state live (``"cpu"``, ``"cuda"``, a
            :class:`torch.device`); the initial weights do not depend on it. Unused by
            the table, which is a NumPy array. Observations may come as NumPy arrays
            (AEC path) or tensors on any device (batched path); :meth:`state_dict` is
            always on the CPU.

    Raises:
        ValueError: On a non-positive ``lr``, ``gamma`` or ``epsilon`` outside
            ``[0, 1]``, an unknown option, mismatched spaces or an unusable ``device``.
        TypeError: When ``epsilon`` is neither a number nor an :class:`EpsilonSchedule`,
            or ``device`` neither a string nor a :class:`torch.device`.
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
        update: Literal["trace", "minibatch"] = "trace",
        seed: SeedLike = None,
        num_depths: int | None = None,
        device: DeviceLike = "cpu",
    ) -> None:
        super().__init__(
            observation_space=observation_space,
            action_space=action_space,
            gamma=gamma,
            seed=seed,
            num_depths=num_depths,
        )
        self.lr = check_rate("lr", lr)
        self.update = check_update(update)
        if update == "minibatch" and representation == "table":
            raise ValueError(
                "update='minibatch' needs representation='mlp': tabular Q-learning applies "
                "Watkins' update decision by decision (update='trace')"
            )
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
        self.device = check_device(device)
        self.traces_learned = 0
        n, A = self.num_depths, self.num_actions
        self.q_nA = np.zeros((n, A), dtype=np.float64)
        self.q_net: PerDepthMLP | None = None
        if representation == "mlp":
            self.generator = torch_generator(self.rng)
            q_net = make_network(
                "mlp",
                in_features=self.spaces.observation_dim + self.spaces.num_tasks,
                out_features=A,
                num_depths=n,
                hidden_width=hidden_width,
                generator=self.generator,
            )
            assert isinstance(q_net, PerDepthMLP)
            self.q_net = q_net.to(self.device)
            self.optimizer = make_optimizer(self.q_net.parameters(), name=optimizer, lr=self.lr)

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
        x = torch.from_numpy(features(obs, self.spaces.num_tasks))[None].to(self.device)
        with torch.no_grad():
            return self.q_net(x, [depth])[0].double().cpu().numpy()

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

    # ------------------------------------------------------------- batched path
    def batch_q_values(self, obs: Observation) -> np.ndarray:
        """``Q(s, .)`` of every row of a batched observation, float64 ``B x A``.

        A table never reads ``obs["observation"]``; an MLP runs one forward per depth
        present, on the agent's device.

        Raises:
            ValueError: On masks of the wrong shape, a row whose mask allows nothing, or
                a depth (or, for an MLP, a task) out of range.
        """
        depth_B, _ = batch_inputs(obs, num_actions=self.num_actions, num_depths=self.num_depths)
        return self._batch_q_values(obs, depth_B)

    def _batch_q_values(self, obs: Observation, depth_B: np.ndarray) -> np.ndarray:
        if self.q_net is None:
            return self.q_nA[depth_B]  # fancy indexing: a copy
        x_BF = batch_features(obs, self.spaces.num_tasks, device=self.device)
        with torch.no_grad():
            return self.q_net.forward_batch(x_BF, depth_B).double().cpu().numpy()

    def act_batch(self, obs: Observation, *, greedy: bool = False) -> np.ndarray:
        """:meth:`act` on every row of a batched observation at once.

        Greedy: the first allowed maximum of ``Q`` per row, as :meth:`greedy_action`.
        Otherwise the epsilon-greedy distribution of :meth:`action_probs` (the same
        floats, row by row) sampled with one ``rng.random()`` per row in row order,
        i.e. the draws of acting row by row. With a table the actions are exactly those
        of :meth:`act` and ``obs["observation"]`` is never read. With an MLP the
        ``Q`` values come from one forward per depth present; a many-row matrix
        product may differ from a one-row one in the last bit, which changes an action
        only when two ``Q`` values of a row tie to that bit.

        Returns:
            int64 actions, one per row; never a masked one.

        Raises:
            ValueError: On masks of the wrong shape, a row whose mask allows nothing, or
                a depth (or, for an MLP, a task) out of range (naming the row).
        """
        depth_B, mask_BA = batch_inputs(obs, num_actions=self.num_actions, num_depths=self.num_depths)
        B = len(depth_B)
        if B == 0:
            return np.zeros(0, dtype=np.int64)
        q_BA = self._batch_q_values(obs, depth_B)
        if greedy:
            return masked_argmax_rows(q_BA, mask_BA)
        best_B1 = np.where(mask_BA, q_BA, -np.inf).max(axis=1, keepdims=True)
        best_BA = mask_BA & (q_BA == best_B1)
        eps = self.epsilon
        # the very operations of action_probs, on every row at once
        explore_BA = eps * mask_BA / mask_BA.sum(axis=1, keepdims=True)
        exploit_BA = (1.0 - eps) * best_BA / best_BA.sum(axis=1, keepdims=True)
        probs_BA = explore_BA + exploit_BA
        return sample_rows(probs_BA, self.rng.random(B))

    def learn_batch(self, traces: TraceBatch) -> dict[str, float]:
        """:meth:`learn` on each trace in row order: the same updates, bit for bit
        (``update="minibatch"``: one optimizer step on the mean of the traces' losses).

        The table does :meth:`learn`'s arithmetic decision by decision (on Python floats,
        which round as NumPy's float64 scalars do) and never reads
        ``obs["observation"]``. The MLP builds the features of every decision of every
        trace once (on the agent's device) and takes one optimizer step per trace, as
        :meth:`learn`. Every trace is checked before the first update, so a bad trace
        changes nothing.

        Returns:
            The mean over the traces of :meth:`learn`'s statistics.

        Raises:
            ValueError: When a trace holds an action its observation masks, or on a bad
                depth, task or mask.
        """
        b, n = len(traces), traces.num_decisions
        if b == 0 or n == 0:
            return {}
        depth_bn, mask_bnA, actions_bn = trace_inputs(
            traces, num_actions=self.num_actions, num_depths=self.num_depths
        )
        if self.q_net is None:
            stats = self._learn_table_batch(traces, depth_bn, mask_bnA, actions_bn)
        else:
            stats = self._learn_mlp_batch(traces, depth_bn, mask_bnA, actions_bn)
        epsilons = []
        for _ in range(b):
            self.traces_learned += 1
            epsilons.append(self.epsilon)
        stats["epsilon"] = float(np.mean(epsilons))
        return stats

    def _learn_table_batch(
        self, traces: TraceBatch, depth_bn: np.ndarray, mask_bnA: np.ndarray, actions_bn: np.ndarray
    ) -> dict[str, float]:
        b, n = actions_bn.shape
        q = self.q_nA.tolist()
        gamma, lr = self.gamma, self.lr
        # the allowed actions of every decision, one list per distinct mask
        allowed: list[list[list[int]]] = []
        for j in range(1, n):
            column = mask_bnA[:, j]
            if (column == column[0]).all():
                allowed.append([np.flatnonzero(column[0]).tolist()] * b)
            else:
                masks, inverse = np.unique(column, axis=0, return_inverse=True)
                lists = [np.flatnonzero(m).tolist() for m in masks]
                allowed.append([lists[k] for k in inverse.reshape(-1).tolist()])
        depths, actions = depth_bn.tolist(), actions_bn.tolist()
        rewards, finals = traces.rewards.tolist(), traces.final_rewards.tolist()
        errors_bn = np.empty((b, n))
        for i in range(b):
            depth_i, action_i, reward_i, errors_i = depths[i], actions[i], rewards[i], errors_bn[i]
            for j in range(n):
                if j + 1 < n:
                    next_row = q[depth_i[j + 1]]
                    target = reward_i[j] + gamma * max([next_row[a] for a in allowed[j][i]])
                else:
                    target = reward_i[j] + finals[i]
                row = q[depth_i[j]]
                error = target - row[action_i[j]]
                row[action_i[j]] += lr * error
                errors_i[j] = abs(error)
        self.q_nA[...] = q
        # mean over the decisions of each trace, then over the traces (as learn + the default)
        return {"td_error": float(np.mean(errors_bn.mean(axis=1).tolist()))}

    def _learn_mlp_batch(
        self, traces: TraceBatch, depth_bn: np.ndarray, mask_bnA: np.ndarray, actions_bn: np.ndarray
    ) -> dict[str, float]:
        device = self.device
        x_bnF = torch.stack(
            [batch_features(obs, self.spaces.num_tasks, device=device) for obs in traces.observations], dim=1
        )
        mask_t = torch.from_numpy(mask_bnA).to(device)
        actions_t = torch.from_numpy(actions_bn).to(device)
        rewards_t = torch.from_numpy(np.ascontiguousarray(traces.rewards, dtype=np.float64)).to(device)
        if self.update == "minibatch":
            finals_t = torch.from_numpy(np.asarray(traces.final_rewards, dtype=np.float64)).to(device)
            step = self._mlp_minibatch_step(x_bnF, depth_bn, mask_t, actions_t, rewards_t, finals_t)
            return {key: float(value) for key, value in step.items()}
        finals = traces.final_rewards.tolist()
        depths = depth_bn.tolist()
        collected: dict[str, list[torch.Tensor]] = {}
        for i in range(len(finals)):
            step = self._mlp_step(x_bnF[i], depths[i], mask_t[i], actions_t[i], rewards_t[i], finals[i])
            for key, value in step.items():
                collected.setdefault(key, []).append(value)
        # one transfer for all the statistics (no per-trace sync with a GPU)
        return {
            key: float(np.mean(torch.stack(values).double().cpu().numpy()))
            for key, values in collected.items()
        }

    # ----------------------------------------------------------------- learning
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
            device = self.device
            x_BF = torch.from_numpy(
                np.stack([features(o, self.spaces.num_tasks) for o in trace.observations])
            ).to(device)
            masks = torch.from_numpy(np.stack([m for _, m in checked])).to(device)
            actions_B = torch.as_tensor(trace.actions, dtype=torch.long, device=device)
            rewards_B = torch.as_tensor(trace.rewards, dtype=torch.float64, device=device)
            step = self._mlp_step(
                x_BF, [d for d, _ in checked], masks, actions_B, rewards_B, trace.final_reward
            )
            stats = {key: float(value) for key, value in step.items()}
        self.traces_learned += 1
        stats["epsilon"] = self.epsilon
        return stats

    def _mlp_step(
        self,
        x_BF: torch.Tensor,
        depths: list[int],
        mask_BA: torch.Tensor,
        actions_B: torch.Tensor,
        rewards_B: torch.Tensor,
        final_reward: float,
    ) -> dict[str, torch.Tensor]:
        """One optimizer step on one trace's squared TD error (shared by :meth:`learn` and
        :meth:`learn_batch`, so both make the same arithmetic); detached statistics.

        ``rewards_B``: the trace's immediate rewards, float64 on the agent's device.
        """
        assert self.q_net is not None
        q_BA = self.q_net(x_BF, depths)
        with torch.no_grad():
            next_max = q_BA[1:].masked_fill(~mask_BA[1:], float("-inf")).max(dim=1).values
            # float64 targets r_i + gamma * max Q(s_{i+1}) (+ r_final on the last), then float32
            targets = rewards_B.clone()
            targets[:-1] += self.gamma * next_max.double()
            targets[-1] += final_reward
            targets_B = targets.float()
        chosen_B = q_BA.gather(1, actions_B[:, None])[:, 0]
        td_B = targets_B - chosen_B
        loss = (td_B**2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"td_error": td_B.detach().abs().mean(), "loss": loss.detach()}

    def _mlp_minibatch_step(
        self,
        x_bnF: torch.Tensor,
        depth_bn: np.ndarray,
        mask_bnA: torch.Tensor,
        actions_bn: torch.Tensor,
        rewards_bn: torch.Tensor,
        finals_b: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """One optimizer step on the mean over ``b`` traces of :meth:`_mlp_step`'s loss.

        The Q-values of every decision come from one forward per depth present in each
        decision column (:meth:`~agents.networks.PerDepthMLP.forward_batch`); the
        targets are :meth:`_mlp_step`'s, from those values without gradient. With one
        trace this is :meth:`_mlp_step`'s loss.
        """
        assert self.q_net is not None
        n = depth_bn.shape[1]
        q_bnA = torch.stack([self.q_net.forward_batch(x_bnF[:, j], depth_bn[:, j]) for j in range(n)], dim=1)
        with torch.no_grad():
            next_max = q_bnA[:, 1:].masked_fill(~mask_bnA[:, 1:], float("-inf")).max(dim=2).values
            targets = rewards_bn.clone()
            targets[:, :-1] += self.gamma * next_max.double()
            targets[:, -1] += finals_b
            targets_bn = targets.float()
        chosen_bn = q_bnA.gather(2, actions_bn[:, :, None])[:, :, 0]
        td_bn = targets_bn - chosen_bn
        loss = (td_bn**2).mean(dim=1).mean()  # each trace's mean, then the mean over traces
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"td_error": td_bn.detach().abs().mean(dim=1).mean(), "loss": loss.detach()}

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything learned, with every tensor on the CPU (loadable on any device)."""
        state: dict[str, Any] = {
            "q": self.q_nA.copy(),
            "traces_learned": self.traces_learned,
            "rng": self._rng_state(),
        }
        if self.q_net is not None:
            state["q_net"] = cpu_state(self.q_net.state_dict())
            state["optimizer"] = cpu_state(self.optimizer.state_dict())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; tensors go to the agent's device."""
        self.q_nA = check_state_array("q", state["q"], self.q_nA.shape)
        if self.q_net is not None:
            try:
                self.q_net.load_state_dict(state["q_net"])
            except RuntimeError as err:
                raise ValueError(f"the state does not fit this agent: {err}") from err
            self.optimizer.load_state_dict(state["optimizer"])
        self.traces_learned = int(state["traces_learned"])
        self._load_rng_state(state.get("rng"))
