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

Beyond the paper (:data:`EXTRA_BASELINE_NAMES`):

- ``mmoe-all-fc`` (multi-gate mixture of experts, Ma et al., KDD 2018): at each hidden
  fc layer, shared experts (as many as ``routing-all-fc`` has blocks per layer) mixed by
  a softmax gate of each task's own, conditioned on the layer's input; a classifier
  per task (:class:`MMoEFC`).
- ``gumbel-router-all-fc``: the routed network's blocks with a differentiable router
  instead of an RL one: per-task logits over the blocks of each layer, sampled with a
  straight-through Gumbel-softmax in training under a decaying temperature, greedy
  (argmax) in evaluation (:class:`GumbelRouterFC`).

Each sample belongs to one task; a column model reads its prediction from the column
(last-layer block) of that task, so only that task's classifier receives its gradient.

:func:`build_baseline` builds a model by name; :func:`train_epoch` and
:func:`evaluate_model` train and test it the way the env trains the routed network (same
minibatches of shuffled training samples, same loss with per-task class masks, same
optimizer settings and learning-rate schedule via :func:`model_optimizer`
(:func:`routing_env.optim.make_optimizer`) and :class:`routing_env.optim.StepDecay`), so baselines and routing runs get the same budget.

Speed. On the CPU a head applies each task's blocks to that task's samples only (one
small matmul per task present: the fewest FLOPs, and reading the task ids costs nothing
there). On an accelerator that loop would wait on the device once per task and launch
one set of small kernels per task, so a head instead stacks its blocks' weights and
computes every task in one batched matmul (``torch.baddbmm`` over ``[T, N, D]``, or one
GEMM when all tasks read the same input), then gathers each sample's own task
(``batched``, chosen by the inputs' device unless set). :class:`DeviceSplit` holds a
split on the device once; :func:`train_epoch` and :func:`evaluate_model` then gather and
normalize minibatches there and keep the counts and losses on the device, reading them
once per pass, so that no step waits on the device.

Shape legend: ``N`` batch, ``D`` flat feature width (``I``/``O``: a block's input and
output width), ``K`` classes (the widest task), ``T`` tasks (columns).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from routing_env import optim
from routing_env.datasets.base import MultiTaskDataset, TaskSplit
from routing_env.network import SimpleConvNet, fc_block

__all__ = [
    "ALL_BASELINE_NAMES",
    "BASELINE_NAMES",
    "EVAL_BATCH_SIZE_CPU",
    "EVAL_BATCH_SIZE_DEVICE",
    "EXTRA_BASELINE_NAMES",
    "BaselineModel",
    "CrossStitchFC",
    "DeviceSplit",
    "EpochStats",
    "GumbelRouterFC",
    "MMoEFC",
    "SoftMixtureFC",
    "TaskSpecificFC",
    "build_baseline",
    "decay_lr",
    "default_conv_layers",
    "evaluate_model",
    "gumbel_temperature",
    "model_optimizer",
    "train_epoch",
]


#: The paper's baselines, in the paper's order.
BASELINE_NAMES: tuple[str, ...] = (
    "task-specific-1-fc",
    "task-specific-all-fc",
    "cross-stitch-all-fc",
    "soft-mixture-all-fc",
)

#: Baselines beyond the paper: per-task soft routing and a differentiable router.
EXTRA_BASELINE_NAMES: tuple[str, ...] = ("mmoe-all-fc", "gumbel-router-all-fc")

#: Every name :func:`build_baseline` accepts: the paper's, then those beyond it.
ALL_BASELINE_NAMES: tuple[str, ...] = BASELINE_NAMES + EXTRA_BASELINE_NAMES

#: The models whose number of blocks per routed layer may be set (``blocks_per_layer``).
_BLOCK_COUNT_MODELS = frozenset(EXTRA_BASELINE_NAMES)


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


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def _check_batched(batched: bool | None) -> bool | None:
    if batched is not None and not isinstance(batched, bool):
        raise TypeError(f"batched must be True, False or None (by device), got {batched!r}")
    return batched


def _runs_batched(batched: bool | None, x: torch.Tensor) -> bool:
    """``batched``, or for None whether ``x`` is off the CPU (where a per-task loop waits on the device)."""
    return x.device.type != "cpu" if batched is None else batched


def _check_tasks(tasks_N: torch.Tensor, num_tasks: int, batch: int, *, check_range: bool = True) -> None:
    # the shape is host metadata; the range check reads the ids (a device sync off the CPU)
    if tasks_N.dim() != 1 or tasks_N.shape[0] != batch:
        raise ValueError(
            f"tasks must be a 1-d tensor with one task id per sample ({batch}), got {tuple(tasks_N.shape)}"
        )
    if check_range and batch and (int(tasks_N.min()) < 0 or int(tasks_N.max()) >= num_tasks):
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


# The batched forms: the fc blocks of one layer (``fc_block``: Linear, then ReLU unless a
# classifier), one per task, computed together. Their weights are stacked on every call,
# so each block keeps its own parameters (state-dict keys and optimizer state as in the
# per-task form) and autograd hands each its slice of the gradient.
def _stacked(blocks: Iterable[nn.Module]) -> tuple[torch.Tensor, torch.Tensor]:
    """``W_TOI`` and ``b_TO``: the Linear weights and biases of ``T`` fc blocks."""
    linears = [cast(nn.Linear, cast(nn.Sequential, block)[0]) for block in blocks]
    return torch.stack([m.weight for m in linears]), torch.stack([m.bias for m in linears])


def _all_tasks_shared(blocks: Iterable[nn.Module], x_NI: torch.Tensor, *, relu: bool) -> torch.Tensor:
    """``v_TNO``: every block applied to the same input ``x_NI``, as one GEMM."""
    W_TOI, b_TO = _stacked(blocks)
    t, o, i = W_TOI.shape
    v_TNO = torch.addmm(b_TO.reshape(t * o), x_NI, W_TOI.reshape(t * o, i).t()).view(-1, t, o).transpose(0, 1)
    return F.relu(v_TNO) if relu else v_TNO


def _all_tasks(blocks: Iterable[nn.Module], u_TNI: torch.Tensor, *, relu: bool) -> torch.Tensor:
    """``v_TNO``: block ``t`` applied to ``u_TNI[t]`` for every ``t``, as one batched matmul."""
    W_TOI, b_TO = _stacked(blocks)
    v_TNO = torch.baddbmm(b_TO.unsqueeze(1), u_TNI, W_TOI.transpose(1, 2))
    return F.relu(v_TNO) if relu else v_TNO


def _own_task(v_TNK: torch.Tensor, tasks_N: torch.Tensor) -> torch.Tensor:
    """``v_NK``: each sample's row of its own task."""
    return v_TNK[tasks_N, torch.arange(v_TNK.shape[1], device=v_TNK.device)]


class BaselineModel(nn.Module):
    """A trunk followed by a multi-task head; ``forward(x_NCHW, tasks_N) -> logits_NK``.

    Args:
        trunk: The shared unrouted trunk (e.g. :class:`SimpleConvNet`).
        head: A module called as ``head(features_ND, tasks_N, check_tasks=...)``
            (:class:`TaskSpecificFC`, :class:`CrossStitchFC`, :class:`SoftMixtureFC`,
            :class:`MMoEFC`, :class:`GumbelRouterFC`).
        name: The baseline's name (for logs).
    """

    def __init__(self, *, trunk: nn.Module, head: nn.Module, name: str) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.name = name

    def forward(
        self, x_NCHW: torch.Tensor, tasks_N: torch.Tensor, *, check_tasks: bool = True
    ) -> torch.Tensor:
        """Logits ``[N, K]`` of each sample from its own task's classifier.

        Args:
            x_NCHW: Normalized inputs.
            tasks_N: Task id of each sample, on the inputs' device.
            check_tasks: Check that every id lies in ``[0, T)``. The check reads the ids
                on the host: free on the CPU, a wait on the device elsewhere, so
                :func:`train_epoch` and :func:`evaluate_model` skip it for a
                :class:`DeviceSplit`, whose ids were checked once.
        """
        return self.head(self.trunk(x_NCHW), tasks_N, check_tasks=check_tasks)

    def task_parameters(self, task: int) -> list[nn.Parameter]:
        """The parameters only samples of ``task`` use (its own column or classifier).

        :func:`train_epoch` sets their gradients to None in a minibatch without that task,
        so that the optimizer skips them whether the head ran per task or batched.
        """
        head_parameters = getattr(self.head, "task_parameters", None)
        return list(head_parameters(task)) if callable(head_parameters) else []

    def routing_parameters(self) -> list[nn.Parameter]:
        """The parameters that choose routes rather than compute (the Gumbel router's
        logits; none for the other baselines): :func:`model_optimizer` can give them a
        learning rate of their own."""
        head_parameters = getattr(self.head, "routing_parameters", None)
        return list(head_parameters()) if callable(head_parameters) else []


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
        batched: How the private layers run. False: each task's column on that task's
            samples only (one small matmul per task present, reading the task ids on the
            host). True: every column on every sample in one batched matmul, then each
            sample's own column is gathered (``T`` times the FLOPs, no host sync: the
            fast form on a GPU). None (default): True off the CPU, False on it. The two
            agree up to float rounding; batched, the columns of tasks absent from the
            batch get zero gradients instead of None (:func:`train_epoch` drops them).
            A plain attribute, so it can be changed after construction.

    Raises:
        ValueError: On non-positive sizes or ``task_specific_layers`` outside ``[1, fc_layers]``.
        TypeError: On a ``batched`` that is not a bool or None.
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
        batched: bool | None = None,
    ) -> None:
        super().__init__()
        _check_sizes(num_tasks, hidden_width, output_size, fc_layers)
        if not 1 <= task_specific_layers <= fc_layers:
            raise ValueError(f"task_specific_layers must be in [1, {fc_layers}], got {task_specific_layers}")
        widths = _widths(in_features, hidden_width, output_size, fc_layers)
        shared = fc_layers - task_specific_layers
        self.num_tasks = num_tasks
        self.output_size = output_size
        self.batched = _check_batched(batched)
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

    def forward(self, x_ND: torch.Tensor, tasks_N: torch.Tensor, *, check_tasks: bool = True) -> torch.Tensor:
        _check_tasks(tasks_N, self.num_tasks, x_ND.shape[0], check_range=check_tasks)
        h_ND = self.shared(x_ND)
        if not _runs_batched(self.batched, x_ND):
            return _per_task(self.columns, h_ND, tasks_N, self.output_size)
        columns = [cast(nn.Sequential, column) for column in self.columns]
        private = len(columns[0])
        # the first private layer reads the shared features: one GEMM for every column
        v_TNO = _all_tasks_shared([c[0] for c in columns], h_ND, relu=private > 1)
        for depth in range(1, private):
            v_TNO = _all_tasks([c[depth] for c in columns], v_TNO, relu=depth < private - 1)
        return _own_task(v_TNO, tasks_N)

    def task_parameters(self, task: int) -> list[nn.Parameter]:
        """The parameters of task ``task``'s private column."""
        return list(self.columns[task].parameters())


