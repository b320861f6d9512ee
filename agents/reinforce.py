"""REINFORCE (Williams, 1992) router agents, tabular or with one MLP per depth.

The policy is a softmax over masked logits. With ``representation="table"`` the
logits are a ``[depth, action]`` table (the state used is the depth; the agent is
indexed by the task). With ``representation="mlp"`` they come from one 2-layer MLP
per depth fed with ``concat(v, one-hot(t))`` (the paper's appendix 7.3).

From a finished trace the agent takes one optimizer step on

``loss = -sum_i (R_i - b_i) log pi(a_i | s_i)  [+ sum_i (V(s_i) - R_i)^2 with a learned baseline]``

where ``R_i`` is the paper's return (:func:`agents.base.compute_returns`) and
``b_i`` the baseline: ``"average"`` a running average of the returns seen at the
depth (read before it is updated with ``R_i``), ``"value"`` a learned value ``V(s)``
of the same representation as the policy, or ``"none"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import gymnasium
import numpy as np
import torch
from torch.nn import functional

from agents.base import (
    Observation,
    RouterAgent,
    SeedLike,
    Trace,
    check_probability,
    check_rate,
    check_state_array,
)
from agents.networks import (
    Representation,
    features,
    make_network,
    make_optimizer,
    masked_fill_logits,
    torch_generator,
)

__all__ = ["Reinforce"]

Baseline = Literal["average", "value", "none"]


class Reinforce(RouterAgent):
    """REINFORCE with a baseline, tabular or with one MLP per depth.

    Args:
        observation_space: The router's observation space.
        action_space: The router's ``Discrete(A)`` action space.
        representation: ``"table"`` (``[depth, action]`` logits) or ``"mlp"`` (one
            2-layer MLP per depth on ``concat(v, one-hot(t))``).
        lr: Learning rate of the optimizer (> 0).
        optimizer: ``"adam"`` or ``"sgd"``.
        gamma: Discount of the immediate rewards, in ``[0, 1]``.
        baseline: ``"average"``, ``"value"`` or ``"none"`` (see the module docstring).
        baseline_rate: Rate of the running average baseline, in ``(0, 1]``.
        hidden_width: Hidden units of each MLP (the paper: 64).
        seed: Seed or Generator; it also seeds the agent's own torch generator that
            initializes the MLPs.
        num_depths: Overrides the number of depths read from the observation space.

    Raises:
        ValueError: On a non-positive ``lr``, a rate or ``gamma`` outside its range,
            an unknown option or mismatched spaces.
    """

    def __init__(
        self,
        *,
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        representation: Representation = "mlp",
        lr: float = 1e-2,
        optimizer: Literal["adam", "sgd"] = "adam",
        gamma: float = 1.0,
        baseline: Baseline = "average",
        baseline_rate: float = 0.01,
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
        if baseline not in ("average", "value", "none"):
            raise ValueError(f"baseline must be 'average', 'value' or 'none', got {baseline!r}")
        self.baseline = baseline
        self.baseline_rate = check_probability("baseline_rate", baseline_rate)
        if self.baseline_rate == 0.0:
            raise ValueError("baseline_rate must be > 0")
        self.representation = representation
        self.in_features = self.spaces.observation_dim + self.spaces.num_tasks
        self.generator = torch_generator(self.rng)
        net_depths = self._net_depths()
        self.policy_net = make_network(
            representation,
            in_features=self.in_features,
            out_features=self.num_actions,
            num_depths=net_depths,
            hidden_width=hidden_width,
            generator=self.generator,
            output_scale=0.01,  # start close to the uniform policy
        )
        params = list(self.policy_net.parameters())
        self.value_net = None
        if baseline == "value":
            self.value_net = make_network(
                representation,
                in_features=self.in_features,
                out_features=1,
                num_depths=net_depths,
                hidden_width=hidden_width,
                generator=self.generator,
            )
            params += list(self.value_net.parameters())
        self.optimizer_name = optimizer
        self.optimizer = make_optimizer(optimizer, params, self.lr)
        self.average_return_n = np.zeros(net_depths, dtype=np.float64)

    # hooks for the dispatcher, which has a single decision whatever the depth says
    def _net_depths(self) -> int:
        return self.num_depths

    def _net_depth(self, depth: int) -> int:
        return depth

    # ------------------------------------------------------------------ acting
    def _inputs(self, observations: list[Observation]) -> tuple[torch.Tensor, list[int], torch.Tensor]:
        x = np.stack([features(o, self.spaces.num_tasks) for o in observations])
        depths, masks = [], []
        for obs in observations:
            depth, mask = self.check_observation(obs)
            depths.append(self._net_depth(depth))
            masks.append(mask)
        return torch.from_numpy(x), depths, torch.from_numpy(np.stack(masks))

    def action_probs(self, obs: Observation) -> np.ndarray:
        x_BF, depths, mask_BA = self._inputs([obs])
        with torch.no_grad():
            probs = torch.softmax(masked_fill_logits(self.policy_net(x_BF, depths), mask_BA), dim=-1)
        out = probs[0].double().numpy()
        return out / out.sum()

    # ----------------------------------------------------------------- learning
    def learn(self, trace: Trace) -> dict[str, float]:
        """One optimizer step on the REINFORCE loss of ``trace``.

        Returns:
            ``{"loss": ..., "mean_advantage": ...}`` (and ``"value_loss"`` with a
            learned baseline).
        """
        if len(trace) == 0:
            return {}
        returns = self.returns(trace)
        x_BF, depths, mask_BA = self._inputs(trace.observations)
        actions_B = torch.as_tensor(trace.actions, dtype=torch.long)
        if not bool(mask_BA[torch.arange(len(trace)), actions_B].all()):
            raise ValueError("the trace holds an action that its observation masks")
        returns_B = torch.from_numpy(returns).float()
        logp_BA = functional.log_softmax(masked_fill_logits(self.policy_net(x_BF, depths), mask_BA), dim=-1)
        logp_B = logp_BA.gather(1, actions_B[:, None])[:, 0]
        stats: dict[str, float] = {}
        loss = torch.zeros(())
        if self.baseline == "average":
            baseline_B = torch.from_numpy(self.average_return_n[depths]).float()
        elif self.baseline == "value":
            assert self.value_net is not None
            values_B = self.value_net(x_BF, depths)[:, 0]
            value_loss = functional.mse_loss(values_B, returns_B, reduction="sum")
            loss = loss + value_loss
            baseline_B = values_B.detach()
            stats["value_loss"] = float(value_loss.detach())
        else:
            baseline_B = torch.zeros_like(returns_B)
        advantage_B = returns_B - baseline_B
        loss = loss - (advantage_B * logp_B).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.baseline == "average":
            beta = self.baseline_rate
            for depth, ret in zip(depths, returns, strict=True):
                self.average_return_n[depth] = (1 - beta) * self.average_return_n[depth] + beta * ret
        stats["loss"] = float(loss.detach())
        stats["mean_advantage"] = float(advantage_B.mean())
        return stats

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy_net": {k: v.clone() for k, v in self.policy_net.state_dict().items()},
            "value_net": None
            if self.value_net is None
            else {k: v.clone() for k, v in self.value_net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "average_return": self.average_return_n.copy(),
            "rng": self._rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            self.policy_net.load_state_dict(state["policy_net"])
            if self.value_net is not None:
                self.value_net.load_state_dict(state["value_net"])
        except RuntimeError as err:  # torch reports shape mismatches as RuntimeError
            raise ValueError(f"the state does not fit this agent: {err}") from err
        self.optimizer.load_state_dict(state["optimizer"])
        self.average_return_n = check_state_array(
            "average_return", state["average_return"], self.average_return_n.shape
        )
        self._load_rng_state(state.get("rng"))
