"""The routing game without PettingZoo: samples, decisions, rewards and block training.

:class:`RoutingEngine` routes one sample at a time through a :class:`RoutingNetwork`
(Algorithm 1), hands out the rewards of section 3.1.1, and trains the trunk and the
chosen blocks (Algorithm 2, step 3): samples are taken in minibatches; the trunk runs
once per minibatch, each sample's decisions are applied one by one (no gradient) to
produce the observations, and when the minibatch is routed one optimizer step is taken
on the whole minibatch, grouped by block, backpropagating only through the blocks each
sample used. The AEC adapter in :mod:`routing_env.env` only adds agents and turns.

Shape legend: ``N`` samples, ``B`` minibatch, ``n`` decisions, ``A`` actions,
``K`` classes, ``T`` tasks.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from routing_env.datasets.base import MultiTaskDataset, TaskSplit
from routing_env.network import RoutingNetwork
from routing_env.rewards import collaboration_reward, final_reward

__all__ = ["RoutingEngine", "StepOutcome", "TrainingConfig"]

Mode = Literal["train", "eval"]


@dataclass(frozen=True)
class TrainingConfig:
    """How the environment trains the trunk and the function blocks.

    Attributes:
        batch_size: Samples per optimizer step (the last minibatch of an epoch may be
            smaller).
        lr: Initial learning rate (the paper: 1e-2).
        optimizer: ``"sgd"`` (the paper's choice) or ``"adam"``.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        lr_decay_every: Multiply the learning rate by ``lr_decay_factor`` every this
            many epochs (the paper divides it by 10 every 20 epochs); None: constant.
        lr_decay_factor: Factor of each decay.
        on_nonfinite: ``"raise"``: a non-finite loss stops training with
            ``FloatingPointError`` naming the update and the blocks; ``"skip"``: the
            minibatch is dropped with a warning and training goes on.
    """

    batch_size: int = 64
    lr: float = 1e-2
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_decay_every: int | None = 20
    lr_decay_factor: float = 0.1
    on_nonfinite: Literal["raise", "skip"] = "raise"

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.lr_decay_every is not None and self.lr_decay_every < 1:
            raise ValueError(f"lr_decay_every must be >= 1 or None, got {self.lr_decay_every}")
        if not 0.0 < self.lr_decay_factor <= 1.0:
            raise ValueError(f"lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}")
        if self.on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {self.on_nonfinite!r}")


@dataclass(frozen=True)
class StepOutcome:
    """What one routing decision produced."""

    collaboration_reward: float
    final_reward: float
    sample_done: bool
    correct: bool | None
    loss: float | None
    trained: bool


class _Minibatch:
    """Samples routed together: their trunk output (with graph, in training) and routes.

    Per-sample values the routing loop reads on every decision (indices, tasks,
    targets, the detached trunk output rows) are unpacked once per minibatch into
    Python lists, so a decision does no tensor indexing.
    """

    def __init__(
        self,
        indices_B: torch.Tensor,
        trunk_out_B: torch.Tensor,
        split: TaskSplit,
        num_decisions: int,
        rng_state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.indices_B = indices_B
        self.trunk_out_B = trunk_out_B
        self.index_list: list[int] = indices_B.tolist()
        self.task_list: list[int] = split.tasks_N[indices_B].tolist()
        self.target_list: list[Any] = split.targets_N[indices_B].tolist()
        self.rng_state = rng_state  # torch's generators before the trunk ran (to recompute it)
        self.regraph = False  # True on a copy: the trunk output lost its graph
        self._unpack_rows()
        self.routes_Bn = np.full((len(indices_B), num_decisions), -1, dtype=np.int64)
        self.done_B = np.zeros(len(indices_B), dtype=bool)
        self.size = len(self.index_list)
        self.next = 0  # position of the next sample to route

    @property
    def exhausted(self) -> bool:
        return self.next >= self.size

    # A training minibatch holds the trunk output with its autograd graph, which neither
    # pickle nor deepcopy can carry. A copy keeps the values and is marked; the engine
    # that owns the copy recomputes the graph (same inputs, same weights, same random
    # state, the trunk's buffers left as they are) before training on it, so a copy
    # trains exactly as the original does.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        out = self.trunk_out_B
        state["regraph"] = self.regraph or (out.requires_grad and out.grad_fn is not None)
        state["trunk_out_B"] = out.detach().clone()
        del state["rows"], state["rows_np"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._unpack_rows()

    def __deepcopy__(self, memo: dict[int, Any]) -> _Minibatch:
        clone = _Minibatch.__new__(_Minibatch)
        memo[id(self)] = clone
        clone.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return clone

    def _unpack_rows(self) -> None:
        rows = self.trunk_out_B.detach()
        self.rows = rows.split(1)  # 1 x ... views, no graph
        # flat float32 CPU rows also as NumPy, for the network's array path
        flat = rows.dim() == 2 and rows.dtype == torch.float32 and rows.device.type == "cpu"
        self.rows_np: np.ndarray | None = rows.numpy() if flat else None


class RoutingEngine:
    """Routes samples of a dataset through a routing network and trains its blocks.

    Args:
        dataset: The multi-task data.
        network: The routing network; its last layer's width must cover every task's
            classes.
        training: Block-training settings.
        rho: Weight of the collaboration reward, in [0, 1].
        device: Torch device of the network.
        reinitialize: On :meth:`restart`, re-draw every parameter from the seed
            (``reset_parameters``); when False, restore the weights the network had
            when the engine was built.
    """

    def __init__(
        self,
        *,
        dataset: MultiTaskDataset,
        network: RoutingNetwork,
        training: TrainingConfig,
        rho: float = 0.0,
        device: str | torch.device = "cpu",
        reinitialize: bool = True,
    ) -> None:
        if not isinstance(dataset, MultiTaskDataset):
            raise TypeError(f"dataset must be a MultiTaskDataset, got {type(dataset).__name__}")
        if not isinstance(network, RoutingNetwork):
            raise TypeError(f"network must be a RoutingNetwork, got {type(network).__name__}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"collaboration reward rho must be in [0, 1], got {rho}")
        if tuple(dataset.input_shape) != tuple(network.input_shape):
            raise ValueError(
                f"dataset {dataset.name!r} has inputs of shape {dataset.input_shape} but the network "
                f"was built for {network.input_shape}"
            )
        needed = 1 if dataset.is_regression else max(dataset.num_classes)
        if network.output_size != needed:
            raise ValueError(
                f"the network predicts {network.output_size} outputs but dataset {dataset.name!r} needs "
                f"{needed} ({'regression' if dataset.is_regression else 'max classes over tasks'})"
            )
        self.dataset = dataset
        self.network = network.to(device)
        self.training = training
        self.rho = float(rho)
        self.device = torch.device(device)
        self.regression = dataset.is_regression
        self.num_decisions = network.num_decisions
        self.num_actions = network.num_actions
        self._initial_state = None if reinitialize else copy.deepcopy(network.state_dict())
        # a task with fewer classes than the classifier width never predicts the others
        if not self.regression and len(set(dataset.num_classes)) > 1:
            k = torch.arange(network.output_size)
            self._class_mask_TK: torch.Tensor | None = k[None, :] < torch.tensor(dataset.num_classes)[:, None]
        else:
            self._class_mask_TK = None
        self._started = False

    # ------------------------------------------------------------------ runs
    def _reset_weights(self, seed: int) -> None:
        """Draw fresh weights from ``seed`` with torch's CPU generator, on any device.

        A GPU network is re-initialized on a CPU copy and loaded back in place, so a seed
        gives the same initial weights on CPU and GPU (CUDA's generator draws other
        numbers). No other generator, the global CUDA ones included, is touched.
        """
        on_cpu = all(t.device.type == "cpu" for t in self.network.state_dict().values())
        target = self.network if on_cpu else copy.deepcopy(self.network).cpu()
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            for module in target.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
        if not on_cpu:
            self.network.load_state_dict(target.state_dict())  # copies in place: same parameters

    def restart(self, seed: int) -> None:
        """Start a fresh run: weights, optimizer, counters and data order from ``seed``."""
        seq = np.random.SeedSequence(seed)
        data_seed, torch_seed = seq.generate_state(2, dtype=np.uint64)
        self.np_random = np.random.default_rng(int(data_seed))
        if self._initial_state is not None:
            self.network.load_state_dict(self._initial_state)
        else:
            self._reset_weights(int(torch_seed) & (2**63 - 1))
        params = [p for p in self.network.parameters() if p.requires_grad]
        cfg = self.training
        if cfg.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        else:
            self.optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.selections_nA = np.zeros((self.num_decisions, self.num_actions), dtype=np.int64)
        self.epoch = 0  # completed training epochs
        self.updates = 0  # optimizer steps taken
        self.skipped_updates = 0
        self.samples_routed = 0  # training samples whose route is complete
        self.mode: Mode = "train"
        self.network.train()
        self._cursor = 0
        self._perm = self.np_random.permutation(len(self.dataset.train))
        self._batch: _Minibatch | None = None
        self._sample: int | None = None  # position in the minibatch of the sample being routed
        self._eval_correct_T = np.zeros(self.dataset.num_tasks, dtype=np.int64)
        self._eval_total_T = np.zeros(self.dataset.num_tasks, dtype=np.int64)
        self._eval_loss_T = np.zeros(self.dataset.num_tasks, dtype=np.float64)
        self._eval_cursor = 0
        self._started = True

    @property
    def started(self) -> bool:
        return self._started

    @property
    def split(self) -> TaskSplit:
        return self.dataset.train if self.mode == "train" else self.dataset.test

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_mode(self, mode: Mode) -> None:
        """Switch between ``"train"`` (route training samples, train blocks) and ``"eval"``.

        Evaluation routes the test split in order without training and without
        counting selections; :meth:`evaluation` reports its accuracy. Switching trains
        on the routed samples of the pending minibatch and drops the rest; entering
        eval restarts the pass over the test split.
        """
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self._require_started()
        self.abandon_sample()
        self._flush()
        if mode == "eval":
            self._eval_correct_T[:] = 0
            self._eval_total_T[:] = 0
            self._eval_loss_T[:] = 0.0
            self._eval_cursor = 0
        self.mode = mode
        self.network.train(mode == "train")

    # --------------------------------------------------------------- samples
    def begin_sample(self) -> None:
        """Draw the next sample of the current split and put it at depth 0."""
        self._require_started()
        if self._sample is not None:
            raise RuntimeError("the previous sample is still being routed; finish or abandon it first")
        if self._batch is None or self._batch.exhausted:
            self._flush()
            self._batch = self._next_batch()
        batch = self._batch
        i = self._sample = batch.next
        batch.next += 1
        self.sample_index = batch.index_list[i]
        self.task = batch.task_list[i]
        self.target = batch.target_list[i]
        self.depth = 0
        self._v: torch.Tensor | None = batch.rows[i]
        self._v_np = None if batch.rows_np is None else batch.rows_np[i]
        self._v_shape: tuple[int, ...] = tuple(batch.rows[i].shape[1:])
        self._mask = self.network.action_mask(0, self._v_shape)

    def abandon_sample(self) -> None:
        """Drop the sample being routed (it is not trained on)."""
        self._sample = None

    @property
    def routing(self) -> bool:
        """True while a sample is being routed."""
        return self._sample is not None

    def action_mask(self) -> np.ndarray:
        """Valid actions for the current sample at its current depth (shared array)."""
        return self._mask

    def representation(self) -> torch.Tensor:
        """The current representation v of the sample being routed (``1 x ...``, no grad)."""
        if self._v is None:
            assert self._v_np is not None
            self._v = torch.from_numpy(self._v_np).view(1, *self._v_shape)
        return self._v

    def representation_array(self) -> np.ndarray:
        """The current representation v, flattened, as a NumPy array (shared: copy it
        before changing it)."""
        if self._v_np is not None:
            return self._v_np
        return self.representation().reshape(-1).cpu().numpy()

    def check_action(self, action: int) -> None:
        """Raise ``ValueError`` if ``action`` is not valid now; changes nothing."""
        if self._sample is None:
            raise RuntimeError("no sample is being routed; call begin_sample() first")
        if not 0 <= action < self.num_actions:
            raise ValueError(f"action {action} is out of range; expected an int in [0, {self.num_actions})")
        if not self.action_mask()[action]:
            allowed = np.flatnonzero(self.action_mask()).tolist()
            raise ValueError(
                f"action {action} is masked at depth {self.depth} (it does not fit the current "
                f"representation or cannot lead to a prediction); allowed actions: {allowed}"
            )

    def act(self, action: int, *, checked: bool = False) -> StepOutcome:
        """Apply ``action`` to the current sample; train when its minibatch is complete.

        ``checked=True`` skips :meth:`check_action` (the caller has just run it).
        """
        if not checked:
            self.check_action(action)
        batch, depth = self._batch, self.depth
        assert batch is not None and self._sample is not None
        train = self.mode == "train"
        collab = 0.0
        if train:
            if self.rho:
                collab = collaboration_reward(
                    rho=self.rho, selections_A=self.selections_nA[depth], action=action
                )
            self.selections_nA[depth, action] += 1
        batch.routes_Bn[self._sample, depth] = action
        self._advance(depth, action)
        self.depth = depth + 1
        if self.depth < self.num_decisions:
            self._mask = self.network.action_mask(self.depth, self._v_shape)
            return StepOutcome(collab, 0.0, False, None, None, False)

        # the route is complete: the last output is the prediction
        correct, loss = self._judge()
        if loss is not None and not math.isfinite(loss):
            message = (
                f"non-finite regression loss ({loss}) on {self.mode} sample {self.sample_index} (task "
                f"{self.task}): its prediction is not finite"
            )
            if self.training.on_nonfinite == "raise":
                raise FloatingPointError(message + " (on_nonfinite='raise')")
            warnings.warn(message + "; its final reward is 0 (on_nonfinite='skip')", stacklevel=3)
            reward = 0.0
        else:
            reward = final_reward(correct=correct, loss=loss if self.regression else None)
        batch.done_B[self._sample] = True
        self._sample = None
        trained = False
        if train:
            self.samples_routed += 1
        else:
            self._eval_total_T[self.task] += 1
            self._eval_correct_T[self.task] += int(bool(correct))
            self._eval_loss_T[self.task] += 0.0 if loss is None else loss
        if batch.exhausted:
            trained = self._flush()
        return StepOutcome(collab, reward, True, correct, loss, trained)

    def _advance(self, depth: int, action: int) -> None:
        """Apply one decision to the current representation (observations only: no graph).

        Flat float32 CPU representations go through the network's NumPy path when the
        block allows it (the default fc blocks), else through torch.
        """
        if self._v_np is not None:
            out = self.network.apply_action_array(depth, action, self._v_np)
            if out is not None:
                self._v, self._v_np, self._v_shape = None, out, out.shape
                return
        with torch.inference_mode():  # no graph, no version counters
            v = self.network.apply_action(depth, action, self.representation())
        self._v, self._v_shape = v, tuple(v.shape[1:])
        flat = v.dim() == 2 and v.dtype == torch.float32 and v.device.type == "cpu"
        self._v_np = v.view(-1).numpy() if flat else None

    def _judge(self) -> tuple[bool | None, float | None]:
        """Correctness (classification) or loss (regression) of one finished route."""
        if self._v_np is not None:
            out = self._v_np
            if self.regression:
                return None, float((float(out[0]) - float(self.target)) ** 2)
            if self._class_mask_TK is not None:
                out = out[: self.dataset.num_classes[self.task]]
            return int(out.argmax()) == self.target, None
        with torch.inference_mode():
            pred_1K = self.representation()
            if self.regression:
                target = torch.tensor([float(self.target)], device=pred_1K.device)
                return None, float(F.mse_loss(pred_1K.view(-1)[:1].float(), target))
            logits = pred_1K[0]
            if self._class_mask_TK is not None:
                logits = logits[: self.dataset.num_classes[self.task]]
            return int(logits.argmax()) == self.target, None

    def _masked_logits(self, logits_NK: torch.Tensor, tasks_N: torch.Tensor) -> torch.Tensor:
        if self._class_mask_TK is None:
            return logits_NK
        return logits_NK.masked_fill(~self._class_mask_TK[tasks_N].to(logits_NK.device), float("-inf"))

    # ------------------------------------------------------------- minibatches
    def _next_batch(self) -> _Minibatch:
        split = self.split
        B = self.training.batch_size
        if self.mode == "train":
            if self._cursor >= len(self._perm):
                self._end_epoch()
            indices = self._perm[self._cursor : self._cursor + B]
            self._cursor += len(indices)
        else:
            if self._eval_cursor >= len(split):
                raise RuntimeError(
                    f"the evaluation pass is complete: all {len(split)} test samples have been routed "
                    "since eval mode began (evaluation() reports them). Call "
                    "reset(options={'mode': 'eval'}) to start another pass, or {'mode': 'train'} to train on"
                )
            indices = np.arange(self._eval_cursor, min(self._eval_cursor + B, len(split)))
            self._eval_cursor += len(indices)
        indices_B = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        self.network.refresh_array_path()
        x = self._inputs(split, indices_B)
        rng_state = None
        if self.mode == "train":
            rng_state = self._rng_state()
            trunk_out = self.network.trunk(x)  # keeps its graph until the minibatch is trained
        else:
            with torch.no_grad():
                trunk_out = self.network.trunk(x)
        return _Minibatch(indices_B, trunk_out, split, self.num_decisions, rng_state)

    def _inputs(self, split: TaskSplit, indices_B: torch.Tensor) -> torch.Tensor:
        return self.dataset.normalize(split.inputs_NCHW[indices_B]).to(self.device)

    def _rng_state(self) -> dict[str, torch.Tensor]:
        """The torch generators a trunk with random layers (dropout) draws from."""
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _regraph(self, batch: _Minibatch) -> None:
        """Recompute the trunk output of a copied minibatch with its autograd graph.

        The copy's trunk has the weights the original's had when the minibatch was drawn
        (blocks train only between minibatches); the generators are set to their state
        before the original forward and the trunk's buffers (batch-norm statistics, which
        the original forward already updated) are put back afterwards, so the copy trains
        on exactly what the original trains on.
        """
        trunk = self.network.trunk
        buffers = {name: b.detach().clone() for name, b in trunk.named_buffers()}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if batch.rng_state is not None:
                torch.set_rng_state(batch.rng_state["cpu"])
                if "cuda" in batch.rng_state:
                    torch.cuda.set_rng_state(batch.rng_state["cuda"], self.device)
            out = trunk(self._inputs(self.dataset.train, batch.indices_B))
        # put the buffers back as new tensors: the graph holds the ones the forward used
        for name, saved in buffers.items():
            owner, _, attr = name.rpartition(".")
            setattr(trunk.get_submodule(owner), attr, saved)
        if not torch.equal(out.detach(), batch.trunk_out_B):
            warnings.warn(
                "a copied env recomputed its pending minibatch's trunk output and got other values "
                "(a non-deterministic trunk or device); it trains on the recomputed ones",
                stacklevel=3,
            )
        batch.trunk_out_B = out
        batch.regraph = False

    def _end_epoch(self) -> None:
        self.epoch += 1
        cfg = self.training
        if cfg.lr_decay_every is not None and self.epoch % cfg.lr_decay_every == 0:
            for group in self.optimizer.param_groups:
                group["lr"] *= cfg.lr_decay_factor
        self._perm = self.np_random.permutation(len(self.dataset.train))
        self._cursor = 0

    @property
    def epoch_progress(self) -> float:
        """Fraction of the current training epoch drawn so far."""
        return self._cursor / max(1, len(self._perm))

    def _flush(self) -> bool:
        """Train on the routed samples of the pending minibatch, then drop it."""
        batch, self._batch = self._batch, None
        if batch is None or self.mode != "train" or not batch.done_B.any():
            return False
        if batch.regraph:
            self._regraph(batch)
        done = torch.from_numpy(np.flatnonzero(batch.done_B))
        indices = batch.indices_B[done]
        routes = torch.from_numpy(batch.routes_Bn)[done]
        trunk_out = batch.trunk_out_B if len(done) == batch.size else batch.trunk_out_B[done]
        split = self.dataset.train
        pred = self.network.forward_routes(trunk_out, routes)
        targets = split.targets_N[indices].to(self.device)
        if self.regression:
            loss = F.mse_loss(pred.view(-1), targets.float())
        else:
            loss = F.cross_entropy(self._masked_logits(pred, split.tasks_N[indices]), targets)
        if not torch.isfinite(loss):
            message = (
                f"non-finite training loss ({loss.item()}) at block update {self.updates + 1} "
                f"(epoch {self.epoch}): {self._first_nonfinite(trunk_out, routes)}. "
                "The weights were not changed."
            )
            if self.training.on_nonfinite == "raise":
                raise FloatingPointError(message)
            warnings.warn(message + " Skipping this minibatch (on_nonfinite='skip').", stacklevel=3)
            self.skipped_updates += 1
            return False
        self.optimizer.zero_grad(set_to_none=True)  # unused blocks keep grad None: untouched
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        return True

    def _first_nonfinite(self, trunk_out_N: torch.Tensor, routes_Nn: torch.Tensor) -> str:
        """Name where a minibatch first turns non-finite: the trunk or a block at a depth."""
        if not torch.isfinite(trunk_out_N).all():
            return "the trunk output is non-finite"
        with torch.no_grad():
            v_N = trunk_out_N.detach()
            for i in range(len(v_N)):
                v = v_N[i : i + 1]
                for depth in range(self.num_decisions):
                    action = int(routes_Nn[i, depth])
                    v = self.network.apply_action(depth, action, v)
                    if not torch.isfinite(v).all():
                        return f"the output of {self._block_name(depth, action)} is non-finite"
        return "every block output is finite; the loss itself overflowed"

    def _block_name(self, depth: int, action: int) -> str:
        target = self.network.action_target(depth, action)
        return "PASS" if target == "PASS" else f"block {target} (depth {depth}, action {action})"

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a run needs to continue bit-identically, as tensors and plain types.

        Only available between minibatches in training mode (e.g. at the end of an
        epoch), since a minibatch being routed holds an autograd graph.

        Raises:
            RuntimeError: When called mid-minibatch or in eval mode.
        """
        self._require_started()
        if self.mode != "train" or self._batch is not None or self._sample is not None:
            raise RuntimeError(
                "the engine can be saved only between training minibatches (e.g. at the end of an "
                "epoch, in train mode); finish the pending minibatch first"
            )
        return {
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "selections_nA": torch.from_numpy(self.selections_nA.copy()),
            "perm": torch.from_numpy(self._perm.astype(np.int64)),
            "counters": {
                "epoch": self.epoch,
                "updates": self.updates,
                "skipped_updates": self.skipped_updates,
                "samples_routed": self.samples_routed,
                "cursor": self._cursor,
            },
            "np_random": self.np_random.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (starting the engine if it was not).

        The state is checked as a whole before anything is applied, and applying it is
        undone if it still fails: on any error the engine is left exactly as it was.

        Raises:
            ValueError: When ``state`` is not an engine state of this network, dataset
                and optimizer (naming what differs).
        """
        if not self._started:
            self.restart(0)  # builds the optimizer the state is loaded into
            try:
                self.load_state_dict(state)
            except BaseException:
                self._started = False
                raise
            return
        self._check_state(state)
        network_backup = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
        optimizer_backup = copy.deepcopy(self.optimizer.state_dict())
        rng_backup = self.np_random.bit_generator.state
        try:
            self.network.load_state_dict(state["network"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.np_random.bit_generator.state = state["np_random"]
            counters = {k: int(state["counters"][k]) for k in self._COUNTERS}
        except Exception as err:
            self.network.load_state_dict(network_backup)
            self.optimizer.load_state_dict(optimizer_backup)
            self.np_random.bit_generator.state = rng_backup
            raise ValueError(
                f"the engine state could not be loaded ({type(err).__name__}: {err}); nothing was changed"
            ) from err
        self.selections_nA = state["selections_nA"].numpy().astype(np.int64)
        self._perm = state["perm"].numpy().astype(np.int64)
        self.epoch = counters["epoch"]
        self.updates = counters["updates"]
        self.skipped_updates = counters["skipped_updates"]
        self.samples_routed = counters["samples_routed"]
        self._cursor = counters["cursor"]
        self._batch = None
        self._sample = None
        self.mode = "train"
        self.network.train()

    _COUNTERS = ("epoch", "updates", "skipped_updates", "samples_routed", "cursor")

    def _check_state(self, state: Any) -> None:
        """Raise ``ValueError`` naming the first way ``state`` does not fit this engine."""
        if not isinstance(state, dict):
            raise ValueError(f"not an engine state: expected a dict, got {type(state).__name__}")
        missing = [
            k
            for k in ("network", "optimizer", "selections_nA", "perm", "counters", "np_random")
            if k not in state
        ]
        if missing:
            raise ValueError(f"not an engine state: missing {missing}")
        ours = self.network.state_dict()
        theirs = state["network"]
        if not isinstance(theirs, dict):
            raise ValueError("the state's 'network' entry is not a state dict")
        if set(theirs) != set(ours):
            extra, lacking = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
            raise ValueError(
                "the checkpoint is of another network: "
                + "; ".join(
                    part
                    for part in (
                        f"{len(extra)} unknown entries (e.g. {extra[:3]})" if extra else "",
                        f"{len(lacking)} entries missing (e.g. {lacking[:3]})" if lacking else "",
                    )
                    if part
                )
            )
        for key, tensor in ours.items():
            other = theirs[key]
            if not isinstance(other, torch.Tensor) or tuple(other.shape) != tuple(tensor.shape):
                shape = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
                raise ValueError(
                    f"the checkpoint is of another network: {key!r} has shape {shape}, "
                    f"this network's {tuple(tensor.shape)}"
                )
        optim = state["optimizer"]
        if not isinstance(optim, dict) or "param_groups" not in optim or "state" not in optim:
            raise ValueError("the state's 'optimizer' entry is not an optimizer state dict")
        ours_groups = self.optimizer.state_dict()["param_groups"]
        sizes = [len(g.get("params", ())) for g in optim["param_groups"]]
        if sizes != [len(g["params"]) for g in ours_groups]:
            raise ValueError(
                f"the checkpoint's optimizer holds parameter groups of sizes {sizes}, this engine's "
                f"{[len(g['params']) for g in ours_groups]}"
            )
        kind = type(self.optimizer).__name__
        ours_keys = {k for g in ours_groups for k in g if k != "params"}
        their_keys = {k for g in optim["param_groups"] for k in g if k != "params"}
        if ours_keys != their_keys:
            raise ValueError(
                f"the checkpoint's optimizer has settings {sorted(their_keys)}, not those of this "
                f"engine's {kind} ({sorted(ours_keys)}): another optimizer"
            )
        for name, expected in (
            ("selections_nA", self.selections_nA.shape),
            ("perm", (len(self.dataset.train),)),
        ):
            value = state[name]
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(expected):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                what = "selection counts" if name == "selections_nA" else "a data order"
                raise ValueError(
                    f"the checkpoint holds {what} of shape {shape}, expected {tuple(expected)} "
                    "(another network or dataset)"
                )
        perm = state["perm"]
        if not torch.equal(torch.sort(perm.to(torch.int64)).values, torch.arange(len(self.dataset.train))):
            raise ValueError("the checkpoint's data order is not a permutation of this training split")
        counters = state["counters"]
        if not isinstance(counters, dict) or any(k not in counters for k in self._COUNTERS):
            raise ValueError(f"the checkpoint's counters must hold {list(self._COUNTERS)}")
        rng = state["np_random"]
        name = self.np_random.bit_generator.state["bit_generator"]
        if not isinstance(rng, dict) or rng.get("bit_generator") != name:
            raise ValueError(f"the checkpoint's data generator state is not a {name} state")

    # ------------------------------------------------------------- evaluation
    def evaluation(self) -> dict[str, float | list[float]]:
        """Accuracy (classification) or mean loss per task of the samples evaluated so far.

        Returns a dict: ``"accuracy"`` (or ``"loss"`` for regression) over every sample
        scored since eval mode began, ``"accuracy_per_task"`` (``"loss_per_task"``; NaN for
        a task with no sample scored yet), ``"samples"`` (how many were scored) and
        ``"complete"`` (True once the whole test split has been routed in this pass).
        """
        total = self._eval_total_T
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.regression:
                per_task = (self._eval_loss_T / total).tolist()
                overall = float(self._eval_loss_T.sum() / max(1, total.sum()))
                return {
                    "loss": overall,
                    "loss_per_task": per_task,
                    "samples": int(total.sum()),
                    "complete": self.eval_pass_complete,
                }
            per_task = (self._eval_correct_T / total).tolist()
            overall = float(self._eval_correct_T.sum() / max(1, total.sum()))
        return {
            "accuracy": overall,
            "accuracy_per_task": per_task,
            "samples": int(total.sum()),
            "complete": self.eval_pass_complete,
        }

    @property
    def eval_pass_complete(self) -> bool:
        """True in eval mode once no test sample is left to route in this pass.

        A pass routes every test sample once, in order; a sample abandoned mid-route
        (``reset()`` before its last decision) is not scored, so ``evaluation()["samples"]``
        can then be smaller than the test split.
        """
        return self.mode == "eval" and not self.routing and not self.has_next_sample

    @property
    def has_next_sample(self) -> bool:
        """Whether :meth:`begin_sample` can draw another sample (always, in training)."""
        if self.mode == "train":
            return True
        pending = self._batch is not None and not self._batch.exhausted
        return pending or self._eval_cursor < len(self.dataset.test)

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("the engine has not been started; call restart(seed) (env.reset()) first")
