"""The batched routing game as a TorchRL ``EnvBase`` (extra ``torchrl``).

:class:`BatchedTorchRLEnv` puts :class:`~routing_env.BatchedRoutingEnv` (one ``step``
decides one depth for every sample of a minibatch) under TorchRL's standard interface,
so TorchRL's collectors, losses and BenchMARL-style training loops act on a whole
minibatch per step instead of one routing decision per step.

The env is a TorchRL env with ``batch_size=[N]``: row ``i`` of every entry is sample
``i`` of the minibatch being routed, and ``N`` is the larger of the training and
evaluation minibatch sizes (equal when the env builds the routing env itself). A minibatch with fewer samples (the last one of an epoch or
of the test split) fills its first rows; the rest are padding, marked ``valid=False``,
with reward 0 and only action 0 allowed. Every row of a minibatch starts and ends its
episode together: ``reset`` draws a minibatch, each ``step`` decides one depth (with the
dispatched configuration, the first step is the dispatcher's), and the episode is done
after the last depth, when the env has trained its blocks on the minibatch.

Entries (``N`` rows, ``A`` actions: the number of blocks, or of routers at a dispatch
step when there are more routers than blocks):

=====================  ===================  ==========================================
key                    shape, dtype         meaning
=====================  ===================  ==========================================
``"observation"``      ``N x D`` float32    the current representation, flattened and
                                            zero-padded, as in the AEC env (left out
                                            with ``representation=False``)
``"task"``             ``N`` int64          the sample's task
``"depth"``            ``N`` int64          the decision's depth (0 at a dispatch)
``"agent"``            ``N`` int64          index into ``possible_agents`` of the agent
                                            deciding for the row (router or dispatcher)
``"action_mask"``      ``N x A`` bool       the allowed actions
``"valid"``            ``N`` bool           False on padding rows
``"action"``           ``N`` int64          block (or router) index
``"reward"``           ``N x 1`` float32    as the AEC env's: rho x selection frequency,
                                            plus +1/-1 (or -loss) at the last depth; 0 at
                                            a dispatch step and on padding rows
``"done"``             ``N x 1`` bool       after the last depth (``"terminated"`` too)
=====================  ===================  ==========================================

A per-task algorithm reads ``"agent"`` (or ``"task"``) to pick the router's parameters
and masks its loss with ``"valid"``. The rewards, routes and trained weights are the
batched env's, which are the AEC env's under the same routes (a test checks it).

Evaluation: :meth:`BatchedTorchRLEnv.set_mode` switches the next ``reset`` to a pass over
the evaluation split (``"eval"``) or back to training, and :func:`evaluate_batched_policy`
routes the whole test split greedily with a TorchRL policy and returns the env's
``evaluation()``. ``examples/torchrl_batched_routers.py`` trains per-task routers with
TorchRL's PPO loss through this env.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from routing_env.batched_env import BatchedRoutingEnv, BatchObservation
from routing_env.engine import TrainingConfig
from routing_env.extras import import_extra

import_extra(
    "torchrl.envs",
    feature="routing_env.integrations.torchrl_batched",
    extra="torchrl",
    package="torchrl>=0.14,<0.15",
)

from tensordict import TensorDict, TensorDictBase  # noqa: E402
from tensordict.nn import TensorDictModuleBase  # noqa: E402
from torchrl.data import Binary, Categorical, Composite, Unbounded  # noqa: E402
from torchrl.envs import EnvBase  # noqa: E402

__all__ = ["BatchedTorchRLEnv", "evaluate_batched_policy"]


class BatchedTorchRLEnv(EnvBase):
    """The batched routing game, one minibatch per TorchRL step (see the module docstring).

    Args:
        env: A :class:`~routing_env.BatchedRoutingEnv` (or a routing AEC env, whose engine
            it then shares). Omitted: one is built from ``kwargs``
            (``routing_env.batched_env(**kwargs)``).
        representation: Include ``"observation"`` (the representation v). A policy that
            reads only ``agent``, ``task`` and ``depth`` (a tabular router) runs faster
            without it: the env then never flattens the block outputs for it.
        device: Where the tensordicts live (the network stays where the env put it).
        **kwargs: The routing env's arguments, when ``env`` is omitted; then
            ``eval_batch_size`` defaults to the training ``batch_size`` (evaluation
            results do not depend on it), so that no row is padding in either mode.

    Raises:
        TypeError: When ``env`` is neither a batched nor an AEC routing env, or both
            ``env`` and ``kwargs`` are given.
    """

    def __init__(
        self,
        env: Any = None,
        *,
        representation: bool = True,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> None:
        if env is None:
            if "eval_batch_size" not in kwargs and kwargs.get("training") is None:
                # evaluate in minibatches of the training size: no padding rows in either mode
                preset = TrainingConfig.preset(kwargs.get("preset", "default"))
                kwargs["eval_batch_size"] = kwargs.get("batch_size", preset.batch_size)
            batched = BatchedRoutingEnv(**kwargs)
        elif kwargs:
            raise TypeError(f"pass either env= or the env's arguments, not both (got {sorted(kwargs)})")
        elif isinstance(env, BatchedRoutingEnv):
            batched = env
        else:
            batched = BatchedRoutingEnv(env=env)
        self.routing = batched
        self.representation = bool(representation)
        training = batched.engine.training
        rows = max(int(training.batch_size), int(training.eval_batch_size))
        super().__init__(batch_size=torch.Size([rows]), device=device)
        self.rows = rows
        routers = len(batched.routers)
        self.num_choices = max(batched.num_actions, routers if batched.dispatcher else 0)
        self.num_agents = len(batched.possible_agents)
        self._seed: int | None = None
        self._options: dict[str, Any] | None = None
        self._done = True
        D, A, N = batched.observation_width, self.num_choices, rows
        observation = (
            {"observation": Unbounded(shape=(N, D), dtype=torch.float32, device=self.device)}
            if self.representation
            else {}
        )
        self.observation_spec = Composite(
            **observation,
            task=Categorical(batched.num_tasks, shape=(N,), dtype=torch.int64, device=self.device),
            depth=Categorical(batched.num_decisions, shape=(N,), dtype=torch.int64, device=self.device),
            agent=Categorical(self.num_agents, shape=(N,), dtype=torch.int64, device=self.device),
            action_mask=Binary(n=A, shape=(N, A), dtype=torch.bool, device=self.device),
            valid=Categorical(2, shape=(N,), dtype=torch.bool, device=self.device),
            shape=(N,),
            device=self.device,
        )
        self.action_spec = Categorical(A, shape=(N,), dtype=torch.int64, device=self.device)
        self.reward_spec = Unbounded(shape=(N, 1), dtype=torch.float32, device=self.device)
        self.done_spec = Composite(
            done=Categorical(2, shape=(N, 1), dtype=torch.bool, device=self.device),
            terminated=Categorical(2, shape=(N, 1), dtype=torch.bool, device=self.device),
            truncated=Categorical(2, shape=(N, 1), dtype=torch.bool, device=self.device),
            shape=(N,),
            device=self.device,
        )

    # ------------------------------------------------------------------ modes
    def set_mode(
        self, mode: Literal["train", "eval"], *, split: Literal["test", "validation"] = "test"
    ) -> None:
        """Make the next ``reset`` draw training minibatches, or start a pass over the test
        split (``"eval"``) or the dataset's validation split (``"eval"``, ``split="validation"``)."""
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if split not in ("test", "validation"):
            raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
        if mode == "eval":
            self.routing.engine.check_eval_split(split)
        self._options = {"mode": mode} if mode == "train" else {"mode": mode, "split": split}

    @property
    def eval_pass_complete(self) -> bool:
        """True once the evaluation pass has routed its last sample."""
        return self.routing.eval_pass_complete

    def evaluation(self) -> dict[str, Any]:
        """The routing env's accuracy per task of the evaluation samples routed so far."""
        return self.routing.evaluation()

    # ------------------------------------------------------------------ EnvBase
    def _set_seed(self, seed: int | None) -> None:
        self._seed = seed  # the next reset starts a new routing run with it

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        reset = None if tensordict is None else tensordict.get("_reset", None)
        if not self._done and reset is not None and not bool(reset.all()):
            raise ValueError("the rows of a minibatch are reset together; reset every row")
        seed, options = self._seed, self._options
        self._seed = self._options = None
        observation = self.routing.reset(seed=seed, options=options)
        self._done = False
        return self._observe(observation)

    def _observe(self, observation: BatchObservation | None) -> TensorDictBase:
        N, A, D = self.rows, self.num_choices, self.routing.observation_width
        valid = torch.zeros(N, dtype=torch.bool)
        mask = torch.zeros(N, A, dtype=torch.bool)
        mask[:, 0] = True  # padding rows (and the rows after the last depth) allow action 0
        task = torch.zeros(N, dtype=torch.int64)
        depth = torch.zeros(N, dtype=torch.int64)
        agent = torch.zeros(N, dtype=torch.int64)
        features = torch.zeros(N, D, dtype=torch.float32) if self.representation else None
        if observation is not None:
            B = observation.size
            valid[:B] = True
            allowed = torch.from_numpy(np.asarray(observation["action_mask"], dtype=bool))
            mask[:B] = False
            mask[:B, : allowed.shape[1]] = allowed
            task[:B] = torch.from_numpy(observation["task"])
            depth[:B] = torch.from_numpy(observation["depth"])
            agent[:B] = torch.from_numpy(observation["agent"])
            if features is not None:
                features[:B] = observation["observation"].detach().to("cpu", torch.float32)
        self.action_spec.update_mask(mask.to(self.device))  # rand_action() draws allowed actions
        entries = {"task": task, "depth": depth, "agent": agent, "action_mask": mask, "valid": valid}
        if features is not None:
            entries["observation"] = features
        return TensorDict(entries, batch_size=self.batch_size).to(self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._done:
            raise RuntimeError("the minibatch's episode is over; reset the env")
        batch = self.routing.batch
        assert batch is not None
        B = batch.size
        action = tensordict["action"].detach().to("cpu", torch.int64).reshape(-1)
        if action.shape != (self.rows,):
            raise ValueError(f"expected one action per row, shape ({self.rows},), got {tuple(action.shape)}")
        observation, rewards_B, done, _ = self.routing.step(action[:B].numpy())
        reward = torch.zeros(self.rows, 1, dtype=torch.float32)
        reward[:B, 0] = torch.from_numpy(np.asarray(rewards_B, dtype=np.float32))
        self._done = done
        out = self._observe(observation)
        flag = torch.full((self.rows, 1), done, dtype=torch.bool, device=self.device)
        out.update(
            {
                "reward": reward.to(self.device),
                "done": flag,
                "terminated": flag.clone(),
                "truncated": torch.zeros_like(flag),
            }
        )
        return out


def evaluate_batched_policy(
    env: BatchedTorchRLEnv, policy: TensorDictModuleBase, *, split: Literal["test", "validation"] = "test"
) -> dict[str, Any]:
    """Route the whole test (or validation) split with ``policy`` acting deterministically.

    Nothing is trained. The env goes back to training minibatches afterwards (the next
    ``reset`` draws one). Choose hyper-parameters on ``split="validation"`` (a dataset
    with a validation split: ``routing_env.datasets.split_validation``), never on the test split.

    Returns:
        ``evaluation()`` of the routing env: ``{"accuracy", "accuracy_per_task", "samples",
        "complete"}`` (``loss`` keys for regression).
    """
    from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

    if not isinstance(env, BatchedTorchRLEnv):
        raise TypeError(f"expected a BatchedTorchRLEnv, got {type(env).__name__}")
    env.set_mode("eval", split=split)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        td = env.reset()
        while True:
            td = env.step(policy(td))
            if bool(td["next", "done"].all()):
                if env.eval_pass_complete:
                    break
                td = env.reset()
            else:
                td = step_mdp(td)
    result = env.evaluation()
    env.set_mode("train")
    return result
