"""The dispatching agent of the dispatched configuration (Figure 3c of the paper).

In the dispatched configuration the dispatcher is given ``concat(v, one-hot(t))`` of
a fresh sample and predicts which of the ``K`` router agents routes it (appendix
7.3); its reward is the final reward of the sample it dispatched. It makes one
decision per sample, so it is a REINFORCE agent with a single MLP whatever the
``"depth"`` entry of its observation space allows.

The single-agent configuration (Figure 3a) needs no special agent: it is one
learner for ``router_0``, see :meth:`agents.multi.MultiAgentRouter.from_env`.
"""

from __future__ import annotations

from typing import Literal

import gymnasium
import numpy as np

from agents.base import Observation, SeedLike
from agents.networks import DeviceLike, batch_inputs
from agents.reinforce import Baseline, Reinforce

__all__ = ["Dispatcher"]


class Dispatcher(Reinforce):
    """A REINFORCE agent with one 2-layer MLP that picks a router agent for each sample.

    Args:
        observation_space: The dispatcher's observation space (same keys as a
            router's; its action mask has length ``K``).
        action_space: ``Discrete(K)``, one action per router agent.
        lr: Learning rate of the optimizer (> 0).
        optimizer: ``"adam"`` or ``"sgd"``.
        baseline: ``"average"``, ``"value"`` or ``"none"``.
        baseline_rate: Rate of the running average baseline, in ``(0, 1]``.
        hidden_width: Hidden units of the MLP (the paper: 64).
        update: ``"trace"`` or ``"minibatch"``, how :meth:`learn_batch` trains (see
            :class:`~agents.Reinforce`).
        seed: Seed or Generator (also seeds the agent's torch generator).
        device: Where the MLP and the optimizer's state live (see :class:`Reinforce`).

    The batched path (:meth:`act_batch`, :meth:`learn_batch`) is :class:`Reinforce`'s
    with every row at the MLP's single depth.

    Raises:
        ValueError: On a bad hyper-parameter, mismatched spaces or an unusable ``device``.
    """

    def __init__(
        self,
        *,
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        lr: float = 1e-2,
        optimizer: Literal["adam", "sgd"] = "adam",
        baseline: Baseline = "average",
        baseline_rate: float = 0.01,
        hidden_width: int = 64,
        update: Literal["trace", "minibatch"] = "trace",
        seed: SeedLike = None,
        device: DeviceLike = "cpu",
    ) -> None:
        super().__init__(
            observation_space=observation_space,
            action_space=action_space,
            representation="mlp",
            lr=lr,
            optimizer=optimizer,
            gamma=1.0,
            baseline=baseline,
            baseline_rate=baseline_rate,
            hidden_width=hidden_width,
            update=update,
            seed=seed,
            num_depths=1,
            device=device,
        )

    def _net_depths(self) -> int:
        return 1

    def _net_depth(self, depth: int) -> int:
        return 0

    def check_observation(self, obs: Observation) -> tuple[int, np.ndarray]:
        # the dispatcher decides once per sample: its depth is always 0
        _, mask = super().check_observation({**obs, "depth": 0})
        return 0, mask

    def _batch_inputs(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        # every row at the single MLP's depth 0, whatever its "depth" entry says
        _, mask_BA = batch_inputs(obs, num_actions=self.num_actions, num_depths=None)
        return np.zeros(len(mask_BA), dtype=np.int64), mask_BA
