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

With ``update="minibatch"`` the batched path (:meth:`Reinforce.learn_batch`) takes one
optimizer step per minibatch instead, on the mean over its traces of that loss (the
authors' code, cle-ros/RoutingNetworks, also takes one step per batch on its routing
loss); :meth:`Reinforce.learn` (one trace, the AEC path) is the same either way.
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
    TraceBatch,
    check_probability,
    check_rate,
    check_state_array,
    check_update,
)
from agents.networks import (
    DepthTable,
    DeviceLike,
    PerDepthMLP,
    Representation,
    batch_features,
    batch_inputs,
    check_device,
    check_tasks,
    cpu_state,
    features,
    make_network,
    masked_argmax_rows,
    masked_fill_logits,
    sample_rows,
    torch_generator,
    trace_inputs,
)
from routing_env.optim import make_optimizer

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
        update: How :meth:`learn_batch` trains: ``"trace"`` (one optimizer step per
            trace, in row order: :meth:`learn`'s updates, bit for bit) or
            ``"minibatch"`` (one step on the mean of the traces' losses, every
            log-probability from the networks at the start of the minibatch; fewer,
            larger steps, and a different learning rule).
        seed: Seed or Generator; it also seeds the agent's own torch generator that
            initializes the MLPs.
        num_depths: Overrides the number of depths read from the observation space.
        device: Where the networks and the optimizer's state live (``"cpu"``,
            ``"cuda"``, a :class:`torch.device`); the batched path's MLP agents run best
            on the routing network's device. The initial weights do not depend on it.
            Observations may come as NumPy arrays (AEC path) or tensors on any device
            (batched path); :meth:`state_dict` is always on the CPU.

    Raises:
        ValueError: On a non-positive ``lr``, a rate or ``gamma`` outside its range,
            an unknown option, mismatched spaces or an unusable ``device``.
        TypeError: When ``device`` is neither a string nor a :class:`torch.device`.
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
        if baseline not in ("average", "value", "none"):
            raise ValueError(f"baseline must be 'average', 'value' or 'none', got {baseline!r}")
        self.baseline = baseline
        self.baseline_rate = check_probability("baseline_rate", baseline_rate)
        if self.baseline_rate == 0.0:
            raise ValueError("baseline_rate must be > 0")
        self.representation = representation
        self.device = check_device(device)
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
        ).to(self.device)
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
            ).to(self.device)
            params += list(self.value_net.parameters())
        self.optimizer_name = optimizer
        self.optimizer = make_optimizer(params, name=optimizer, lr=self.lr)
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
        return (
            torch.from_numpy(x).to(self.device),
            depths,
            torch.from_numpy(np.stack(masks)).to(self.device),
        )

    def action_probs(self, obs: Observation) -> np.ndarray:
        x_BF, depths, mask_BA = self._inputs([obs])
        with torch.no_grad():
            probs = torch.softmax(masked_fill_logits(self.policy_net(x_BF, depths), mask_BA), dim=-1)
        out = probs[0].double().cpu().numpy()
        return out / out.sum()

    # ------------------------------------------------------------- batched path
    def _batch_inputs(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        """The network depth and boolean mask of every row of a batched observation, checked."""
        return batch_inputs(obs, num_actions=self.num_actions, num_depths=self.num_depths)

    def _batch_features(self, obs: Observation) -> torch.Tensor | None:
        """``concat(v, one-hot(t))`` of every row on the agent's device; None for a table.

        A table checks the task ids as :func:`~agents.networks.features` would but never
        reads ``obs["observation"]`` (reading it makes the batched env compute it).
        """
        if self.representation == "table":
            check_tasks(obs, self.spaces.num_tasks)
            return None
        return batch_features(obs, self.spaces.num_tasks, device=self.device)

    def act_batch(self, obs: Observation, *, greedy: bool = False) -> np.ndarray:
        """:meth:`act` on every row of a batched observation at once.

        The policy's logits come from one forward per depth present
        (:meth:`~agents.networks.PerDepthMLP.forward_batch`; a table reads its rows), and
        the actions are drawn as row-by-row sampling draws them: one ``rng.random()`` per
        row, in row order (:func:`~agents.networks.sample_rows`). With a table the
        probabilities, hence the actions, are exactly those of :meth:`act`, and
        ``obs["observation"]`` is never read. With an MLP a many-row matrix product may
        differ from a one-row one in the last bit of a logit, which changes an action
        only when a draw falls within that round-off of a boundary of the cumulative
        probabilities (or two greedy logits tie to the last bit).

        Returns:
            int64 actions, one per row; never a masked one.

        Raises:
            ValueError: On masks of the wrong shape, a row whose mask allows nothing, or
                a depth or task out of range (the first offending row is named).
        """
        probs_BA, mask_BA = self._batch_probs(obs)
        if greedy:
            return masked_argmax_rows(probs_BA, mask_BA)
        return sample_rows(probs_BA, self.rng.random(len(probs_BA)))

    def batch_action_probs(self, obs: Observation) -> np.ndarray:
        """:meth:`action_probs` of every row of a batched observation, float64 ``B x A``.

        One forward per depth present; a table never reads ``obs["observation"]``.

        Raises:
            ValueError: On masks of the wrong shape, a row whose mask allows nothing, or
                a depth or task out of range (the first offending row is named).
        """
        return self._batch_probs(obs)[0]

    def _batch_probs(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        depth_B, mask_BA = self._batch_inputs(obs)
        x_BF = self._batch_features(obs)
        if len(depth_B) == 0:
            return np.zeros((0, self.num_actions)), mask_BA
        with torch.no_grad():
            logits_BA = self.policy_net.forward_batch(x_BF, depth_B)
            masked_BA = masked_fill_logits(logits_BA, torch.from_numpy(mask_BA).to(logits_BA.device))
            probs_BA = torch.softmax(masked_BA, dim=-1).double().cpu().numpy()
        # the very operations of action_probs, on every row at once
        return probs_BA / probs_BA.sum(axis=1, keepdims=True), mask_BA

    def learn_batch(self, traces: TraceBatch) -> dict[str, float]:
        """:meth:`learn` on each trace in row order: one optimizer step per trace
        (``update="minibatch"``: one step on the mean of the traces' losses).

        The same updates, bit for bit, as the per-sample path (the default
        :meth:`~agents.base.RouterAgent.learn_batch`), without building per-sample
        observations: the checks, the features of all decisions of all traces and the
        tensors are built once for the minibatch (on the agent's device), then the
        optimizer steps loop over the traces. A table never reads
        ``obs["observation"]``. Every trace is checked before the first update, so a
        bad trace changes nothing.

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
        x_bnF = None  # the features of decision j of trace i at [i, j]; a table needs none
        x_columns = [self._batch_features(obs) for obs in traces.observations]
        if self.representation != "table":
            x_bnF = torch.stack([x for x in x_columns if x is not None], dim=1)
        returns_bn = traces.returns(self.gamma)
        depths = depth_bn.tolist()
        device = self.device
        mask_t = torch.from_numpy(mask_bnA).to(device)
        actions_t = torch.from_numpy(actions_bn).to(device)
        returns_t = torch.from_numpy(returns_bn).float().to(device)
        average_t = None
        if self.baseline == "average":
            # the running averages do not depend on the networks: the baseline each trace
            # reads, and the averages after the minibatch, computed up front (no per-trace
            # transfer to a GPU)
            baseline_bn, averages = self._average_baselines(depths, returns_bn)
            average_t = torch.from_numpy(baseline_bn).float().to(device)
        if self.update == "minibatch":
            step = self._minibatch_step(x_bnF, depth_bn, mask_t, actions_t, returns_t, average_t)
            if self.baseline == "average":
                self.average_return_n[:] = averages
            return {key: float(value) for key, value in step.items()}
        collected: dict[str, list[torch.Tensor]] = {}
        for i in range(b):
            x_BF = None if x_bnF is None else x_bnF[i]
            step = self._step(
                x_BF,
                depths[i],
                mask_t[i],
                actions_t[i],
                returns_t[i],
                None if average_t is None else average_t[i],
            )
            for key, value in step.items():
                collected.setdefault(key, []).append(value)
        if self.baseline == "average":
            self.average_return_n[:] = averages
        # one transfer for all the statistics (no per-trace sync with a GPU)
        return {
            key: float(np.mean(torch.stack(values).double().cpu().numpy()))
            for key, values in collected.items()
        }

    def _average_baselines(
        self, depths: list[list[int]], returns_bn: np.ndarray
    ) -> tuple[np.ndarray, list[float]]:
        """The average baseline each trace reads (before its own update), ``b x n``, and the
        averages after the last trace; :meth:`learn`'s float64 arithmetic on Python floats."""
        beta = self.baseline_rate
        averages = self.average_return_n.tolist()
        baseline_bn = np.empty(returns_bn.shape)
        for i, (depth_i, returns_i) in enumerate(zip(depths, returns_bn.tolist(), strict=True)):
            baseline_bn[i] = [averages[depth] for depth in depth_i]
            for depth, ret in zip(depth_i, returns_i, strict=True):
                averages[depth] = (1 - beta) * averages[depth] + beta * ret
        return baseline_bn, averages

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
        actions_B = torch.as_tensor(trace.actions, dtype=torch.long, device=self.device)
        if not bool(mask_BA[torch.arange(len(trace), device=self.device), actions_B].all()):
            raise ValueError("the trace holds an action that its observation masks")
        returns_B = torch.from_numpy(returns).float().to(self.device)
        average_B = None
        if self.baseline == "average":
            average_B = torch.from_numpy(self.average_return_n[depths]).float().to(self.device)
        step = self._step(x_BF, depths, mask_BA, actions_B, returns_B, average_B)
        if self.baseline == "average":
            beta = self.baseline_rate
            for depth, ret in zip(depths, returns, strict=True):
                self.average_return_n[depth] = (1 - beta) * self.average_return_n[depth] + beta * ret
        return {key: float(value) for key, value in step.items()}

    def _step(
        self,
        x_BF: torch.Tensor | None,
        depths: list[int],
        mask_BA: torch.Tensor,
        actions_B: torch.Tensor,
        returns_B: torch.Tensor,
        average_B: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """One optimizer step on one trace's loss (shared by :meth:`learn` and
        :meth:`learn_batch`, so both make the same arithmetic); detached statistics.

        ``average_B``: with the ``"average"`` baseline, the averages the trace reads
        (the caller updates them).
        """
        logp_BA = functional.log_softmax(masked_fill_logits(self.policy_net(x_BF, depths), mask_BA), dim=-1)
        logp_B = logp_BA.gather(1, actions_B[:, None])[:, 0]
        stats: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=self.device)
        if self.baseline == "average":
            assert average_B is not None
            baseline_B = average_B
        elif self.baseline == "value":
            assert self.value_net is not None
            values_B = self.value_net(x_BF, depths)[:, 0]
            value_loss = functional.mse_loss(values_B, returns_B, reduction="sum")
            loss = loss + value_loss
            baseline_B = values_B.detach()
            stats["value_loss"] = value_loss.detach()
        else:
            baseline_B = torch.zeros_like(returns_B)
        advantage_B = returns_B - baseline_B
        loss = loss - (advantage_B * logp_B).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        stats["loss"] = loss.detach()
        stats["mean_advantage"] = advantage_B.mean()
        return stats

    def _minibatch_step(
        self,
        x_bnF: torch.Tensor | None,
        depth_bn: np.ndarray,
        mask_bnA: torch.Tensor,
        actions_bn: torch.Tensor,
        returns_bn: torch.Tensor,
        average_bn: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """One optimizer step on the mean over ``b`` traces of :meth:`_step`'s loss.

        The outputs of every decision come from one forward per depth present in each
        decision column (``forward_batch``); with one trace this is :meth:`_step`'s loss.
        """
        n = depth_bn.shape[1]

        def column(net: DepthTable | PerDepthMLP, j: int) -> torch.Tensor:
            return net.forward_batch(None if x_bnF is None else x_bnF[:, j], depth_bn[:, j])

        logits_bnA = torch.stack([column(self.policy_net, j) for j in range(n)], dim=1)
        logp_bnA = functional.log_softmax(masked_fill_logits(logits_bnA, mask_bnA), dim=-1)
        logp_bn = logp_bnA.gather(2, actions_bn[:, :, None])[:, :, 0]
        stats: dict[str, torch.Tensor] = {}
        loss_b = torch.zeros(len(depth_bn), device=self.device)
        if self.baseline == "average":
            assert average_bn is not None
            baseline_bn = average_bn
        elif self.baseline == "value":
            assert self.value_net is not None
            values_bn = torch.stack([column(self.value_net, j)[:, 0] for j in range(n)], dim=1)
            value_loss_b = ((values_bn - returns_bn) ** 2).sum(dim=1)
            loss_b = loss_b + value_loss_b
            baseline_bn = values_bn.detach()
            stats["value_loss"] = value_loss_b.detach().mean()
        else:
            baseline_bn = torch.zeros_like(returns_bn)
        advantage_bn = returns_bn - baseline_bn
        loss = (loss_b - (advantage_bn * logp_bn).sum(dim=1)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        stats["loss"] = loss.detach()
        stats["mean_advantage"] = advantage_bn.mean(dim=1).mean()
        return stats

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything learned, with every tensor on the CPU (loadable on any device)."""
        return {
            "policy_net": cpu_state(self.policy_net.state_dict()),
            "value_net": None if self.value_net is None else cpu_state(self.value_net.state_dict()),
            "optimizer": cpu_state(self.optimizer.state_dict()),
            "average_return": self.average_return_n.copy(),
            "rng": self._rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; tensors go to the agent's device."""
        try:
            self.policy_net.load_state_dict(state["policy_net"])
            if self.value_net is not None:
                self.value_net.load_state_dict(state["value_net"])
        except RuntimeError as err:  # torch reports shape mismatches as RuntimeError
            raise ValueError(f"the state does not fit this agent: {err}") from err
        # torch moves the moments to each parameter's device
        self.optimizer.load_state_dict(state["optimizer"])
        self.average_return_n = check_state_array(
            "average_return", state["average_return"], self.average_return_n.shape
        )
        self._load_rng_state(state.get("rng"))