class _ColumnsFC(nn.Module):
    """``T`` columns of fc layers whose hidden activations are mixed between layers."""

    def __init__(
        self,
        *,
        in_features: int,
        hidden_width: int,
        output_size: int,
        num_tasks: int,
        fc_layers: int,
        batched: bool | None,
    ) -> None:
        super().__init__()
        _check_sizes(num_tasks, hidden_width, output_size, fc_layers)
        widths = _widths(in_features, hidden_width, output_size, fc_layers)
        self.num_tasks = num_tasks
        self.output_size = output_size
        self.fc_layers = fc_layers
        self.batched = _check_batched(batched)
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

    def _layer_input(self, layer: int, v_TND: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """:meth:`mix`, or ``(u_ND, True)`` when every column reads the same input."""
        return self.mix(layer, v_TND), False

    def task_parameters(self, task: int) -> list[nn.Parameter]:
        """The parameters of task ``task``'s classifier (the hidden blocks feed every task)."""
        return list(self.layer(self.fc_layers - 1)[task].parameters())

    def forward(self, x_ND: torch.Tensor, tasks_N: torch.Tensor, *, check_tasks: bool = True) -> torch.Tensor:
        _check_tasks(tasks_N, self.num_tasks, x_ND.shape[0], check_range=check_tasks)
        if _runs_batched(self.batched, x_ND):
            return self._forward_batched(x_ND, tasks_N)
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

    def _forward_batched(self, x_ND: torch.Tensor, tasks_N: torch.Tensor) -> torch.Tensor:
        # every layer as one batched matmul over the columns (no per-task loop, no host sync)
        last = self.fc_layers - 1
        v_TND = _all_tasks_shared(self.layer(0), x_ND, relu=last > 0)
        for index in range(1, last + 1):
            u, shared = self._layer_input(index, v_TND)
            blocks, relu = self.layer(index), index < last
            v_TND = _all_tasks_shared(blocks, u, relu=relu) if shared else _all_tasks(blocks, u, relu=relu)
        # the last layer ran every classifier on every sample: keep each sample's own task's
        return _own_task(v_TND, tasks_N)


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
        batched: Every column and classifier in one batched matmul per layer (True), or
            one block call per column and a per-task classifier (False); None (default):
            batched off the CPU. As in :class:`TaskSpecificFC`.

    Raises:
        ValueError: On non-positive sizes or ``self_weight`` outside ``[0, 1]``.
        TypeError: On a ``batched`` that is not a bool or None.
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
        batched: bool | None = None,
    ) -> None:
        super().__init__(
            in_features=in_features,
            hidden_width=hidden_width,
            output_size=output_size,
            num_tasks=num_tasks,
            fc_layers=fc_layers,
            batched=batched,
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
        batched: Every block of a layer as one GEMM (they all read the same mixture) and
            every classifier on every sample (True), or one call per block and a per-task
            classifier (False); None (default): batched off the CPU.

    Raises:
        ValueError: On non-positive sizes.
        TypeError: On a ``batched`` that is not a bool or None.
    """

    def __init__(
        self,
        *,
        in_features: int,
        hidden_width: int,
        output_size: int,
        num_tasks: int,
        fc_layers: int = 3,
        batched: bool | None = None,
    ) -> None:
        super().__init__(
            in_features=in_features,
            hidden_width=hidden_width,
            output_size=output_size,
            num_tasks=num_tasks,
            fc_layers=fc_layers,
            batched=batched,
        )
        self.mixture_logits = nn.ParameterList(
            nn.Parameter(torch.zeros(num_tasks)) for _ in range(fc_layers - 1)
        )

    def mixture_weights(self, layer: int) -> torch.Tensor:
        """``softmax(a^layer)``, the weights of the previous layer's blocks (``layer >= 1``)."""
        return torch.softmax(self.mixture_logits[layer - 1], dim=0)

    def mix(self, layer: int, v_TND: torch.Tensor) -> torch.Tensor:
        return self._layer_input(layer, v_TND)[0].unsqueeze(0).expand(self.num_tasks, -1, -1)

    def _layer_input(self, layer: int, v_TND: torch.Tensor) -> tuple[torch.Tensor, bool]:
        # every block of the layer reads the same mixture
        return torch.einsum("j,jnd->nd", self.mixture_weights(layer), v_TND), True


class MMoEFC(nn.Module):
    """Multi-gate mixture of experts (Ma et al., KDD 2018) over the routed network's fc layers.

    Each hidden fc layer ``l`` holds ``E`` experts (fc blocks, by default one per task:
    the blocks per layer of ``routing-all-fc``) and, for every task ``t``, a softmax gate
    ``g^l_t(h) = softmax(W^l_t h + c^l_t)`` over them. A sample of task ``t`` goes
    ``h^0 = trunk(x)``, ``h^{l+1} = sum_e g^l_t(h^l)_e expert^l_e(h^l)``, and its
    prediction is task ``t``'s own classifier (one per task, as the ``-all-fc``
    baselines' last layer) on the last ``h``. Each task thus has its own gates at every
    layer; the experts are shared. With one MoE layer this is MMoE as published (shared
    experts, one gate per task, task towers); stacking it over the hidden fc layers
    gives the same depth and blocks as ``routing-all-fc`` and ``soft-mixture-all-fc``.

    The gates are input-conditioned as in MMoE: a gate reads the representation the
    experts of its layer read (the trunk output at layer 0, the task's own mixture
    after). They start at zero weights and biases (a uniform mixture, as
    ``soft-mixture-all-fc``'s zero logits), so every task starts from the same mixture
    and tasks diverge as they train. Each task's gates are its own parameters
    (:meth:`task_parameters`), skipped by the optimizer in a minibatch without the task.

    Cost: every sample runs through every expert of a layer (one GEMM over the stacked
    experts' weights) plus one small GEMM for every task's gate (``T * E`` outputs, of
    which each sample keeps its own task's ``E``); no per-task loop and no host read
    except in the classifier layer, which loops over the tasks present on the CPU
    (``batched`` False) as :class:`TaskSpecificFC` does.

    Args:
        in_features, hidden_width, output_size, num_tasks, fc_layers: As in
            :class:`TaskSpecificFC`.
        experts_per_layer: ``E``, experts per hidden fc layer (None: ``num_tasks``).
        batched: How the per-task classifiers run, as in :class:`TaskSpecificFC`.

    Raises:
        ValueError: On non-positive sizes.
        TypeError: On a ``batched`` that is not a bool or None.
    """

    def __init__(
        self,
        *,
        in_features: int,
        hidden_width: int,
        output_size: int,
        num_tasks: int,
        fc_layers: int = 3,
        experts_per_layer: int | None = None,
        batched: bool | None = None,
    ) -> None:
        super().__init__()
        _check_sizes(num_tasks, hidden_width, output_size, fc_layers)
        experts = num_tasks if experts_per_layer is None else experts_per_layer
        _check_count("experts_per_layer", experts)
        widths = _widths(in_features, hidden_width, output_size, fc_layers)
        self.num_tasks = num_tasks
        self.num_experts = experts
        self.output_size = output_size
        self.fc_layers = fc_layers
        self.batched = _check_batched(batched)
        # experts[l][e], gates[l][t]: fc layer l's experts and task t's gate over them
        self.experts = nn.ModuleList(
            nn.ModuleList(fc_block(widths[i], widths[i + 1]) for _ in range(experts))
            for i in range(fc_layers - 1)
        )
        self.gates = nn.ModuleList(
            nn.ModuleList(nn.Linear(widths[i], experts) for _ in range(num_tasks))
            for i in range(fc_layers - 1)
        )
        with torch.no_grad():
            for gate in self.gates.modules():
                if isinstance(gate, nn.Linear):
                    gate.weight.zero_()
                    gate.bias.zero_()
        self.classifiers = nn.ModuleList(
            fc_block(widths[-2], output_size, activation=False) for _ in range(num_tasks)
        )

    def gate_weights(self, layer: int, h_ND: torch.Tensor) -> torch.Tensor:
        """``g_NTE``: every task's gate over the experts of hidden fc layer ``layer`` on ``h_ND``.

        Row ``[n, t]`` is a softmax (it sums to 1): the weights task ``t`` gives the
        experts for the input ``h_ND[n]``.
        """
        gates = [cast(nn.Linear, gate) for gate in cast(nn.ModuleList, self.gates[layer])]
        W_TEI = torch.stack([g.weight for g in gates])
        b_TE = torch.stack([g.bias for g in gates])
        t, e, i = W_TEI.shape
        logits_NTE = torch.addmm(b_TE.reshape(t * e), h_ND, W_TEI.reshape(t * e, i).t()).view(-1, t, e)
        return torch.softmax(logits_NTE, dim=2)

    def task_parameters(self, task: int) -> list[nn.Parameter]:
        """Task ``task``'s gates (one per hidden fc layer) and classifier."""
        gates = [p for layer in self.gates for p in cast(nn.ModuleList, layer)[task].parameters()]
        return gates + list(self.classifiers[task].parameters())

    def forward(self, x_ND: torch.Tensor, tasks_N: torch.Tensor, *, check_tasks: bool = True) -> torch.Tensor:
        _check_tasks(tasks_N, self.num_tasks, x_ND.shape[0], check_range=check_tasks)
        n = torch.arange(x_ND.shape[0], device=x_ND.device)
        h_ND = x_ND
        for layer, experts in enumerate(self.experts):
            v_END = _all_tasks_shared(cast(nn.ModuleList, experts), h_ND, relu=True)
            g_NE = self.gate_weights(layer, h_ND)[n, tasks_N]  # each sample's own task's gate
            h_ND = torch.einsum("ne,end->nd", g_NE, v_END)
        if not _runs_batched(self.batched, x_ND):
            return _per_task(self.classifiers, h_ND, tasks_N, self.output_size)
        return _own_task(_all_tasks_shared(self.classifiers, h_ND, relu=False), tasks_N)


def gumbel_temperature(step: int, *, start: float, end: float, steps: int | None) -> float:
    """The Gumbel-softmax temperature of training step ``step`` (0-based).

    Exponential decay from ``start`` at the first step to ``end`` at step ``steps - 1``,
    then ``end``: ``tau_s = start * (end / start) ** min(s / (steps - 1), 1)``. ``steps``
    None (or 1): ``start`` throughout.

    Raises:
        ValueError: On a non-positive temperature, a negative step or ``steps < 1``.
    """
    if not (start > 0 and end > 0):
        raise ValueError(f"the temperatures must be > 0, got start={start!r}, end={end!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if steps is None or steps == 1:
        return float(start)
    if steps < 1:
        raise ValueError(f"steps must be >= 1 or None, got {steps}")
    return float(start * (end / start) ** min(step / (steps - 1), 1.0))


class GumbelRouterFC(nn.Module):
    """A differentiable router over the routed network's blocks (straight-through Gumbel-softmax).

    The blocks are those of ``routing-all-fc``: ``fc_layers`` layers of ``B`` fc blocks
    (by default one per task), the last layer's blocks classifiers. Instead of an RL
    router, each task ``t`` has learned logits ``a_t[depth]`` over the ``B`` blocks of
    each layer (:attr:`route_logits`, zeros at the start), trained with the blocks by the
    same optimizer on the same loss:

    - Training: at every depth each sample draws its block from its task's logits with
      ``F.gumbel_softmax(a_t[depth], tau, hard=True)``: the forward pass uses the hard
      one-hot choice, the backward pass the gradient of the soft sample (straight
      through). The noise comes from torch's global generator on the logits' device
      (as dropout's), whose state ``train_baseline.py`` checkpoints, so a resumed run
      draws the same noise.
    - Temperature: :func:`gumbel_temperature` at the step count :attr:`steps` (training
      forward passes; one per optimizer step in :func:`train_epoch`), from ``tau_start``
      to ``tau_end`` over ``anneal_steps``. The count is saved in the state dict (like
      batch norm's ``num_batches_tracked``), so a resumed run continues the schedule.
    - Evaluation: greedy routes, ``argmax`` of each task's logits at each depth
      (:meth:`routes`; ties go to the lowest block), as the RL routers are evaluated
      greedily.

    Cost. In training every sample runs through every block of a layer (one GEMM over
    the stacked weights of the layer's ``B`` blocks: ``B`` times the fc FLOPs of a
    single route), and the one-hot choice selects one of them: the straight-through
    gradient of the logits needs every block's output (``dL/dy_b = <dL/dout, f_b(h)>``),
    so computing only the chosen block would drop it for the blocks not taken. A block
    that no sample chose gets a zero gradient (not None). In evaluation the routes are
    fixed, so on the CPU (``batched`` False) each sample runs through its chosen block
    only, samples grouped by block (one small matmul per block used, reading the
    choices on the host); batched (the default off the CPU), every block runs and each
    sample's is gathered, with no host read.

    Args:
        in_features, hidden_width, output_size, num_tasks, fc_layers: As in
            :class:`TaskSpecificFC`.
        blocks_per_layer: ``B`` (None: ``num_tasks``, as ``routing-all-fc``).
        tau_start: Temperature of the first training step.
        tau_end: Temperature from step ``anneal_steps - 1`` on.
        anneal_steps: Training steps of the decay (None: ``tau_start`` throughout).
            A plain attribute: a script sets it from the run's budget.
        batched: How evaluation runs (see above); None (default): batched off the CPU.

    Raises:
        ValueError: On non-positive sizes or temperatures, or ``anneal_steps < 1``.
        TypeError: On a ``batched`` that is not a bool or None.

    Attributes:
        route_logits: One ``[fc_layers, B]`` parameter per task (:meth:`task_parameters`).
        steps: Training forward passes so far.
    """

    def __init__(
        self,
        *,
        in_features: int,
        hidden_width: int,
        output_size: int,
        num_tasks: int,
        fc_layers: int = 3,
        blocks_per_layer: int | None = None,
        tau_start: float = 1.0,
        tau_end: float = 0.1,
        anneal_steps: int | None = None,
        batched: bool | None = None,
    ) -> None:
        super().__init__()
        _check_sizes(num_tasks, hidden_width, output_size, fc_layers)
        blocks = num_tasks if blocks_per_layer is None else blocks_per_layer
        _check_count("blocks_per_layer", blocks)
        if anneal_steps is not None and (isinstance(anneal_steps, bool) or anneal_steps < 1):
            raise ValueError(f"anneal_steps must be a positive int or None, got {anneal_steps!r}")
        gumbel_temperature(0, start=tau_start, end=tau_end, steps=anneal_steps)  # checks the temperatures
        widths = _widths(in_features, hidden_width, output_size, fc_layers)
        self.num_tasks = num_tasks
        self.num_blocks = blocks
        self.output_size = output_size
        self.fc_layers = fc_layers
        self.tau_start = float(tau_start)
        self.tau_end = float(tau_end)
        self.anneal_steps = anneal_steps
        self.batched = _check_batched(batched)
        self.steps = 0
        self._widths = widths
        # layers[l][b]: block b of routed layer l, as in the routed network
        self.layers = nn.ModuleList(
            nn.ModuleList(
                fc_block(widths[i], widths[i + 1], activation=i < fc_layers - 1) for _ in range(blocks)
            )
            for i in range(fc_layers)
        )
        self.route_logits = nn.ParameterList(
            nn.Parameter(torch.zeros(fc_layers, blocks)) for _ in range(num_tasks)
        )

    def temperature(self) -> float:
        """The temperature of the next training step."""
        return gumbel_temperature(self.steps, start=self.tau_start, end=self.tau_end, steps=self.anneal_steps)

    def routes(self) -> torch.Tensor:
        """``routes_TL``: the block each task picks at each depth in evaluation (argmax of its logits)."""
        return torch.stack(list(self.route_logits)).detach().argmax(dim=2)

    def route_weights(self, tasks_N: torch.Tensor) -> list[torch.Tensor]:
        """``y_NB`` of every depth: each sample's block choice as a one-hot row.

        In training mode a straight-through Gumbel-softmax sample at :meth:`temperature`
        (one-hot values, the soft sample's gradient; draws from torch's global
        generator); in eval mode the greedy route's one-hot (no gradient).
        """
        logits_TLB = torch.stack(list(self.route_logits))
        if not self.training:
            return list(
                F.one_hot(logits_TLB.detach().argmax(dim=2)[tasks_N], self.num_blocks).float().unbind(1)
            )
        tau = self.temperature()
        logits_NLB = logits_TLB[tasks_N]
        return [F.gumbel_softmax(logits_NLB[:, depth], tau=tau, hard=True) for depth in range(self.fc_layers)]

    def task_parameters(self, task: int) -> list[nn.Parameter]:
        """Task ``task``'s route logits (every block may serve every task)."""
        return [self.route_logits[task]]

    def routing_parameters(self) -> list[nn.Parameter]:
        """Every task's route logits."""
        return list(self.route_logits)

    def get_extra_state(self) -> dict[str, int]:
        return {"steps": self.steps}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.steps = int(state["steps"])

    def extra_repr(self) -> str:
        routes = "; ".join(f"task {t}: {r}" for t, r in enumerate(self.routes().tolist()))
        return (
            f"blocks_per_layer={self.num_blocks}, tau {self.tau_start} -> {self.tau_end} over "
            f"{self.anneal_steps} steps, steps={self.steps}, greedy routes (block per depth): {routes}"
        )

    def forward(self, x_ND: torch.Tensor, tasks_N: torch.Tensor, *, check_tasks: bool = True) -> torch.Tensor:
        _check_tasks(tasks_N, self.num_tasks, x_ND.shape[0], check_range=check_tasks)
        last = self.fc_layers - 1
        layers = [cast(nn.ModuleList, layer) for layer in self.layers]
        h_ND = x_ND
        if self.training:
            y_LNB = self.route_weights(tasks_N)
            self.steps += 1
            for depth, layer in enumerate(layers):
                v_BNO = _all_tasks_shared(layer, h_ND, relu=depth < last)  # every block on every sample
                # the one-hot choice, differentiable in the logits (straight through)
                h_ND = torch.einsum("nb,bno->no", y_LNB[depth], v_BNO)
            return h_ND
        blocks_NL = self.routes()[tasks_N]  # the greedy routes
        if _runs_batched(self.batched, x_ND):  # every block on every sample, each sample's gathered
            for depth, layer in enumerate(layers):
                h_ND = _own_task(_all_tasks_shared(layer, h_ND, relu=depth < last), blocks_NL[:, depth])
            return h_ND
        for depth, layer in enumerate(layers):  # each sample through its chosen block only
            out = h_ND.new_empty((h_ND.shape[0], self._widths[depth + 1]))
            for b in torch.unique(blocks_NL[:, depth]).tolist():
                idx = (blocks_NL[:, depth] == b).nonzero(as_tuple=True)[0]
                out[idx] = layer[b](h_ND[idx])
            h_ND = out
        return h_ND


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
    batched: bool | None = None,
    blocks_per_layer: int | None = None,
    gumbel_tau_start: float = 1.0,
    gumbel_tau_end: float = 0.1,
    gumbel_anneal_steps: int | None = None,
) -> BaselineModel:
    """Build the baseline called ``name`` for ``dataset`` with weights drawn from ``seed``.

    Args:
        name: One of :data:`ALL_BASELINE_NAMES`.
        dataset: The multi-task data (sets the input shape, tasks and classes).
        conv_layers: Trunk depth; None picks what the env picks (:func:`default_conv_layers`).
        filters: Filters per conv layer (the paper: 32).
        hidden_width: Units of the hidden fc layers (the paper: 128).
        fc_layers: Fully connected layers after the trunk (the paper: 3).
        cross_stitch_self_weight: Initial diagonal of the cross-stitch units.
        seed: Seed of the initial weights (torch's global generator is left untouched).
        batched: How the head runs its per-task blocks (see :class:`TaskSpecificFC`):
            None (default) batches them off the CPU and loops over tasks on it.
        blocks_per_layer: Experts (``mmoe-all-fc``) or blocks (``gumbel-router-all-fc``)
            per routed fc layer; None: one per task, as ``routing-all-fc``. The paper's
            baselines have one column per task and refuse any other value.
        gumbel_tau_start, gumbel_tau_end, gumbel_anneal_steps: The temperature schedule
            of ``gumbel-router-all-fc`` (:class:`GumbelRouterFC`); ignored by the others.

    Raises:
        ValueError: On an unknown name, a regression dataset, invalid sizes, or
            ``blocks_per_layer`` for a model with one column per task.
        TypeError: On a ``batched`` that is not a bool or None.
    """
    if name not in ALL_BASELINE_NAMES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(ALL_BASELINE_NAMES)}")
    if blocks_per_layer is not None and name not in _BLOCK_COUNT_MODELS:
        raise ValueError(
            f"{name} has one column of blocks per task; blocks_per_layer applies to "
            f"{' and '.join(sorted(_BLOCK_COUNT_MODELS))} only"
        )
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
        "batched": _check_batched(batched),
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
        elif name == "soft-mixture-all-fc":
            head = SoftMixtureFC(**sizes)
        elif name == "mmoe-all-fc":
            head = MMoEFC(**sizes, experts_per_layer=blocks_per_layer)
        else:
            head = GumbelRouterFC(
                **sizes,
                blocks_per_layer=blocks_per_layer,
                tau_start=gumbel_tau_start,
                tau_end=gumbel_tau_end,
                anneal_steps=gumbel_anneal_steps,
            )
    return BaselineModel(trunk=trunk, head=head, name=name)


