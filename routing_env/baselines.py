"""The paper's non-routed baselines (section 4), as plain PyTorch models and training steps.

Every baseline shares the routed network's unrouted trunk (:class:`SimpleConvNet`,
with the same number of conv layers the env picks for the input size) and replaces the
routed fully connected layers by a static multi-task architecture of the same widths
(``D -> hidden -> ... -> hidden -> classes``, ReLU after every layer but the last):

- ``task-specific-1-fc``: the fc layers are shared by all tasks except the last, of
  which each task has its own (:class:`TaskSpecificFC` with ``task_specific_layers=1``).
- ``task-specific-all-fc``: each task has its own set of all the fc layers
  (``task_specific_layers=fc_layers``).
- ``cross-stitch-all-fc`` (Misra et al., 2016): one column of fc layers per task; the
  input of column ``i`` at layer ``l`` is ``sum_j w^l_ij v_{l-1,j}``, a learned linear
  combination of every column's previous activations (a cross-stitch unit after each
  hidden fc layer), initialized near the identity (:class:`CrossStitchFC`).
- ``soft-mixture-all-fc``: the same blocks as the routed network (one per task in each
  layer); hard selection is replaced by a softmax-weighted combination of all blocks of
  the previous layer, with the weights shared by all blocks of a layer
  (``w^l_i = w^l_i'``, :class:`SoftMixtureFC`).

Each sample belongs to one task; a column model reads its prediction from the column
(last-layer block) of that task, so only that task's classifier receives its gradient.

:func:`build_baseline` builds a model by name; :func:`train_epoch` and
:func:`evaluate_model` train and test it the way the env trains the routed network (same
minibatches of shuffled training samples, same loss with per-task class masks, same
optimizer settings and learning-rate schedule via :func:`make_optimizer` and
:func:`decay_lr`), so baselines and routing runs get the same budget.

Shape legend: ``N`` batch, ``D`` flat feature width, ``K`` classes (the widest task),
``T`` tasks (columns).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from routing_env.datasets.base import MultiTaskDataset, TaskSplit
from routing_env.network import SimpleConvNet, fc_block

__all__ = [
    "BASELINE_NAMES",
    "BaselineModel",
    "CrossStitchFC",
    "EpochStats",
    "SoftMixtureFC",
    "TaskSpecificFC",
    "build_baseline",
    "decay_lr",
    "default_conv_layers",
    "evaluate_model",
    "make_optimizer",
    "train_epoch",
]


#: Names :func:`build_baseline` accepts, in the paper's order.
BASELINE_NAMES: tuple[str, ...] = (
    "task-specific-1-fc",
    "task-specific-all-fc",
    "cross-stitch-all-fc",
    "soft-mixture-all-fc",
)


def default_conv_layers(input_shape: Sequence[int]) -> int:
    """The trunk depth :class:`~routing_env.RoutingEnv` picks for inputs of ``(C, H, W)``.

    4 conv layers (the paper) for images of at least 16x16, fewer for smaller ones (each
    layer halves the size): 2 for digits-MTL's 8x8.
    """
    _, h, w = (int(s) for s in input_shape)
    return 4 if min(h, w) >= 16 else max(1, int(np.log2(min(h, w))) - 1)


def _widths(trunk_width: int, hidden_width: int, output_size: int, fc_layers: int) -> list[int]:
    return [trunk_width] + [hidden_width] * (fc_layers - 1) + [output_size]


def _check_sizes(num_tasks: int, hidden_width: int, output_size: int, fc_layers: int) -> None:
    for name, value in (
        ("num_tasks", num_tasks),
        ("hidden_width", hidden_width),
        ("output_size", output_size),
        ("fc_layers", fc_layers),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_tasks(tasks_N: torch.Tensor, num_tasks: int, batch: int) -> None:
    if tasks_N.dim() != 1 or tasks_N.shape[0] != batch:
        raise ValueError(
            f"tasks must be a 1-d tensor with one task id per sample ({batch}), got {tuple(tasks_N.shape)}"
        )
    if batch and (int(tasks_N.min()) < 0 or int(tasks_N.max()) >= num_tasks):
        raise ValueError(
            f"task ids must lie in [0, {num_tasks}), got [{int(tasks_N.min())}, {int(tasks_N.max())}]"
        )


def _per_task(
    blocks: nn.ModuleList, x_ND: torch.Tensor, tasks_N: torch.Tensor, out_width: int
) -> torch.Tensor:
    """Apply ``blocks[t]`` to the samples of task ``t`` only (one call per task present)."""
    out = x_ND.new_empty((x_ND.shape[0], out_width))
    for t in torch.unique(tasks_N).tolist():
        idx = (tasks_N == t).nonzero(as_tuple=True)[0]
        out[idx] = blocks[t](x_ND[idx])
    return out


class BaselineModel(nn.Module):
    """A trunk followed by a multi-task head; ``forward(x_NCHW, tasks_N) -> logits_NK``.

    Args:
        trunk: The shared unrouted trunk (e.g. :class:`SimpleConvNet`).
        head: A module called as ``head(features_ND, tasks_N)``.
        name: The baseline's name (for logs).
    """

    def __init__(self, *, trunk: nn.Module, head: nn.Module, name: str) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.name = name

    def forward(self, x_NCHW: torch.Tensor, tasks_N: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x_NCHW), tasks_N)


class TaskSpecificFC(nn.Module):
    """Shared fc layers followed by task-specific ones (``task-specific-{1,all}-fc``).

    Args:
        in_features: ``D``, the trunk's flat output width.
        hidden_width: Units of every hidden fc layer (the paper: 128).
        output_size: ``K``, classifier width (the most classes over tasks).
        num_tasks: ``T``.
        fc_layers: Fully connected layers in all (the paper: 3).
        task_specific_layers: How many of the last fc layers are private to each task:
            1 (``task-specific-1-fc``) up to ``fc_layers`` (``task-specific-all-fc``).

    Raises:
        ValueError: On non-positive sizes or ``task_specific_layers`` outside ``[1, fc_layers]``.
    """

    def __init__(
        self,
        *,
        in_features: int,
        hidden_width: int,
        output_size: int,
        num_tasks: int,
        fc_layers: int = 3,
        task_specific_layers: int = 1,
    ) -> None:
        super().__init__()
        _check_sizes(num_tasks, hidden_width, output_size, fc_layers)
        if not 1 <= task_specific_layers <= fc_layers:
            raise ValueError(f"task_specific_layers must be in [1, {fc_layers}], got {task_specific_layers}")
        widths = _widths(in_features, hidden_width, output_size, fc_layers)
        shared = fc_layers - task_specific_layers
        self.num_tasks = num_tasks
        self.output_size = output_size
        self.shared = nn.Sequential(*[fc_block(widths[i], widths[i + 1]) for i in range(shared)])
        self.columns = nn.ModuleList(
            nn.Sequential(
                *[
                    fc_block(widths[i], widths[i + 1], activation=i < fc_layers - 1)
                    for i in range(shared, fc_layers)
                ]
            )
            for _ in range(num_tasks)
        )

    def forward(self, x_ND: torch.Tensor, tasks_N: torch.Tensor) -> torch.Tensor:
        _check_tasks(tasks_N, self.num_tasks, x_ND.shape[0])
        return _per_task(self.columns, self.shared(x_ND), tasks_N, self.output_size)


class _ColumnsFC(nn.Module):
    """``T`` columns of fc layers whose hidden activations are mixed between layers."""

    def __init__(
        self, *, in_features: int, hidden_width: int, output_size: int, num_tasks: int, fc_layers: int
    ) -> None:
        super().__init__()
        _check_sizes(num_tasks, hidden_width, output_size, fc_layers)
        widths = _widths(in_features, hidden_width, output_size, fc_layers)
        self.num_tasks = num_tasks
        self.output_size = output_size
        self.fc_layers = fc_layers
        # layers[l][i]: block of column (task) i in fc layer l, as in the routed network
        self.layers = nn.ModuleList(
            nn.ModuleList(
                fc_block(widths[i], widths[i + 1], activation=i < fc_layers - 1) for _ in range(num_tasks)
            )
            for i in range(fc_layers)
        )

    def layer(self, index: int) -> nn.ModuleList:
        """The blocks of fc layer ``index``, one per column (task)."""
        return cast(nn.ModuleList, self.layers[index])

    def mix(self, layer: int, v_TND: torch.Tensor) -> torch.Tensor:
        """Inputs of layer ``layer`` (>= 1) of every column from the previous activations."""
        raise NotImplementedError

    def forward(self, x_ND: torch.Tensor, tasks_N: torch.Tensor) -> torch.Tensor:
        _check_tasks(tasks_N, self.num_tasks, x_ND.shape[0])
        last = self.fc_layers - 1
        if last == 0:  # a single fc layer: nothing to mix
            return _per_task(self.layer(0), x_ND, tasks_N, self.output_size)
        # layer 0: every column reads the shared trunk output
        v_TND = torch.stack([block(x_ND) for block in self.layer(0)])
        for index in range(1, last):
            u_TND = self.mix(index, v_TND)
            v_TND = torch.stack([block(u_TND[i]) for i, block in enumerate(self.layer(index))])
        u_TND = self.mix(last, v_TND)
        # the last layer: each sample only needs its own task's classifier
        n = torch.arange(x_ND.shape[0], device=x_ND.device)
        return _per_task(self.layer(last), u_TND[tasks_N, n], tasks_N, self.output_size)


class CrossStitchFC(_ColumnsFC):
    """One column of fc layers per task with a cross-stitch unit after each hidden fc layer.

    The input of column ``i`` at layer ``l >= 1`` is ``sum_j w^l_ij v_{l-1,j}``, where
    ``v_{l-1,j}`` is column ``j``'s activation at layer ``l - 1`` (Misra et al., 2016).
    ``w^l`` starts at ``self_weight`` on the diagonal and ``(1 - self_weight) / (T - 1)``
    elsewhere (rows sum to 1): near the identity, so columns start almost independent.

    Args:
        in_features, hidden_width, output_size, num_tasks, fc_layers: As in
            :class:`TaskSpecificFC`.
        self_weight: Initial diagonal of each cross-stitch matrix, in ``[0, 1]``
            (Misra et al. use 0.9).

    Raises:
        ValueError: On non-positive sizes or ``self_weight`` outside ``[0, 1]``.
    """

    def __init__(
        self,
        *,
        in_features: int,
        hidden_width: int,
        output_size: int,
        num_tasks: int,
        fc_layers: int = 3,
        self_weight: float = 0.9,
    ) -> None:
        super().__init__(
            in_features=in_features,
            hidden_width=hidden_width,
            output_size=output_size,
            num_tasks=num_tasks,
            fc_layers=fc_layers,
        )
        if not 0.0 <= self_weight <= 1.0:
            raise ValueError(f"self_weight must be in [0, 1], got {self_weight}")
        self.self_weight = float(self_weight)
        self.stitch = nn.ParameterList(
            nn.Parameter(torch.empty(num_tasks, num_tasks)) for _ in range(fc_layers - 1)
        )
        self.reset_stitch()

    def reset_stitch(self) -> None:
        """Set every cross-stitch matrix to its near-identity initial value."""
        t = self.num_tasks
        other = (1.0 - self.self_weight) / (t - 1) if t > 1 else 0.0
        with torch.no_grad():
            for w_TT in self.stitch:
                w_TT.fill_(other)
                w_TT.fill_diagonal_(self.self_weight if t > 1 else 1.0)

    def mix(self, layer: int, v_TND: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,jnd->ind", self.stitch[layer - 1], v_TND)


class SoftMixtureFC(_ColumnsFC):
    """The routed network's blocks with hard selection replaced by a per-layer softmax.

    Every block of layer ``l >= 1`` reads ``sum_j softmax(a^l)_j v_{l-1,j}``: the same
    mixture of the previous layer's blocks, with one weight vector ``a^l`` per layer
    shared by all its blocks (``w^l_i = w^l_i'``), initialized to 0 (a uniform mixture).
    Layer 0's blocks read the trunk output; a sample's prediction is its task's block
    of the last layer.

    Args:
        in_features, hidden_width, output_size, num_tasks, fc_layers: As in
            :class:`TaskSpecificFC`.
    """

    def __init__(
        self, *, in_features: int, hidden_width: int, output_size: int, num_tasks: int, fc_layers: int = 3
    ) -> None:
        super().__init__(
            in_features=in_features,
            hidden_width=hidden_width,
            output_size=output_size,
            num_tasks=num_tasks,
            fc_layers=fc_layers,
        )
        self.mixture_logits = nn.ParameterList(
            nn.Parameter(torch.zeros(num_tasks)) for _ in range(fc_layers - 1)
        )

    def mixture_weights(self, layer: int) -> torch.Tensor:
        """``softmax(a^layer)``, the weights of the previous layer's blocks (``layer >= 1``)."""
        return torch.softmax(self.mixture_logits[layer - 1], dim=0)

    def mix(self, layer: int, v_TND: torch.Tensor) -> torch.Tensor:
        u_ND = torch.einsum("j,jnd->nd", self.mixture_weights(layer), v_TND)
        return u_ND.unsqueeze(0).expand(self.num_tasks, -1, -1)


def build_baseline(
    name: str,
    *,
    dataset: MultiTaskDataset,
    conv_layers: int | None = None,
    filters: int = 32,
    hidden_width: int = 128,
    fc_layers: int = 3,
    cross_stitch_self_weight: float = 0.9,
    seed: int = 0,
) -> BaselineModel:
    """Build the baseline called ``name`` for ``dataset`` with weights drawn from ``seed``.

    Args:
        name: One of :data:`BASELINE_NAMES`.
        dataset: The multi-task data (sets the input shape, tasks and classes).
        conv_layers: Trunk depth; None picks what the env picks (:func:`default_conv_layers`).
        filters: Filters per conv layer (the paper: 32).
        hidden_width: Units of the hidden fc layers (the paper: 128).
        fc_layers: Fully connected layers after the trunk (the paper: 3).
        cross_stitch_self_weight: Initial diagonal of the cross-stitch units.
        seed: Seed of the initial weights (torch's global generator is left untouched).

    Raises:
        ValueError: On an unknown name, a regression dataset, or invalid sizes.
    """
    if name not in BASELINE_NAMES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINE_NAMES)}")
    if not isinstance(dataset, MultiTaskDataset):
        raise TypeError(f"dataset must be a MultiTaskDataset, got {type(dataset).__name__}")
    if dataset.is_regression:
        raise ValueError(f"the baselines are classifiers; dataset {dataset.name!r} is a regression dataset")
    c, h, w = dataset.input_shape
    if conv_layers is None:
        conv_layers = default_conv_layers(dataset.input_shape)
    if min(h, w) < 2**conv_layers:
        raise ValueError(
            f"inputs of {h}x{w} pixels are too small for {conv_layers} conv layers; "
            f"pass conv_layers <= {max(1, int(math.log2(min(h, w))))}"
        )
    sizes = {
        "in_features": filters * (h // 2**conv_layers) * (w // 2**conv_layers),
        "hidden_width": hidden_width,
        "output_size": max(dataset.num_classes),
        "num_tasks": dataset.num_tasks,
        "fc_layers": fc_layers,
    }
    with torch.random.fork_rng(devices=[]):  # the CPU generator only: CUDA's are left alone
        torch.random.default_generator.manual_seed(seed)
        trunk = SimpleConvNet(in_channels=c, conv_layers=conv_layers, filters=filters)
        head: nn.Module
        if name == "task-specific-1-fc":
            head = TaskSpecificFC(**sizes, task_specific_layers=1)
        elif name == "task-specific-all-fc":
            head = TaskSpecificFC(**sizes, task_specific_layers=fc_layers)
        elif name == "cross-stitch-all-fc":
            head = CrossStitchFC(**sizes, self_weight=cross_stitch_self_weight)
        else:
            head = SoftMixtureFC(**sizes)
    return BaselineModel(trunk=trunk, head=head, name=name)


# ----------------------------------------------------------------- training
def make_optimizer(
    model: nn.Module,
    *,
    optimizer: Literal["sgd", "adam"] = "sgd",
    lr: float = 1e-2,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """The optimizer the env uses for the routed network, with the same settings."""
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")


def decay_lr(optimizer: torch.optim.Optimizer, *, epoch: int, every: int | None, factor: float) -> None:
    """Multiply the learning rate by ``factor`` when ``epoch`` (completed) is a multiple of ``every``.

    The env's schedule: call it after each epoch with the number of completed epochs.
    """
    if every is not None and epoch > 0 and epoch % every == 0:
        for group in optimizer.param_groups:
            group["lr"] *= factor


def _class_mask(dataset: MultiTaskDataset, output_size: int) -> torch.Tensor | None:
    if len(set(dataset.num_classes)) == 1:
        return None
    k = torch.arange(output_size)
    return k[None, :] < torch.tensor(dataset.num_classes)[:, None]


def _masked(logits_NK: torch.Tensor, tasks_N: torch.Tensor, mask_TK: torch.Tensor | None) -> torch.Tensor:
    # a task with fewer classes than the classifier width never predicts the others (as in the env)
    if mask_TK is None:
        return logits_NK
    return logits_NK.masked_fill(~mask_TK.to(logits_NK.device)[tasks_N], float("-inf"))


@dataclass
class EpochStats:
    """Counts of one pass over a split.

    Attributes:
        correct_T: Correct predictions per task.
        total_T: Samples per task.
        loss_sum: Sum of the per-sample losses (training only; 0 in evaluation).
        updates: Optimizer steps taken (training only).
    """

    correct_T: np.ndarray
    total_T: np.ndarray
    loss_sum: float = 0.0
    updates: int = 0

    @property
    def accuracy(self) -> float:
        return float(self.correct_T.sum() / max(1, self.total_T.sum()))

    @property
    def accuracy_per_task(self) -> list[float]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.correct_T / self.total_T).tolist()

    @property
    def samples(self) -> int:
        return int(self.total_T.sum())


def train_epoch(
    model: BaselineModel,
    optimizer: torch.optim.Optimizer,
    dataset: MultiTaskDataset,
    *,
    batch_size: int,
    rng: np.random.Generator,
    device: str | torch.device = "cpu",
    callback: Callable[[EpochStats], None] | None = None,
) -> EpochStats:
    """One epoch over the shuffled training split in minibatches of ``batch_size``.

    As in the env: one optimizer step per minibatch on the mean cross-entropy (with the
    per-task class masks), gradients of unused parameters left ``None`` so the optimizer
    skips them. The training accuracy counts each sample's prediction made in the
    forward pass of its own minibatch, before that minibatch's step (as the env's
    training accuracy counts predictions along the sampled routes).

    Args:
        model: The baseline (trained in place; put in train mode).
        optimizer: Its optimizer.
        dataset: The multi-task data.
        batch_size: Samples per optimizer step.
        rng: Generator of the data order (advanced by one permutation).
        device: Where the model lives.
        callback: Called after each minibatch with the running stats.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    split = dataset.train
    mask_TK = _class_mask(dataset, max(dataset.num_classes))
    stats = EpochStats(
        correct_T=np.zeros(dataset.num_tasks, dtype=np.int64),
        total_T=np.zeros(dataset.num_tasks, dtype=np.int64),
    )
    model.train()
    perm = torch.from_numpy(rng.permutation(len(split)).astype(np.int64))
    for start in range(0, len(perm), batch_size):
        idx = perm[start : start + batch_size]
        x = dataset.normalize(split.inputs_NCHW[idx]).to(device)
        tasks, targets = split.tasks_N[idx], split.targets_N[idx]
        logits = _masked(model(x, tasks.to(device)), tasks, mask_TK)
        loss = F.cross_entropy(logits, targets.to(device))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at update {stats.updates + 1}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        stats.updates += 1
        stats.loss_sum += float(loss.detach()) * len(idx)
        _count(stats, logits.detach(), tasks, targets)
        if callback is not None:
            callback(stats)
    return stats


def _count(
    stats: EpochStats, logits_NK: torch.Tensor, tasks_N: torch.Tensor, targets_N: torch.Tensor
) -> None:
    correct = (logits_NK.argmax(dim=1).cpu() == targets_N).numpy()
    tasks = tasks_N.numpy()
    np.add.at(stats.correct_T, tasks, correct.astype(np.int64))
    np.add.at(stats.total_T, tasks, 1)


@torch.no_grad()
def evaluate_model(
    model: BaselineModel,
    dataset: MultiTaskDataset,
    *,
    split: TaskSplit | None = None,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> EpochStats:
    """Accuracy per task on ``split`` (default: the test split), model in eval mode."""
    split = dataset.test if split is None else split
    mask_TK = _class_mask(dataset, max(dataset.num_classes))
    stats = EpochStats(
        correct_T=np.zeros(dataset.num_tasks, dtype=np.int64),
        total_T=np.zeros(dataset.num_tasks, dtype=np.int64),
    )
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(split), batch_size):
            idx = slice(start, start + batch_size)
            x = dataset.normalize(split.inputs_NCHW[idx]).to(device)
            tasks, targets = split.tasks_N[idx], split.targets_N[idx]
            logits = _masked(model(x, tasks.to(device)), tasks, mask_TK)
            _count(stats, logits, tasks, targets)
    finally:
        model.train(was_training)
    return stats
