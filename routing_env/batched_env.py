"""The routing game one minibatch at a time: the batched adapter of the engine.

:class:`BatchedRoutingEnv` plays the same game as the AEC env (:mod:`routing_env.env`)
on the same :class:`~routing_env.engine.RoutingEngine`, with one ``step`` deciding one
depth for every sample of a minibatch instead of one decision of one sample. The rules,
rewards, selection counts and block training are the engine's, shared by both paths.
See :class:`BatchedRoutingEnv` for the interface.

Shape legend: ``B`` samples of the minibatch, ``A`` actions, ``D`` observation width.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import torch

from routing_env.engine import BatchOutcome, BlockTrainingStatus, RoutedBatch, RoutingEngine
from routing_env.env import RoutingEnv

__all__ = ["BatchObservation", "BatchedRoutingEnv", "batched_env"]


class BatchObservation(Mapping[str, Any]):
    """What the agents see at one step of the batched game, one row per sample.

    A read-only mapping with the keys of the AEC observation, batched:

    - ``"observation"``: ``B x D`` float32 torch tensor on the network's device, the
      current representations flattened and zero-padded to ``D`` (as in the AEC env).
      Computed only when read: tabular agents never pay for it.
    - ``"task"``: int64 array ``(B,)``.
    - ``"depth"``: int64 array ``(B,)`` (every sample is at the same depth).
    - ``"action_mask"``: int8 array ``B x A`` (``B x K`` for the dispatcher).

    and two more: ``"agent"`` (int64 ``(B,)``: index into ``env.possible_agents`` of the
    agent deciding for each sample) and ``"sample_index"`` (int64 ``(B,)``: index of each
    sample in its split). :meth:`select` restricts it to some rows (e.g. one agent's).
    """

    KEYS = ("observation", "task", "depth", "action_mask", "agent", "sample_index")

    def __init__(
        self,
        *,
        task: np.ndarray,
        depth: np.ndarray,
        action_mask: np.ndarray,
        agent: np.ndarray,
        sample_index: np.ndarray,
        representation: Any,
    ) -> None:
        self._arrays = {
            "task": task,
            "depth": depth,
            "action_mask": action_mask,
            "agent": agent,
            "sample_index": sample_index,
        }
        self._representation = representation  # a tensor, or a callable computing it

    def __getitem__(self, key: str) -> Any:
        if key == "observation":
            if callable(self._representation):
                self._representation = self._representation()
            return self._representation
        try:
            return self._arrays[key]
        except KeyError:
            raise KeyError(f"a batch observation has the keys {self.KEYS}, not {key!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)

    @property
    def size(self) -> int:
        """``B``, the number of rows."""
        return int(self._arrays["task"].shape[0])

    def select(self, rows: np.ndarray) -> BatchObservation:
        """The observation of ``rows`` only (int positions or a bool mask), in their order."""
        rows = np.asarray(rows)
        if rows.dtype == np.bool_:
            rows = np.flatnonzero(rows)
        source = self._representation

        def representation() -> torch.Tensor:
            full = source() if callable(source) else source
            return full[torch.from_numpy(rows).to(full.device)]

        return BatchObservation(
            representation=representation if callable(source) else representation(),
            **{k: v[rows] for k, v in self._arrays.items()},
        )

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as an AEC observation dict (``observation`` as a float32 NumPy array)."""
        return {
            "observation": self["observation"][i].detach().cpu().numpy(),
            "task": int(self._arrays["task"][i]),
            "depth": int(self._arrays["depth"][i]),
            "action_mask": self._arrays["action_mask"][i],
        }


class BatchedRoutingEnv(BlockTrainingStatus):
    """The routing game of :class:`~routing_env.env.RoutingEnv`, one minibatch per step.

    ## Description
    An episode routes one minibatch of ``batch_size`` samples: ``reset()`` draws it (all
    samples at depth 0) and each ``step(actions)`` decides one depth for every sample.
    With the dispatched configuration the first step of an episode is the
    dispatcher's (``actions`` = a router index per sample). After the last depth the
    predictions are judged, the env trains the trunk and blocks with one optimizer
    step on the minibatch (in training), and the episode is done.

    It shares the engine with an AEC env (``BatchedRoutingEnv(env=aec_env)`` or
    ``routing_env.batched_env(**kwargs)``, which builds one): the same network, selection
    counts, data order, evaluation counters and checkpoints (``state_dict`` /
    ``load_state_dict`` are the AEC env's), so a run can go on in either path.

    ## Same game, another order
    Rewards and the block training are the per-sample path's: a depth's collaboration
    reward for sample ``i`` counts the selections of samples ``0..i-1`` at that depth (as
    when samples are routed one after another), and with the same routes both paths
    give the same rewards and bit-identical weights (tests/env/test_batched.py). What
    differs is when the agents see things: every sample of a minibatch decides with the
    policies as they were when the minibatch began, and agents learn from the
    minibatch's traces (in sample order) after it is routed. Observations are the block
    outputs computed for training, so blocks with batch norm or dropout show their
    training-mode output (the AEC env runs them in eval mode for observations).

    ## Observation, action, reward
    ``reset()`` and ``step()`` return a :class:`BatchObservation`. ``actions``: ``B``
    integers (NumPy array, torch tensor or sequence). ``step`` returns
    ``(observation, rewards, done, info)``: ``rewards`` float64 ``(B,)`` (``rho`` x
    historical selection frequency, plus on the last depth +1/-1 or ``-loss``);
    ``observation`` is None once ``done``; ``info`` holds ``"task"``, ``"sample_index"``, ``"collaboration_reward"``,
    ``"final_reward"``, ``"correct"``, ``"loss"`` (arrays or None), ``"agent"``,
    ``"depth"``, ``"trained"`` and ``"mode"``. The dispatcher's step has reward 0; its
    reward for each sample is the sample's final reward (``info["final_reward"]``).

    ## Evaluation
    ``reset(options={"mode": "eval"})`` starts a pass over the test split in order, one
    minibatch per episode, without training; ``reset()`` goes on with the next
    minibatch; ``evaluation()`` reports the accuracy; ``eval_pass_complete`` turns True
    after the last test sample, and a further ``reset()`` in eval mode raises.

    ## Bad input
    Actions of the wrong shape or dtype, out of range or masked for some sample raise
    ``TypeError``/``ValueError`` naming the first such sample and what was allowed, and
    change nothing. A non-finite block output raises ``FloatingPointError`` naming the
    sample and block before anything changes (``on_nonfinite="skip"``: the minibatch is
    routed and its training step skipped with a warning).
    """

    def __init__(self, *, env: RoutingEnv | None = None, **kwargs: Any) -> None:
        if env is None:
            env = RoutingEnv(**kwargs)
        elif kwargs:
            raise TypeError(f"pass either env= or the env's arguments, not both (got {sorted(kwargs)})")
        unwrapped: Any = getattr(env, "unwrapped", env)
        if not isinstance(unwrapped, RoutingEnv):
            raise TypeError(f"env must be a routing_env.RoutingEnv, got {type(env).__name__}")
        env = unwrapped
        self.aec_env = env
        self.engine: RoutingEngine = env.engine
        self.possible_agents: list[str] = list(env.possible_agents)
        self.routers: list[str] = list(env.routers)
        self.dispatcher: str | None = env.dispatcher
        self.router_config = env.router_config
        self.num_tasks = env.num_tasks
        self.num_decisions = env.num_decisions
        self.num_actions = env.num_actions
        self.observation_width = env.observation_width
        self.pass_action = env.pass_action
        self._agent_id = {a: i for i, a in enumerate(self.possible_agents)}
        self._router_ids = np.array([self._agent_id[r] for r in self.routers], dtype=np.int64)
        # the agent id of each task's router (the AEC env's mapping); the dispatcher decides instead
        self._router_of_task_T = np.array(
            [self._agent_id[env.router_of_task(t) or self.routers[0]] for t in range(self.num_tasks)],
            dtype=np.int64,
        )
        self._batch: RoutedBatch | None = None
        self._dispatching = False
        self._router_of_B: np.ndarray | None = None

    # ------------------------------------------------------------------ spaces
    @property
    def dataset(self) -> Any:
        return self.aec_env.dataset

    @property
    def network(self) -> Any:
        return self.aec_env.network

    def observation_space(self, agent: str) -> Any:
        return self.aec_env.observation_space(agent)

    def action_space(self, agent: str) -> Any:
        return self.aec_env.action_space(agent)

    @property
    def mode(self) -> Literal["train", "eval"]:
        return self.engine.mode

    @property
    def batch(self) -> RoutedBatch | None:
        """The minibatch being routed (None between episodes)."""
        return self._batch

    # ------------------------------------------------------------------ episodes
    def reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None) -> BatchObservation:
        """Draw the next minibatch; ``seed`` starts a new run, ``options`` as the AEC env's.

        Raises:
            RuntimeError: In eval mode once the test split has been routed.
        """
        env = self.aec_env
        env._start_reset(seed, options)
        env.agents, env._episode_over = [], True  # an AEC episode in flight ends here
        self._batch = None
        self._batch = self.engine.begin_batch()
        self._dispatching = self.dispatcher is not None
        self._router_of_B = None if self._dispatching else self._routers_by_task(self._batch.task_B)
        return self._observe()

    def _routers_by_task(self, task_B: np.ndarray) -> np.ndarray:
        return self._router_of_task_T[task_B]

    def _observe(self) -> BatchObservation:
        batch = self._batch
        assert batch is not None
        B = batch.size
        groups = batch.groups  # this depth's representations, also when read later

        def representation() -> torch.Tensor:
            return self.engine.batch_representation(batch, groups)

        if self._dispatching:
            assert self.dispatcher is not None
            return BatchObservation(
                task=batch.task_B,
                depth=np.zeros(B, dtype=np.int64),
                action_mask=np.ones((B, len(self.routers)), dtype=np.int8),
                agent=np.full(B, self._agent_id[self.dispatcher], dtype=np.int64),
                sample_index=batch.sample_index_B,
                representation=representation,
            )
        assert self._router_of_B is not None
        return BatchObservation(
            task=batch.task_B,
            depth=np.full(B, batch.depth, dtype=np.int64),
            action_mask=self.engine.batch_masks(batch),
            agent=self._router_of_B,
            sample_index=batch.sample_index_B,
            representation=representation,
        )

    def step(self, actions: Any) -> tuple[BatchObservation | None, np.ndarray, bool, dict[str, Any]]:
        """Decide one depth (or the dispatch) for every sample of the minibatch.

        Returns:
            ``(observation, rewards, done, info)``; see the class docstring.
        """
        batch = self._batch
        if batch is None:
            raise RuntimeError("no minibatch is being routed; call reset() first")
        if self.engine.routed_batch is not batch:
            self._batch = None
            raise RuntimeError(
                "the minibatch was dropped (the AEC env or a mode switch used the engine); call reset()"
            )
        if self._dispatching:
            return self._dispatch(batch, actions)
        assert self._router_of_B is not None
        agent_B, depth = self._router_of_B, batch.depth
        outcome: BatchOutcome = self.engine.batch_act(batch, actions)
        rewards = outcome.collaboration_reward_B
        if outcome.final_reward_B is not None:
            rewards = rewards + outcome.final_reward_B
        info = {
            "task": batch.task_B,
            "sample_index": batch.sample_index_B,
            "collaboration_reward": outcome.collaboration_reward_B,
            "final_reward": outcome.final_reward_B,
            "correct": outcome.correct_B,
            "loss": outcome.loss_B,
            "agent": agent_B,
            "depth": depth,
            "trained": outcome.trained,
            "mode": batch.mode,
        }
        if outcome.done:
            self._batch = None
            return None, rewards, True, info
        return self._observe(), rewards, False, info

    def _dispatch(
        self, batch: RoutedBatch, actions: Any
    ) -> tuple[BatchObservation, np.ndarray, bool, dict[str, Any]]:
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        array = np.asarray(actions)
        K = len(self.routers)
        if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"dispatcher actions must be router indices (ints); got dtype {array.dtype}")
        if array.shape != (batch.size,):
            raise ValueError(
                f"expected one router index per sample, shape ({batch.size},), got {array.shape}"
            )
        bad = np.flatnonzero((array < 0) | (array >= K))
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"dispatcher action {int(array[i])} of sample {i} is out of range; expected a router index in [0, {K})"
            )
        self._router_of_B = self._router_ids[array.astype(np.int64)]
        self._dispatching = False
        info = {
            "task": batch.task_B,
            "sample_index": batch.sample_index_B,
            "collaboration_reward": np.zeros(batch.size),
            "final_reward": None,
            "correct": None,
            "loss": None,
            "agent": np.full(batch.size, self._agent_id[self.dispatcher or ""], dtype=np.int64),
            "depth": 0,
            "trained": False,
            "mode": batch.mode,
        }
        return self._observe(), np.zeros(batch.size), False, info

    # ------------------------------------------------------------------ extras
    def set_mode(self, mode: Literal["train", "eval"]) -> None:
        """Switch between training and evaluation (drops the minibatch being routed)."""
        self.aec_env.set_mode(mode)
        self._batch = None

    def evaluation(self) -> dict[str, Any]:
        """Accuracy (or loss) per task of the test samples routed since eval mode began."""
        return self.engine.evaluation()

    @property
    def eval_pass_complete(self) -> bool:
        return self.engine.eval_pass_complete

    def state_dict(self) -> dict[str, Any]:
        """The run's state, in the AEC env's format (call it between episodes)."""
        return self.aec_env.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a run saved by either path; call ``reset()`` (no seed) next."""
        self.aec_env.load_state_dict(state)
        self._batch = None


def batched_env(**kwargs: Any) -> BatchedRoutingEnv:
    """A :class:`BatchedRoutingEnv` on a new :class:`RoutingEnv` built from ``kwargs``."""
    return BatchedRoutingEnv(**kwargs)
