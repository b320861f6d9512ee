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
import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from routing_env.aggregation import AggregatorName, check_aggregator, make_aggregator, task_jacobian
from routing_env.datasets.base import MultiTaskDataset, TaskSplit
from routing_env.network import RoutingNetwork
from routing_env.optim import StepDecay, make_optimizer
from routing_env.rewards import collaboration_reward, final_reward, final_rewards

__all__ = [
    "BatchOutcome",
    "BlockTrainingStatus",
    "RoutedBatch",
    "RoutingEngine",
    "StepOutcome",
    "TrainingConfig",
    "deepcopy_sharing",
    "interleaved_order",
]

Mode = Literal["train", "eval"]
EvalSplit = Literal["test", "validation"]


@dataclass(frozen=True)
class TrainingConfig:
    """How the environment trains the trunk and the function blocks.

    The defaults are the setting that learns on every dataset here, the one
    ``examples/train_wpl.py`` uses: Adam at 1e-3 on minibatches of 64, divided by 10
    every 10 epochs. :meth:`paper` is the paper's setting (SGD at 1e-2, divided by 10
    every 20 epochs), with which routers stay on the 90% majority-class plateau for
    many epochs on the small digits-MTL (``docs/results.md``). Build one with
    ``TrainingConfig.preset("paper", lr=...)`` to change a preset's fields.

    Attributes:
        batch_size: Samples per optimizer step (the last minibatch of an epoch may be
            smaller).
        lr: Initial learning rate (the paper: 1e-2 with SGD).
        optimizer: ``"adam"`` or ``"sgd"`` (the paper's choice).
        momentum: SGD momentum (``optimizer="sgd"`` only).
        weight_decay: L2 weight decay.
        lr_decay_every: Multiply the learning rate by ``lr_decay_factor`` every this
            many epochs (the paper divides it by 10 every 20 epochs); None: constant.
        lr_decay_factor: Factor of each decay.
        on_nonfinite: ``"raise"``: a non-finite loss stops training with
            ``FloatingPointError`` naming the update and the blocks; ``"skip"``: the
            minibatch is dropped with a warning and training goes on.
        eval_batch_size: Test samples drawn at a time in evaluation (the trunk's
            minibatch, and one step of the batched path). Accuracies do not depend on it
            (nothing is trained and batch norm uses its running statistics), except that
            on the batched path it decides which generator draw a sampled route takes.
        aggregator: How the minibatch's loss trains the trunk and blocks: ``"mean"`` (the
            paper: one backward pass of the mean loss) or a torchjd aggregator of the
            per-task losses (``"pcgrad"``, ``"upgrad"``, ``"dualproj"``, ``"mgda"``,
            ``"imtl-g"``, ``"aligned-mtl"``, ``"config"``; ``pip install 'routing-env[mtl]'``).
            Task ``t``'s row is the gradient of ``(n_t/B)`` x its mean loss (the rows sum
            to the mean path's gradient); the aggregator combines them on the parameters
            that samples of two or more tasks went through (the trunk, shared blocks), and
            a block used by one task gets that task's gradient. See
            :mod:`routing_env.aggregation` for the rule and the scale.
        merge_duplicate_inputs: In evaluation, run the trunk once per distinct input of
            a test minibatch and copy its output to the byte-identical ones (one-vs-rest
            splits such as MNIST-MTL and Fashion-MTL hold each test image once per task:
            a tenth of the trunk's work). Exact for a trunk whose eval-mode output for a
            row does not depend on the other rows (batch norm with running statistics,
            no dropout: every trunk this package builds); pass False for one that samples
            in eval mode (e.g. Monte Carlo dropout) or mixes rows.
    """

    batch_size: int = 64
    lr: float = 1e-3
    optimizer: Literal["sgd", "adam"] = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_decay_every: int | None = 10
    lr_decay_factor: float = 0.1
    on_nonfinite: Literal["raise", "skip"] = "raise"
    eval_batch_size: int = 512
    aggregator: AggregatorName = "mean"
    merge_duplicate_inputs: bool = True

    PRESETS: ClassVar[tuple[str, ...]] = ("default", "paper")
    """The names :meth:`preset` knows."""

    @classmethod
    def paper(cls, **changes: Any) -> TrainingConfig:
        """The paper's block training: SGD at 1e-2, divided by 10 every 20 epochs (batch 64)."""
        return cls.preset("paper", **changes)

    @classmethod
    def preset(cls, name: str, **changes: Any) -> TrainingConfig:
        """The named preset (``"default"`` or ``"paper"``) with ``changes`` applied.

        Raises:
            ValueError: For an unknown preset name or an invalid setting.
            TypeError: For a field this config does not have.
        """
        if name == "default":
            base: dict[str, Any] = {}
        elif name == "paper":
            base = {"optimizer": "sgd", "lr": 1e-2, "lr_decay_every": 20}
        else:
            raise ValueError(f"unknown training preset {name!r}; expected one of {list(cls.PRESETS)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise TypeError(f"TrainingConfig has no field(s) {unknown}; its fields are {sorted(fields)}")
        return cls(**{**base, **changes})

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if (
            isinstance(self.eval_batch_size, bool)
            or not isinstance(self.eval_batch_size, int)
            or self.eval_batch_size < 1
        ):
            raise ValueError(f"eval_batch_size must be a positive int, got {self.eval_batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(
                f"momentum={self.momentum} applies to optimizer='sgd' only (this config: "
                f"optimizer={self.optimizer!r}); pass optimizer='sgd' (or preset='paper') with it"
            )
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        self.lr_schedule  # noqa: B018 - validates lr_decay_every and lr_decay_factor
        if self.on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {self.on_nonfinite!r}")
        check_aggregator(self.aggregator)
        if not isinstance(self.merge_duplicate_inputs, bool):
            raise ValueError(f"merge_duplicate_inputs must be a bool, got {self.merge_duplicate_inputs!r}")

    @property
    def lr_schedule(self) -> StepDecay:
        """The block learning rate's schedule: ``lr_decay_factor`` every ``lr_decay_every`` epochs."""
        return StepDecay(every=self.lr_decay_every, factor=self.lr_decay_factor)


def interleaved_order(tasks_N: np.ndarray) -> np.ndarray:
    """The order in which an evaluation pass routes a split: its tasks interleaved.

    Test splits are stored task by task, so routing them in stored order would score
    tasks 0-2 first and leave the others unseen until late. Here the ``j``-th of the
    ``n_t`` samples of task ``t`` is placed at ``(j + 0.5) / n_t`` of the pass (ties go to
    the lower task), so every prefix of the pass holds each task in proportion to its
    share of the split: within one sample when the tasks are of equal size (as in the
    paper's datasets), within ``0.5 + 0.5 (T - 1) n_t / N`` samples in general. Each
    task keeps its stored order. The
    order depends only on the split's task ids: every pass, the AEC and the batched
    path route the same samples in the same order.

    Args:
        tasks_N: Task id of each sample of the split, in stored order.

    Returns:
        A permutation of ``range(len(tasks_N))`` (int64).
    """
    tasks_N = np.asarray(tasks_N, dtype=np.int64).reshape(-1)
    key_N = np.zeros(len(tasks_N), dtype=np.float64)
    for t in np.unique(tasks_N):
        members = np.flatnonzero(tasks_N == t)
        key_N[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.lexsort((tasks_N, key_N)).astype(np.int64)  # by key, then by task


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


@dataclass(frozen=True)
class BatchOutcome:
    """What one depth of decisions produced for every sample of a routed minibatch.

    Attributes:
        collaboration_reward_B: ``rho`` x historical selection frequency per sample
            (0 in evaluation), float64.
        final_reward_B: On the last depth: +1/-1 per correct/wrong prediction (``-loss``
            for regression); None before.
        correct_B: On the last depth of a classification: bool per sample; else None.
        loss_B: On the last depth of a regression: squared error per sample; else None.
        done: True after the last depth (the minibatch is routed).
        trained: True when the blocks took an optimizer step on this minibatch.
    """

    collaboration_reward_B: np.ndarray
    final_reward_B: np.ndarray | None
    correct_B: np.ndarray | None
    loss_B: np.ndarray | None
    done: bool
    trained: bool


class RoutedBatch:
    """A minibatch routed one depth at a time by :meth:`RoutingEngine.begin_batch`.

    ``groups`` holds the current representations, one ``(sample positions,
    representations)`` pair per representation shape, exactly as
    :meth:`RoutingNetwork.forward_routes` builds them, so that the training step reuses
    them (with their autograd graph) and gets the numbers the per-sample path gets.

    Attributes:
        indices_B: Index of each sample in its split (int64 tensor, CPU).
        sample_index_B: The same as a NumPy array.
        task_B: Task id of each sample (int64 NumPy array).
        depth: The next decision depth (``num_decisions`` once routed).
        routes_Bn: Actions taken so far (-1 where not yet decided).
        mode: ``"train"`` or ``"eval"``.
    """

    def __init__(
        self,
        *,
        indices_B: torch.Tensor,
        trunk_out_B: torch.Tensor,
        split: TaskSplit,
        num_decisions: int,
        mode: Mode,
        rng_state: dict[str, torch.Tensor] | None,
        groups: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        self.indices_B = indices_B
        self.sample_index_B: np.ndarray = indices_B.numpy()
        self.task_B: np.ndarray = split.tasks_N[indices_B].numpy()
        self.trunk_out_B = trunk_out_B
        self.groups = groups
        self.size = int(indices_B.shape[0])
        self.routes_Bn = np.full((self.size, num_decisions), -1, dtype=np.int64)
        self.depth = 0
        self.mode: Mode = mode
        self.rng_state = rng_state
        self.regraph = False  # True on a copy: the representations lost their graph
        self._masks: np.ndarray | None = None

    # Copies keep values, not the autograd graph (see _Minibatch); the engine recomputes it.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["regraph"] = self.regraph or self.trunk_out_B.grad_fn is not None
        state["trunk_out_B"] = self.trunk_out_B.detach().clone()
        state["groups"] = [(idx.clone(), v.detach().clone()) for idx, v in self.groups]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __deepcopy__(self, memo: dict[int, Any]) -> RoutedBatch:
        clone = RoutedBatch.__new__(RoutedBatch)
        memo[id(self)] = clone
        clone.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return clone


def deepcopy_sharing(obj: Any, memo: dict[int, Any], shared: tuple[Any, ...]) -> Any:
    """``copy.deepcopy(obj)`` with the objects in ``shared`` kept, not copied.

    For the env and the engine, whose deep copies share the (read-only) dataset: nothing
    writes to a dataset's tensors, so a copy of the data would only cost memory. An
    object the caller's deepcopy already copied stays that copy.
    """
    for item in shared:
        memo.setdefault(id(item), item)
    clone = object.__new__(type(obj))
    memo[id(obj)] = clone
    clone.__dict__.update(copy.deepcopy(obj.__dict__, memo))
    return clone


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
        self.eval_order = interleaved_order(dataset.test.tasks_N.numpy())
        self._validation_order = (
            None if dataset.validation is None else interleaved_order(dataset.validation.tasks_N.numpy())
        )
        self.eval_split: EvalSplit = "test"
        self._aggregator = make_aggregator(training.aggregator)  # None: the mean loss
        self._started = False

    def __deepcopy__(self, memo: dict[int, Any]) -> RoutingEngine:
        # the copy shares the dataset (pickling it stores a reference where it can: see
        # MultiTaskDataset); the trained state (network, optimizer, RNG, counters, a
        # minibatch in flight) is copied as usual
        return deepcopy_sharing(self, memo, (self.dataset,))  # type: ignore[no-any-return]

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
        self.optimizer = make_optimizer(
            params, name=cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self.selections_nA = np.zeros((self.num_decisions, self.num_actions), dtype=np.int64)
        self.epoch = 0  # completed training epochs
        self.updates = 0  # optimizer steps taken
        self.skipped_updates = 0
        self.samples_routed = 0  # training samples whose route is complete
        self.mode: Mode = "train"
        self.network.train()
        self._cursor = 0
        self._perm = self.np_random.permutation(len(self.dataset.train))
        # seeds of an aggregator's random draws (PCGrad's order), apart from the data stream
        self._aggregator_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(17,)))
        self._batch: _Minibatch | None = None
        self._sample: int | None = None  # position in the minibatch of the sample being routed
        self._routed: RoutedBatch | None = None  # the minibatch of the batched path
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
        """The split being routed: the training split, or in eval mode :attr:`eval_split`'s."""
        if self.mode == "train":
            return self.dataset.train
        if self.eval_split == "validation":
            assert self.dataset.validation is not None  # set_mode checked it
            return self.dataset.validation
        return self.dataset.test

    @property
    def _eval_order(self) -> np.ndarray:
        if self.eval_split == "validation":
            assert self._validation_order is not None
            return self._validation_order
        return self.eval_order

    def check_eval_split(self, split: Any) -> None:
        """Refuse an evaluation split other than ``"test"`` and ``"validation"``, or a
        validation split the dataset does not have (before anything changes)."""
        if split not in ("test", "validation"):
            raise ValueError(f"the evaluation split must be 'test' or 'validation', got {split!r}")
        if split == "validation" and self.dataset.validation is None:
            raise ValueError(
                f"dataset {self.dataset.name!r} has no validation split; carve one from its training data "
                "with routing_env.datasets.split_validation(dataset, fraction)"
            )

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_mode(self, mode: Mode, split: EvalSplit = "test") -> None:
        """Switch between ``"train"`` (route training samples, train blocks) and ``"eval"``.

        Evaluation routes the test split (or with ``split="validation"`` the dataset's
        validation split) once, in :attr:`eval_order` (tasks interleaved), without
        training and without counting selections; :meth:`evaluation` reports its
        accuracy. Switching trains on the routed samples of the pending minibatch and
        drops the rest; entering eval restarts the pass over the split.
        """
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.check_eval_split(split)
        self._require_started()
        self.abandon_sample()
        self._routed = None
        self._flush()
        if mode == "eval":
            self.eval_split = split
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
        self._routed = None  # a batched minibatch left unfinished is dropped
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
    def sample_in_flight(self) -> bool:
        """True while a sample is being routed (between :meth:`begin_sample` and its last decision)."""
        return self._sample is not None

    @property
    def routing(self) -> bool:
        """The former name of :attr:`sample_in_flight` (``routing`` also names layered/recurrent routing)."""
        return self.sample_in_flight

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
        indices_B, trunk_out, rng_state = self._draw_minibatch()
        return _Minibatch(indices_B, trunk_out, self.split, self.num_decisions, rng_state)

    def _draw_minibatch(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None]:
        """The next minibatch of the current split: indices, trunk output (with its graph in
        training) and the generators' state before the trunk ran."""
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
                    f"the evaluation pass is complete: all {len(split)} {self.eval_split} samples have been routed "
                    "since eval mode began (evaluation() reports them). Call "
                    "reset(options={'mode': 'eval'}) to start another pass, or {'mode': 'train'} to train on"
                )
            B = self.training.eval_batch_size
            indices = self._eval_order[self._eval_cursor : self._eval_cursor + B]
            self._eval_cursor += len(indices)
        indices_B = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        self.network.refresh_array_path()
        rng_state = None
        if self.mode == "train":
            x = self._inputs(split, indices_B)
            rng_state = self._rng_state()
            # the graph is built even when the caller steps the env under torch.no_grad()
            # (as TorchRL's collectors do): the env trains its blocks whoever drives it
            with torch.enable_grad():
                trunk_out = self.network.trunk(x)  # keeps its graph until the minibatch is trained
        else:
            trunk_out = self._eval_trunk(split, indices_B)
        return indices_B, trunk_out, rng_state

    def _eval_trunk(self, split: TaskSplit, indices_B: torch.Tensor) -> torch.Tensor:
        """The trunk output of a test minibatch, run once per distinct input in it.

        Multi-task splits often hold one image once per task (MNIST-MTL, Fashion-MTL:
        every test image in each of the 10 tasks, which :attr:`eval_order` interleaves),
        and the trunk sees only the image. In eval mode (running batch-norm statistics,
        no dropout) a row's output does not depend on the rest of the minibatch, so each
        distinct input is computed once and its output copied to its duplicates; only
        byte-identical inputs are merged.
        """
        first = split.first_occurrence_N if self.training.merge_duplicate_inputs else None
        rows = indices_B
        inverse = None
        if first is not None:
            reps, inv = np.unique(first[indices_B.numpy()], return_inverse=True)
            if len(reps) < len(indices_B):
                rows, inverse = torch.from_numpy(reps), torch.from_numpy(inv.reshape(-1))
        with torch.no_grad():
            out = self.network.trunk(self._inputs(split, rows))
        return out if inverse is None else out[inverse.to(out.device)]

    def _inputs(self, split: TaskSplit, indices_B: torch.Tensor) -> torch.Tensor:
        return self.dataset.normalize(split.inputs_NCHW[indices_B]).to(self.device)

    def _rng_state(self) -> dict[str, torch.Tensor]:
        """The torch generators a trunk with random layers (dropout) draws from."""
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _regraph(self, batch: _Minibatch) -> None:
        """Recompute the trunk output of a copied minibatch with its autograd graph."""
        batch.trunk_out_B = self._recompute_trunk(batch.indices_B, batch.rng_state, batch.trunk_out_B)
        batch.regraph = False

    def _recompute_trunk(
        self, indices_B: torch.Tensor, rng_state: dict[str, torch.Tensor] | None, expected: torch.Tensor
    ) -> torch.Tensor:
        """The trunk output of training samples, recomputed with its graph for a copy.

        The copy's trunk has the weights the original's had when the minibatch was drawn
        (blocks train only between minibatches); the generators are set to their state
        before the original forward and the trunk's buffers (batch-norm statistics, which
        the original forward already updated) are put back afterwards, so the copy trains
        on exactly what the original trains on.
        """
        trunk = self.network.trunk
        buffers = {name: b.detach().clone() for name, b in trunk.named_buffers()}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            if rng_state is not None:
                torch.set_rng_state(rng_state["cpu"])
                if "cuda" in rng_state:
                    torch.cuda.set_rng_state(rng_state["cuda"], self.device)
            out = trunk(self._inputs(self.dataset.train, indices_B))
        # put the buffers back as new tensors: the graph holds the ones the forward used
        for name, saved in buffers.items():
            owner, _, attr = name.rpartition(".")
            setattr(trunk.get_submodule(owner), attr, saved)
        if not torch.equal(out.detach(), expected):
            warnings.warn(
                "a copied env recomputed its pending minibatch's trunk output and got other values "
                "(a non-deterministic trunk or device); it trains on the recomputed ones",
                stacklevel=4,
            )
        return out

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.training.lr_schedule.step(self.optimizer, epoch=self.epoch)
        self._perm = self.np_random.permutation(len(self.dataset.train))
        self._cursor = 0

    @property
    def epoch_progress(self) -> float:
        """Fraction of the current training epoch drawn so far."""
        return self._cursor / max(1, len(self._perm))

    @torch.enable_grad()  # the training step works under a caller's torch.no_grad() too
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
        pred = self.network.forward_routes(trunk_out, routes)
        return self._train_step(pred, indices, trunk_out, routes)

    @torch.enable_grad()  # the env trains its blocks whoever drives it, under no_grad or not
    def _train_step(
        self,
        pred_NK: torch.Tensor,
        indices_N: torch.Tensor,
        trunk_out_N: torch.Tensor,
        routes_Nn: torch.Tensor,
    ) -> bool:
        """One optimizer step on the loss of routed training samples (Algorithm 2, step 3)."""
        split = self.dataset.train
        targets = split.targets_N[indices_N].to(self.device)
        reduction = "mean" if self._aggregator is None else "none"
        if self.regression:
            loss = F.mse_loss(pred_NK.view(-1), targets.float(), reduction=reduction)
        else:
            loss = F.cross_entropy(
                self._masked_logits(pred_NK, split.tasks_N[indices_N]), targets, reduction=reduction
            )
        loss_N = loss
        if self._aggregator is not None:
            loss = loss_N.mean()
        if not torch.isfinite(loss):
            message = (
                f"non-finite training loss ({loss.item()}) at block update {self.updates + 1} "
                f"(epoch {self.epoch}): {self._first_nonfinite(trunk_out_N, routes_Nn)}. "
                "The weights were not changed."
            )
            if self.training.on_nonfinite == "raise":
                raise FloatingPointError(message)
            warnings.warn(message + " Skipping this minibatch (on_nonfinite='skip').", stacklevel=4)
            self.skipped_updates += 1
            return False
        self.optimizer.zero_grad(set_to_none=True)  # unused blocks keep grad None: untouched
        if self._aggregator is None:
            loss.backward()
        else:
            self._aggregated_backward(loss_N, indices_N, routes_Nn)
        self.optimizer.step()
        self.updates += 1
        return True

    def _aggregated_backward(
        self, loss_N: torch.Tensor, indices_N: torch.Tensor, routes_Nn: torch.Tensor
    ) -> None:
        """Set the gradients from the per-task losses combined by the aggregator
        (:mod:`routing_env.aggregation`); task ids and routes are read on the host."""
        assert self._aggregator is not None
        jacobian = task_jacobian(
            network=self.network,
            loss_N=loss_N,
            tasks_N=self.dataset.train.tasks_N[indices_N].numpy(),
            routes_Nn=routes_Nn.cpu().numpy(),
        )
        # PCGrad draws its projection order from torch's CPU generator: seeded per step
        # from the engine's own stream, and restored, so that no other stream moves
        seed = int(self._aggregator_rng.integers(2**63))
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            jacobian.apply(self._aggregator)

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

    # ------------------------------------------------------------- batched routing
    # The same game one minibatch at a time: every sample of a minibatch decides depth d
    # before any decides depth d + 1. Rewards, selection counts and the training step are
    # those of the per-sample path: a depth's collaboration rewards are computed in sample
    # order (sample i sees the selections of samples 0..i-1 at that depth, as it does when
    # samples are routed one after another), and the block outputs computed while routing
    # are the ones the training step backpropagates through (no second pass).
    @property
    def routed_batch(self) -> RoutedBatch | None:
        """The minibatch being routed by the batched path, if any."""
        return self._routed

    def begin_batch(self) -> RoutedBatch:
        """Draw the next minibatch of the current split and put all its samples at depth 0.

        A minibatch of the per-sample path still pending is finished first (trained on
        its routed samples, as a mode switch does); a batched minibatch left unfinished
        is dropped without training.

        Raises:
            RuntimeError: When a sample is being routed one decision at a time, or when
                the evaluation pass over the test split is complete.
        """
        self._require_started()
        if self._sample is not None:
            raise RuntimeError(
                "a sample is being routed one decision at a time (the AEC env); finish or abandon it first"
            )
        self._flush()
        self._routed = None
        indices_B, trunk_out, rng_state = self._draw_minibatch()
        self._routed = RoutedBatch(
            indices_B=indices_B,
            trunk_out_B=trunk_out,
            split=self.split,
            num_decisions=self.num_decisions,
            mode=self.mode,
            rng_state=rng_state,
            groups=self.network.start_groups(trunk_out),
        )
        return self._routed

    def abandon_batch(self) -> None:
        """Drop the batched minibatch being routed (it is not trained on)."""
        self._routed = None

    def batch_masks(self, batch: RoutedBatch) -> np.ndarray:
        """Valid actions (int8, ``B x A``) of every sample at the batch's current depth."""
        if batch._masks is None:
            masks = np.empty((batch.size, self.num_actions), dtype=np.int8)
            for idx, v in batch.groups:
                masks[idx.numpy()] = self.network.action_mask(batch.depth, tuple(v.shape[1:]))
            batch._masks = masks
        return batch._masks

    def batch_representation(
        self, batch: RoutedBatch, groups: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> torch.Tensor:
        """The current representations, flattened and zero-padded to the observation width.

        A ``B x D`` float32 tensor on the network's device, without autograd graph,
        computed on demand (tabular agents never ask for it). ``groups``: the batch's
        groups at an earlier depth (as ``batch.groups`` was then) instead of the current.
        """
        groups = batch.groups if groups is None else groups
        width = self.network.observation_width
        if len(groups) == 1:
            flat = self.network.gather_groups(groups, batch.size).detach().reshape(batch.size, -1)
            if flat.shape[1] == width:
                return flat
        out = torch.zeros(batch.size, width, device=batch.trunk_out_B.device)
        for idx, v in groups:
            flat = v.detach().reshape(len(idx), -1)
            out[idx.to(out.device), : flat.shape[1]] = flat
        return out

    def check_batch_actions(self, batch: RoutedBatch, actions: Any) -> np.ndarray:
        """The actions of a depth as int64, or ``ValueError``/``TypeError`` naming the sample.

        Accepts a NumPy array, a torch tensor or a sequence of ``B`` integers.
        """
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        array = np.asarray(actions)
        if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
            raise TypeError(
                f"actions must be integers (block indices), one per sample; got dtype {array.dtype}"
            )
        if array.shape != (batch.size,):
            raise ValueError(
                f"expected one action per sample of the minibatch, shape ({batch.size},), got shape "
                f"{array.shape}"
            )
        array = array.astype(np.int64, copy=False)
        out_of_range = np.flatnonzero((array < 0) | (array >= self.num_actions))
        if len(out_of_range):
            i = int(out_of_range[0])
            raise ValueError(
                f"action {int(array[i])} of sample {i} (sample index {int(batch.sample_index_B[i])}) is "
                f"out of range; expected ints in [0, {self.num_actions})"
                + (f" ({len(out_of_range)} samples in all)" if len(out_of_range) > 1 else "")
            )
        masks = self.batch_masks(batch)
        masked = np.flatnonzero(masks[np.arange(batch.size), array] == 0)
        if len(masked):
            i = int(masked[0])
            raise ValueError(
                f"action {int(array[i])} of sample {i} (sample index {int(batch.sample_index_B[i])}, task "
                f"{int(batch.task_B[i])}) is masked at depth {batch.depth}; allowed: "
                f"{np.flatnonzero(masks[i]).tolist()}"
                + (f" ({len(masked)} masked actions in all)" if len(masked) > 1 else "")
            )
        return array

    def batch_act(self, batch: RoutedBatch, actions: Any) -> BatchOutcome:
        """Apply one depth of decisions to every sample of ``batch``.

        After the last depth the predictions are judged and, in training, the blocks take
        one optimizer step on the minibatch. Invalid actions, and (with
        ``on_nonfinite="raise"``) a non-finite block output, raise before anything
        changes: weights, selection counts, the batch and the generators are as before.

        Raises:
            RuntimeError: When ``batch`` is not the minibatch being routed or is routed.
            TypeError, ValueError: On invalid actions (naming the sample).
            FloatingPointError: On a non-finite block output (naming the sample and block).
        """
        if batch is not self._routed or batch.depth >= self.num_decisions:
            raise RuntimeError("this minibatch is not being routed; call begin_batch() for the next one")
        if batch.mode != self.mode:
            raise RuntimeError(
                f"the minibatch was drawn in {batch.mode} mode, the engine is in {self.mode} mode"
            )
        action_B = self.check_batch_actions(batch, actions)
        depth, train, B = batch.depth, self.mode == "train", batch.size
        if batch.regraph:
            self._regraph_batch(batch)
        rng_state = self._rng_state()
        actions_t = torch.from_numpy(action_B)
        with torch.set_grad_enabled(train):
            groups = self.network.route_depth(batch.groups, depth, actions_t)
        if self.training.on_nonfinite == "raise":
            self._check_batch_finite(batch, groups, depth, action_B, rng_state)

        collab_B = np.zeros(B, dtype=np.float64)
        if train:
            selections_A = self.selections_nA[depth]
            if self.rho:
                # sample i sees the selections before it: the history plus samples 0..i-1
                onehot_BA = np.zeros((B, self.num_actions), dtype=np.int64)
                onehot_BA[np.arange(B), action_B] = 1
                before_BA = selections_A + np.cumsum(onehot_BA, axis=0) - onehot_BA
                count_B = before_BA[np.arange(B), action_B]
                total_B = (int(selections_A.sum()) + np.arange(B)).astype(np.float64)
                with np.errstate(invalid="ignore", divide="ignore"):
                    collab_B = np.where(total_B > 0, self.rho * count_B / total_B, 0.0)
            selections_A += np.bincount(action_B, minlength=self.num_actions)
        batch.routes_Bn[:, depth] = action_B
        batch.groups = groups
        batch.depth = depth + 1
        batch._masks = None
        if batch.depth < self.num_decisions:
            return BatchOutcome(collab_B, None, None, None, False, False)

        # the routes are complete: judge the predictions, then train on the minibatch
        with torch.set_grad_enabled(train):  # also under a caller's no_grad (TorchRL's collectors)
            pred_BK = self.network.gather_groups(groups, B)
        correct_B, loss_B, final_B = self._judge_batch(batch, pred_BK)
        self._routed = None
        trained = False
        if train:
            self.samples_routed += B
            trained = self._train_step(
                pred_BK, batch.indices_B, batch.trunk_out_B, torch.from_numpy(batch.routes_Bn)
            )
        else:
            T = self.dataset.num_tasks
            self._eval_total_T += np.bincount(batch.task_B, minlength=T)
            if correct_B is not None:
                self._eval_correct_T += np.bincount(batch.task_B, weights=correct_B, minlength=T).astype(
                    np.int64
                )
            if loss_B is not None:
                self._eval_loss_T += np.bincount(batch.task_B, weights=loss_B, minlength=T)
        return BatchOutcome(collab_B, final_B, correct_B, loss_B, True, trained)

    def _judge_batch(
        self, batch: RoutedBatch, pred_BK: torch.Tensor
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
        """Correctness or squared error per sample, and the final rewards."""
        split = self.split
        targets = split.targets_N[batch.indices_B]
        with torch.no_grad():
            pred = pred_BK.detach()
            if self.regression:
                err = pred.reshape(batch.size, -1)[:, 0].double().cpu() - targets.double()
                loss_B = (err * err).numpy()
                bad = np.flatnonzero(~np.isfinite(loss_B))
                if len(bad):
                    i = int(bad[0])
                    message = (
                        f"non-finite regression loss ({loss_B[i]}) on {self.mode} sample {i} (sample index "
                        f"{int(batch.sample_index_B[i])}, task {int(batch.task_B[i])}): its prediction is "
                        "not finite"
                    )
                    if self.training.on_nonfinite == "raise":
                        raise FloatingPointError(message + " (on_nonfinite='raise')")
                    warnings.warn(message + "; its final reward is 0 (on_nonfinite='skip')", stacklevel=3)
                final_B = np.where(np.isfinite(loss_B), final_rewards(loss_N=loss_B), 0.0)
                return None, loss_B, final_B
            logits = self._masked_logits(pred, split.tasks_N[batch.indices_B])
            correct_B = (logits.argmax(dim=1).cpu() == targets).numpy()
        return correct_B, None, final_rewards(correct_N=correct_B)

    def _check_batch_finite(
        self,
        batch: RoutedBatch,
        groups: list[tuple[torch.Tensor, torch.Tensor]],
        depth: int,
        action_B: np.ndarray,
        rng_state: dict[str, torch.Tensor],
    ) -> None:
        """Raise ``FloatingPointError`` naming the first sample whose block output is non-finite."""
        finite = torch.stack([torch.isfinite(v).all() for _, v in groups]).all()
        if bool(finite):
            return
        torch.set_rng_state(rng_state["cpu"])  # as before the call: no draw happened
        if "cuda" in rng_state:
            torch.cuda.set_rng_state(rng_state["cuda"], self.device)
        worst = batch.size
        for idx, v in groups:
            rows = ~torch.isfinite(v.detach().reshape(len(idx), -1)).all(dim=1)
            if bool(rows.any()):
                worst = min(worst, int(idx[rows.cpu()].min()))
        action = int(action_B[worst])
        inputs_ok = all(
            bool(torch.isfinite(v.detach()).all()) for idx, v in batch.groups if bool((idx == worst).any())
        )
        where = self._block_name(depth, action) if inputs_ok else f"an input of depth {depth}"
        raise FloatingPointError(
            f"non-finite output of {where} for sample {worst} (sample index "
            f"{int(batch.sample_index_B[worst])}, task {int(batch.task_B[worst])}) at depth {depth}; nothing "
            "was changed (pass on_nonfinite='skip' to go on and skip the minibatch's training step)"
        )

    @torch.enable_grad()
    def _regraph_batch(self, batch: RoutedBatch) -> None:
        """Recompute a copied batch's representations with their graph (see :meth:`_regraph`)."""
        if batch.mode == "train":
            trunk_out = self._recompute_trunk(batch.indices_B, batch.rng_state, batch.trunk_out_B)
            groups = self.network.start_groups(trunk_out)
            for d in range(batch.depth):
                groups = self.network.route_depth(groups, d, torch.from_numpy(batch.routes_Bn[:, d]))
            batch.trunk_out_B, batch.groups = trunk_out, groups
        batch.regraph = False

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a run needs to continue bit-identically, as tensors and plain types.

        Only available between minibatches in training mode (e.g. at the end of an
        epoch), since a minibatch being routed holds an autograd graph.

        Raises:
            RuntimeError: When called mid-minibatch or in eval mode.
        """
        self._require_started()
        if (
            self.mode != "train"
            or self._batch is not None
            or self._sample is not None
            or self._routed is not None
        ):
            raise RuntimeError(
                "the engine can be saved only between training minibatches (e.g. at the end of an "
                "epoch, in train mode); finish the pending minibatch first"
            )
        state = {
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
        if self._aggregator is not None:  # the mean path's state is as it was before aggregators
            state["aggregator_rng"] = self._aggregator_rng.bit_generator.state
        return state

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
        aggregator_rng_backup = self._aggregator_rng.bit_generator.state
        try:
            self.network.load_state_dict(state["network"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.np_random.bit_generator.state = state["np_random"]
            if "aggregator_rng" in state:  # absent from a state saved with aggregator="mean"
                self._aggregator_rng.bit_generator.state = state["aggregator_rng"]
            counters = {k: int(state["counters"][k]) for k in self._COUNTERS}
        except Exception as err:
            self.network.load_state_dict(network_backup)
            self.optimizer.load_state_dict(optimizer_backup)
            self.np_random.bit_generator.state = rng_backup
            self._aggregator_rng.bit_generator.state = aggregator_rng_backup
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
        self._routed = None
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

        A pass routes every test sample once, in :attr:`eval_order`; a sample abandoned mid-route
        (``reset()`` before its last decision) is not scored, so ``evaluation()["samples"]``
        can then be smaller than the test split.
        """
        return (
            self.mode == "eval"
            and not self.sample_in_flight
            and self._routed is None
            and not self.has_next_sample
        )

    @property
    def has_next_sample(self) -> bool:
        """Whether :meth:`begin_sample` (or :meth:`begin_batch`) can draw another sample
        (always, in training)."""
        if self.mode == "train":
            return True
        pending = self._batch is not None and not self._batch.exhausted
        return pending or self._eval_cursor < len(self.split)

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("the engine has not been started; call restart(seed) (env.reset()) first")


class BlockTrainingStatus:
    """What a training script reads about the block training, on an env that holds an engine.

    :class:`~routing_env.env.RoutingEnv` and :class:`~routing_env.batched_env.BatchedRoutingEnv`
    mix these read-only properties in, so that no script reaches into the engine: the
    learning rate a metrics row records, the counts it logs, the optimizer a benchmark
    or a schedule of its own adjusts.
    """

    engine: RoutingEngine

    @property
    def block_lr(self) -> float:
        """The learning rate of the trunk and the function blocks now.

        An epoch's decay is applied when the next epoch's first minibatch is drawn, so
        read after an epoch's last sample it is still the rate that epoch trained with.
        """
        return self.engine.current_lr() if self.engine.started else self.engine.training.lr

    @property
    def block_optimizer(self) -> torch.optim.Optimizer:
        """The torch optimizer of the trunk and the blocks (built by :func:`routing_env.optim.make_optimizer`
        at ``reset(seed=...)``); changing its ``param_groups`` changes the block training."""
        self.engine._require_started()
        return self.engine.optimizer

    @property
    def block_updates(self) -> int:
        """Optimizer steps taken on the trunk and blocks in this run."""
        return self.engine.updates if self.engine.started else 0

    @property
    def skipped_updates(self) -> int:
        """Minibatches dropped for a non-finite loss (``on_nonfinite="skip"``) in this run."""
        return self.engine.skipped_updates if self.engine.started else 0

    @property
    def samples_routed(self) -> int:
        """Training samples whose route is complete in this run (evaluation not counted)."""
        return self.engine.samples_routed if self.engine.started else 0

    @property
    def epochs_completed(self) -> int:
        """Training epochs completed in this run (an epoch ends when its last sample is drawn)."""
        return self.engine.epoch if self.engine.started else 0

    @property
    def epoch_progress(self) -> float:
        """Fraction of the current training epoch drawn so far."""
        return self.engine.epoch_progress if self.engine.started else 0.0

    @property
    def eval_order(self) -> np.ndarray:
        """The fixed order (indices into the test split, tasks interleaved) of an evaluation pass."""
        return self.engine.eval_order