# ----------------------------------------------------------------- training
def model_optimizer(
    model: nn.Module,
    *,
    optimizer: Literal["sgd", "adam"] = "sgd",
    lr: float = 1e-2,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    routing_lr: float | None = None,
) -> torch.optim.Optimizer:
    """The optimizer of ``model``'s trainable parameters, built as the env builds its own
    (:func:`routing_env.optim.make_optimizer`, the one factory), with these settings.

    Args:
        routing_lr: Learning rate of the routing parameters of a
            :class:`BaselineModel` (:meth:`BaselineModel.routing_parameters`: the Gumbel
            router's logits), in a second parameter group of the same optimizer, decayed
            with the first. None (default): ``lr``, one group for every parameter.

    Raises:
        ValueError: On a ``routing_lr`` that is not positive, or one given for a model
            without routing parameters.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if routing_lr is None:
        return optim.make_optimizer(
            params, name=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    if not routing_lr > 0:
        raise ValueError(f"routing_lr must be > 0 or None, got {routing_lr!r}")
    routing = model.routing_parameters() if isinstance(model, BaselineModel) else []
    if not routing:
        raise ValueError("routing_lr applies to a model with routing parameters (gumbel-router-all-fc)")
    ids = {id(p) for p in routing}
    groups: list[dict[str, Any]] = [
        {"params": [p for p in params if id(p) not in ids]},
        {"params": [p for p in routing if p.requires_grad], "lr": routing_lr},
    ]
    return optim.make_optimizer(groups, name=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay)


def __getattr__(name: str) -> object:
    # ``baselines.make_optimizer(model, optimizer=...)`` was this module's name for
    # model_optimizer; it is kept for code that calls it, apart from the one factory
    # routing_env.optim.make_optimizer(params, name=...), which has another signature
    if name == "make_optimizer":
        warnings.warn(
            "routing_env.baselines.make_optimizer is now model_optimizer (routing_env.optim.make_optimizer "
            "builds from parameters)",
            DeprecationWarning,
            stacklevel=2,
        )
        return model_optimizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def decay_lr(optimizer: torch.optim.Optimizer, *, epoch: int, every: int | None, factor: float) -> None:
    """The env's schedule applied after ``epoch`` completed epochs: ``StepDecay(every, factor).step``.

    Kept for code that calls it; :class:`routing_env.optim.StepDecay` is the schedule.
    """
    optim.StepDecay(every=every, factor=factor).step(optimizer, epoch=epoch)


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


class DeviceSplit:
    """One split of a dataset held on a device, so that a pass over it copies nothing from the host.

    The images stay as stored (``uint8`` takes a quarter of float32's memory); each
    minibatch is gathered and normalized on the device with the operations of
    :meth:`MultiTaskDataset.normalize` (so the same values on the CPU). The task ids are
    kept on the host too, where :func:`train_epoch` counts the samples of each task
    without waiting on the device. Build one per split and device, once, and pass it to
    every :func:`train_epoch` / :func:`evaluate_model` call; on the CPU it shares the
    split's tensors (no copy).

    Args:
        dataset: The dataset (its per-channel normalization and its tasks).
        split: One of its splits: ``dataset.train`` or ``dataset.test``.
        device: Where to hold the split.

    Attributes:
        split: The split it holds.
        device: The device it is on (with its index, e.g. ``cuda:0``).
        inputs_NCHW: The images as stored, on ``device``.
        tasks_N: The task ids, on ``device``.
        targets_N: The targets, on ``device``.
        tasks_host_N: The task ids as a NumPy array.

    Raises:
        TypeError: When ``dataset`` is not a :class:`MultiTaskDataset` or ``split`` not a
            :class:`TaskSplit`.
        ValueError: When a task id lies outside ``[0, T)``.
    """

    def __init__(
        self, *, dataset: MultiTaskDataset, split: TaskSplit, device: str | torch.device = "cpu"
    ) -> None:
        if not isinstance(dataset, MultiTaskDataset):
            raise TypeError(f"dataset must be a MultiTaskDataset, got {type(dataset).__name__}")
        if not isinstance(split, TaskSplit):
            raise TypeError(
                f"split must be a TaskSplit (dataset.train or dataset.test), got {type(split).__name__}"
            )
        tasks_host_N = split.tasks_N.cpu().numpy()
        if len(tasks_host_N) and (tasks_host_N.min() < 0 or tasks_host_N.max() >= dataset.num_tasks):
            raise ValueError(
                f"task ids must lie in [0, {dataset.num_tasks}), got [{tasks_host_N.min()}, {tasks_host_N.max()}]"
            )
        self.split = split
        self.tasks_host_N = tasks_host_N
        self.inputs_NCHW = split.inputs_NCHW.to(device)
        self.tasks_N = split.tasks_N.to(device)
        self.targets_N = split.targets_N.to(device)
        self.device = self.tasks_N.device
        # as MultiTaskDataset.normalize builds them, held on the device
        channels = (1, -1, 1, 1)
        self._mean_1C11 = torch.tensor(dataset.mean, dtype=torch.float32).view(channels).to(device)
        self._std_1C11 = torch.tensor(dataset.std, dtype=torch.float32).view(channels).to(device)

    def __len__(self) -> int:
        return len(self.tasks_host_N)

    def batch(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalized inputs, task ids and targets of the samples at ``index``, on the device.

        Args:
            index: Sample indices (an int64 tensor on the device) or a slice.
        """
        inputs_NCHW = self.inputs_NCHW[index]
        x_NCHW = inputs_NCHW.float()
        if inputs_NCHW.dtype == torch.uint8:
            x_NCHW = x_NCHW / 255.0
        return (x_NCHW - self._mean_1C11) / self._std_1C11, self.tasks_N[index], self.targets_N[index]


def _device_split(
    dataset: MultiTaskDataset, split: TaskSplit, device: str | torch.device, data: DeviceSplit | None
) -> DeviceSplit:
    """``data`` checked against ``split`` and ``device``, or ``split`` held on ``device`` for one pass."""
    if data is None:
        return DeviceSplit(dataset=dataset, split=split, device=device)
    if not isinstance(data, DeviceSplit):
        raise TypeError(f"data must be a DeviceSplit or None, got {type(data).__name__}")
    if data.split is not split:
        which = "dataset.train" if split is dataset.train else "the split to evaluate"
        raise ValueError(
            f"data holds another split than {which}; build it with DeviceSplit(dataset=..., split=..., device=...)"
        )
    wanted = torch.device(device)
    if wanted.type != data.device.type or wanted.index not in (None, data.device.index):
        raise ValueError(
            f"data is held on {data.device}, but device is {wanted}: build it on the model's device"
        )
    return data


class EpochStats:
    """Counts of one pass over a split.

    While :func:`train_epoch` or :func:`evaluate_model` runs, the correct counts and the
    losses stay on the model's device so that no step waits on it; reading
    :attr:`correct_T` or :attr:`loss_sum` (or what derives from them) copies what changed
    to the host: once per pass when read at the end, one wait on the device per read in a
    callback. :attr:`samples` and :attr:`total_T` are counted on the host and never wait.

    Args:
        correct_T: Correct predictions per task.
        total_T: Samples per task.
        loss_sum: Sum of the per-sample losses (training only; 0 in evaluation).
        updates: Optimizer steps taken (training only).

    Attributes:
        total_T: Samples per task.
        updates: Optimizer steps taken (training only).
    """

    def __init__(
        self, *, correct_T: np.ndarray, total_T: np.ndarray, loss_sum: float = 0.0, updates: int = 0
    ) -> None:
        self.total_T = total_T
        self.updates = updates
        self._correct_T = correct_T
        self._loss_sum = float(loss_sum)
        self._counts_T: torch.Tensor | None = None  # the correct counts, on the device, while counting there
        self._counts_read = True  # _correct_T holds _counts_T
        self._losses: list[tuple[torch.Tensor, int]] = []  # (mean loss, samples) of updates not yet summed
        self._first_nonfinite: tuple[int, float] | None = None

    @classmethod
    def _on_device(cls, num_tasks: int, device: torch.device) -> EpochStats:
        stats = cls(
            correct_T=np.zeros(num_tasks, dtype=np.int64), total_T=np.zeros(num_tasks, dtype=np.int64)
        )
        stats._counts_T = torch.zeros(num_tasks, dtype=torch.int64, device=device)
        return stats

    def _count(
        self, logits_NK: torch.Tensor, tasks_N: torch.Tensor, targets_N: torch.Tensor, samples_T: np.ndarray
    ) -> None:
        """Add a minibatch's correct predictions (on the device) and samples per task (on the host)."""
        if self._counts_T is None:
            raise RuntimeError("these stats were built from host counts; only a pass counts on a device")
        correct_N = logits_NK.argmax(dim=1) == targets_N
        self._counts_T.index_add_(0, tasks_N, correct_N.to(torch.int64))
        self._counts_read = False
        self.total_T += samples_T

    def _add_update(self, loss: torch.Tensor, samples: int) -> None:
        """Keep an update's mean loss (a 0-d tensor on the device) for :attr:`loss_sum`."""
        self._losses.append((loss.detach(), samples))
        self.updates += 1

    def _read_losses(self) -> None:
        # one copy from the device for every loss kept since the last read; the sum runs
        # in update order in Python floats, as when each loss was read after its step
        if not self._losses:
            return
        values = torch.stack([loss for loss, _ in self._losses]).tolist()
        first = self.updates - len(self._losses) + 1
        for i, (value, (_, samples)) in enumerate(zip(values, self._losses, strict=True)):
            if self._first_nonfinite is None and not math.isfinite(value):
                self._first_nonfinite = (first + i, value)
            self._loss_sum += value * samples
        self._losses = []

    def _read_counts(self) -> None:
        if not self._counts_read and self._counts_T is not None:
            self._correct_T = self._counts_T.cpu().numpy().copy()
            self._counts_read = True

    def _read(self) -> None:
        """Copy what the device holds to the host (the end of a pass: one wait on the device)."""
        self._read_losses()
        self._read_counts()

    @property
    def correct_T(self) -> np.ndarray:
        """Correct predictions per task."""
        self._read_counts()
        return self._correct_T

    @property
    def loss_sum(self) -> float:
        """Sum of the per-sample losses (training only; 0 in evaluation)."""
        self._read_losses()
        return self._loss_sum

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

    def __repr__(self) -> str:
        return (
            f"EpochStats(correct_T={self.correct_T!r}, total_T={self.total_T!r}, "
            f"loss_sum={self.loss_sum!r}, updates={self.updates!r})"
        )


def train_epoch(
    model: BaselineModel,
    optimizer: torch.optim.Optimizer,
    dataset: MultiTaskDataset,
    *,
    batch_size: int,
    rng: np.random.Generator,
    device: str | torch.device = "cpu",
    callback: Callable[[EpochStats], None] | None = None,
    data: DeviceSplit | None = None,
    finite_check: Literal["update", "epoch"] | None = None,
) -> EpochStats:
    """One epoch over the shuffled training split in minibatches of ``batch_size``.

    As in the env: one optimizer step per minibatch on the mean cross-entropy (with the
    per-task class masks), gradients of unused parameters left ``None`` so the optimizer
    skips them (a batched head gives the columns of tasks absent from a minibatch zero
    gradients; they are set back to None from the task ids on the host). The training
    accuracy counts each sample's prediction made in the forward pass of its own
    minibatch, before that minibatch's step (as the env's training accuracy counts
    predictions along the sampled routes).

    Nothing in a step waits on the device: minibatches are gathered from ``data`` on the
    device, the counts and losses stay there and are read once, at the end (see
    :class:`EpochStats`), and the loss is checked as ``finite_check`` says.

    Args:
        model: The baseline (trained in place; put in train mode).
        optimizer: Its optimizer.
        dataset: The multi-task data.
        batch_size: Samples per optimizer step.
        rng: Generator of the data order (advanced by one permutation).
        device: Where the model lives.
        callback: Called after each minibatch with the running stats. Reading their
            accuracy or loss waits on the device: off the CPU, read them only now and then.
        data: ``dataset.train`` held on ``device`` (:class:`DeviceSplit`): build it once
            and pass it every epoch. None holds the split there for this call only (one
            copy of it per call off the CPU).
        finite_check: When the loss is checked to be finite. ``"update"``: before each
            optimizer step, so a non-finite loss is refused before it changes any weight
            (one wait on the device per step off the CPU). ``"epoch"``: once, when the
            pass ends (no wait per step); the updates from the bad one on have run, so
            the weights are no longer usable: reload a checkpoint. None (default):
            ``"update"`` on the CPU, where the check costs nothing, ``"epoch"`` elsewhere.

    Raises:
        ValueError: On a bad ``batch_size`` or ``finite_check``, or ``data`` of another
            split or device.
        FloatingPointError: On a non-finite training loss, naming the first update that
            had one.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if finite_check not in (None, "update", "epoch"):
        raise ValueError(f"finite_check must be 'update', 'epoch' or None, got {finite_check!r}")
    split = dataset.train
    data = _device_split(dataset, split, device, data)
    num_tasks = dataset.num_tasks
    mask_TK = _class_mask(dataset, max(dataset.num_classes))
    mask_TK = None if mask_TK is None else mask_TK.to(data.device)
    check_each_update = data.device.type == "cpu" if finite_check is None else finite_check == "update"
    private = [model.task_parameters(t) for t in range(num_tasks)]
    stats = EpochStats._on_device(num_tasks, data.device)
    model.train()
    perm_N = rng.permutation(len(split)).astype(np.int64)
    perm_on_device_N = torch.from_numpy(perm_N).to(data.device)  # one copy per epoch
    for start in range(0, len(perm_N), batch_size):
        idx = perm_on_device_N[start : start + batch_size]
        x, tasks, targets = data.batch(idx)
        logits = _masked(model(x, tasks, check_tasks=False), tasks, mask_TK)
        loss = F.cross_entropy(logits, targets)
        if check_each_update and not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at update {stats.updates + 1}; "
                f"it was not applied (the parameters are as after update {stats.updates})"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        samples_T = np.bincount(data.tasks_host_N[perm_N[start : start + batch_size]], minlength=num_tasks)
        for t in np.flatnonzero(samples_T == 0).tolist():  # the optimizer skips the absent tasks
            for p in private[t]:
                p.grad = None
        optimizer.step()
        stats._add_update(loss, len(idx))
        stats._count(logits.detach(), tasks, targets, samples_T)
        if callback is not None:
            callback(stats)
    stats._read()
    if stats._first_nonfinite is not None:
        update, value = stats._first_nonfinite
        raise FloatingPointError(
            f"non-finite training loss ({value}) at update {update} of {stats.updates}, found when the "
            f"epoch ended (finite_check='epoch'): the updates from {update} on were applied, so the "
            "weights are no longer usable; reload the last checkpoint (finite_check='update' refuses "
            "the first bad update, at one wait on the device per step)"
        )
    return stats


#: :func:`evaluate_model`'s batch size on the CPU (results as in earlier versions, bit for
#: bit) and on other devices (large batches keep an accelerator busy).
EVAL_BATCH_SIZE_CPU = 512
EVAL_BATCH_SIZE_DEVICE = 4096


@torch.no_grad()
def evaluate_model(
    model: BaselineModel,
    dataset: MultiTaskDataset,
    *,
    split: TaskSplit | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    data: DeviceSplit | None = None,
    merge_duplicates: bool = True,
) -> EpochStats:
    """Accuracy per task on ``split`` (default: the test split), model in eval mode.

    Args:
        model: The baseline (left in the mode it was in, weights unchanged).
        dataset: The multi-task data.
        split: The split to test; None: ``data``'s split, or ``dataset.test``.
        batch_size: Samples per forward pass; None: :data:`EVAL_BATCH_SIZE_CPU` on the
            CPU, :data:`EVAL_BATCH_SIZE_DEVICE` elsewhere.
        device: Where the model lives.
        data: The split held on ``device`` (:class:`DeviceSplit`): build it once and pass
            it every epoch. None holds the split there for this call only.
        merge_duplicates: Run the trunk once per distinct input of the split and the
            head on each sample (one-vs-rest splits hold each image once per task: a
            tenth of the trunk's work). Exact when the trunk's eval-mode output for a
            row does not depend on the other rows (every trunk this package builds);
            False for one that samples or mixes rows in eval mode. A model that
            overrides :meth:`BaselineModel.forward` always runs whole.

    Raises:
        ValueError: On a bad ``batch_size``, or ``data`` of another split or device.
    """
    if split is None:
        split = data.split if isinstance(data, DeviceSplit) else dataset.test
    data = _device_split(dataset, split, device, data)
    if batch_size is None:
        batch_size = EVAL_BATCH_SIZE_CPU if data.device.type == "cpu" else EVAL_BATCH_SIZE_DEVICE
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    num_tasks = dataset.num_tasks
    mask_TK = _class_mask(dataset, max(dataset.num_classes))
    mask_TK = None if mask_TK is None else mask_TK.to(data.device)
    stats = EpochStats._on_device(num_tasks, data.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            features = _distinct_trunk_features(model, data, batch_size) if merge_duplicates else None
            for start in range(0, len(data), batch_size):
                idx = slice(start, start + batch_size)
                if features is None:
                    x, tasks, targets = data.batch(idx)
                    logits = model(x, tasks, check_tasks=False)
                else:
                    features_UD, position_N = features
                    tasks, targets = data.tasks_N[idx], data.targets_N[idx]
                    logits = model.head(features_UD[position_N[idx]], tasks, check_tasks=False)
                logits = _masked(logits, tasks, mask_TK)
                stats._count(logits, tasks, targets, np.bincount(data.tasks_host_N[idx], minlength=num_tasks))
    finally:
        model.train(was_training)
    stats._read()
    return stats


def _distinct_trunk_features(
    model: BaselineModel, data: DeviceSplit, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The trunk's output on each distinct input of ``data``'s split, and for each sample
    the row of its input; None when every input differs or the model is not a plain
    ``head(trunk(x))``.

    One-vs-rest splits hold each image once per task (10 copies in MNIST-MTL and
    Fashion-MTL); the trunk sees only the image and, in eval mode, a row's output does
    not depend on the others, so evaluation runs it once per image.
    """
    first_N = data.split.first_occurrence_N
    if first_N is None or type(model).forward is not BaselineModel.forward:
        return None
    distinct_U, position_N = np.unique(first_N, return_inverse=True)
    rows_U = torch.from_numpy(distinct_U).to(data.device)
    chunks = [
        model.trunk(data.batch(rows_U[s : s + batch_size])[0]) for s in range(0, len(rows_U), batch_size)
    ]
    return torch.cat(chunks), torch.from_numpy(position_N.reshape(-1)).to(data.device)
