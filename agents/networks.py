"""Torch pieces shared by the approximator agents (REINFORCE, Q-learning, the dispatcher).

Per the paper's appendix 7.3 an approximator is "a vector of d MLPs, one for each
decision/depth", each a 2-layer MLP with a hidden width of 64 fed with
``concat(v, one-hot(t))``. The tabular representation is a ``[depth, action]`` table;
it is wrapped as a module with the same call signature so one learning rule serves
both.

Parameters are initialized from the agent's own :class:`torch.Generator`, never
from torch's global generator, so building an agent has no effect on other code's
randomness.

The batched routing path hands an agent one observation for many samples (the rows of
a minibatch at one depth): :func:`batch_inputs` checks its depths and masks as a whole,
:func:`batch_features` builds ``concat(v, one-hot(t))`` of every row at once on the
agent's device, :meth:`PerDepthMLP.forward_batch` runs one forward per depth, and
:func:`sample_rows` / :func:`masked_argmax_rows` pick the actions with the very
numbers :func:`agents.base.sample_from` / :func:`agents.base.masked_argmax` give row
by row.

Networks may live on any torch device (``device=`` of the agents); state dicts are
handed out on the CPU (:func:`cpu_state`), and loading copies them to the agent's
device.

Shape legend: ``B`` decisions in a batch, ``F`` input features (``D + T``), ``H``
hidden units, ``A`` actions (or outputs), ``n`` depths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from agents.base import Observation, TraceBatch

__all__ = [
    "DeviceLike",
    "DepthTable",
    "PerDepthMLP",
    "Representation",
    "batch_features",
    "batch_inputs",
    "batch_size",
    "check_device",
    "check_tasks",
    "check_trace_actions",
    "cpu_state",
    "features",
    "make_network",
    "masked_argmax_rows",
    "masked_fill_logits",
    "sample_rows",
    "torch_generator",
    "trace_inputs",
]

Representation = Literal["table", "mlp"]

DeviceLike = str | torch.device
"""Where an agent's networks live: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a :class:`torch.device`."""


def check_device(device: DeviceLike) -> torch.device:
    """``device`` as a :class:`torch.device`, checked to be usable here.

    Raises:
        TypeError: When ``device`` is neither a string nor a :class:`torch.device`.
        ValueError: When torch does not know the device, or it is a CUDA device and CUDA
            is not available (or has fewer devices).
    """
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', or a torch.device, got {device!r}")
    try:
        out = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}; expected e.g. 'cpu', 'cuda' or 'cuda:0'") from err
    if out.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asks for CUDA, which is not available here; use 'cpu'")
        if out.index is not None and out.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return out


def cpu_state(state: Any) -> Any:
    """A copy of a (nested) state dict with every tensor cloned to the CPU.

    Used by the agents' ``state_dict`` so that a state saved on a GPU loads on a
    CPU-only machine, and so that a saved state never aliases the live tensors that
    later updates change in place (optimizer moments, parameters).
    """
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, Mapping):
        return {k: cpu_state(v) for k, v in state.items()}
    if isinstance(state, list):
        return [cpu_state(v) for v in state]
    if isinstance(state, tuple):
        return tuple(cpu_state(v) for v in state)
    return state


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded from ``rng`` (deterministic given ``rng``)."""
    return torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))


def features(obs: Observation, num_tasks: int) -> np.ndarray:
    """``concat(v, one-hot(t))`` of one observation, float32, length ``D + T``."""
    v = np.asarray(obs["observation"], dtype=np.float32).reshape(-1)
    out = np.zeros(v.shape[0] + num_tasks, dtype=np.float32)
    out[: v.shape[0]] = v
    task = int(obs["task"])
    if not 0 <= task < num_tasks:
        raise ValueError(f"task {task} is out of range [0, {num_tasks})")
    out[v.shape[0] + task] = 1.0
    return out


def batch_size(obs: Observation) -> int:
    """``B``, the number of rows of a batched observation (the length of its ``"task"``)."""
    shape = np.shape(obs["task"])
    if len(shape) != 1:
        raise ValueError(f"a batched observation has one task per row, shape (B,), got shape {shape}")
    return int(shape[0])


def batch_inputs(
    obs: Observation, *, num_actions: int, num_depths: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Depths and boolean masks of a batched observation, checked as a whole.

    Never reads ``obs["observation"]``. The checks are those
    :meth:`agents.base.RouterAgent.check_observation` makes on each row, with the first
    offending row named.

    Args:
        obs: A batched observation (any mapping with ``"task"``, ``"depth"`` and
            ``"action_mask"`` arrays with one row per sample).
        num_actions: ``A``, the length of each mask.
        num_depths: ``n``; None skips the depth check (the dispatcher ignores depths).

    Returns:
        ``(depth_B, mask_BA)``: int64 depths and a boolean ``B x A`` mask.

    Raises:
        ValueError: On masks of the wrong shape, a row whose mask allows nothing, or a
            depth out of range.
    """
    B = batch_size(obs)
    depth_B = np.asarray(obs["depth"]).astype(np.int64, copy=False).reshape(-1)
    if depth_B.shape != (B,):
        raise ValueError(f"a batched observation has one depth per row, shape ({B},), got {depth_B.shape}")
    mask_BA = np.asarray(obs["action_mask"]) != 0
    if mask_BA.shape != (B, num_actions):
        raise ValueError(f"the action masks have shape {mask_BA.shape}, expected ({B}, {num_actions})")
    empty = np.flatnonzero(~mask_BA.any(axis=1))
    if len(empty):
        raise ValueError(f"the action mask of row {int(empty[0])} allows no action")
    if num_depths is not None:
        out = np.flatnonzero((depth_B < 0) | (depth_B >= num_depths))
        if len(out):
            i = int(out[0])
            raise ValueError(f"depth {int(depth_B[i])} of row {i} is out of range [0, {num_depths})")
    return depth_B, mask_BA


def check_tasks(obs: Observation, num_tasks: int) -> np.ndarray:
    """The int64 task ids of a batched observation, checked to lie in ``[0, num_tasks)``.

    Raises:
        ValueError: Naming the first row whose task is out of range.
    """
    task_B = np.asarray(obs["task"]).astype(np.int64, copy=False).reshape(-1)
    out = np.flatnonzero((task_B < 0) | (task_B >= num_tasks))
    if len(out):
        i = int(out[0])
        raise ValueError(f"task {int(task_B[i])} of row {i} is out of range [0, {num_tasks})")
    return task_B


def batch_features(obs: Observation, num_tasks: int, *, device: torch.device) -> torch.Tensor:
    """``concat(v, one-hot(t))`` of every row, a float32 ``B x F`` tensor on ``device``.

    Row ``b`` holds the very numbers :func:`features` gives for row ``b`` alone.
    ``obs["observation"]`` may be a torch tensor (on any device, e.g. the routing
    network's) or an array-like; each row is flattened.

    Raises:
        ValueError: When a task id is out of range or the rows' count disagrees.
    """
    task_B = check_tasks(obs, num_tasks)
    B = len(task_B)
    v = obs["observation"]
    if not isinstance(v, torch.Tensor):
        v = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
    if v.shape[:1] != (B,):
        raise ValueError(f"expected one representation per row, {B} rows, got shape {tuple(v.shape)}")
    width = math.prod(v.shape[1:])  # each row flattened (also with no rows)
    v_BD = v.detach().to(device=device, dtype=torch.float32).reshape(B, width)
    x_BF = torch.zeros(B, v_BD.shape[1] + num_tasks, dtype=torch.float32, device=device)
    x_BF[:, : v_BD.shape[1]] = v_BD
    x_BF[torch.arange(B, device=device), v_BD.shape[1] + torch.from_numpy(task_B).to(device)] = 1.0
    return x_BF


def check_trace_actions(actions_bn: np.ndarray, mask_bnA: np.ndarray) -> np.ndarray:
    """The ``b x n`` actions of a trace batch as int64, checked against the masks.

    Raises:
        TypeError: When the actions are not integers.
        ValueError: On a wrong shape, or naming the first trace and decision whose action
            is out of range or masked by its observation.
    """
    actions = np.asarray(actions_bn)
    b, n, A = mask_bnA.shape
    if actions.shape != (b, n):
        raise ValueError(f"expected actions of shape ({b}, {n}), got {actions.shape}")
    if actions.dtype == np.bool_ or not np.issubdtype(actions.dtype, np.integer):
        raise TypeError(f"actions must be integers, got dtype {actions.dtype}")
    actions = actions.astype(np.int64, copy=False)
    out = np.argwhere((actions < 0) | (actions >= A))
    if len(out):
        i, j = (int(k) for k in out[0])
        raise ValueError(
            f"trace {i} holds action {int(actions[i, j])} at decision {j}, out of range [0, {A})"
        )
    allowed = mask_bnA[np.arange(b)[:, None], np.arange(n)[None, :], actions]
    bad = np.argwhere(~allowed)
    if len(bad):
        i, j = (int(k) for k in bad[0])
        raise ValueError(
            f"trace {i} holds action {int(actions[i, j])} at decision {j}, which its observation masks"
        )
    return actions


def trace_inputs(
    traces: TraceBatch, *, num_actions: int, num_depths: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The depths, masks and actions of a trace batch, all checked before anything learns.

    :func:`batch_inputs` of each decision's batched observation, stacked so that decision
    ``j`` of trace ``i`` is at ``[i, j]``, and the actions checked against those masks by
    :func:`check_trace_actions`. Never reads ``obs["observation"]``.

    Returns:
        ``(depth_bn, mask_bnA, actions_bn)``: int64 depths, a boolean ``b x n x A`` mask
        and int64 actions.

    Raises:
        ValueError: As :func:`batch_inputs` and :func:`check_trace_actions`, naming the
            first bad row, trace or decision.
        TypeError: When the actions are not integers.
    """
    b = len(traces)
    columns = [
        batch_inputs(obs, num_actions=num_actions, num_depths=num_depths) for obs in traces.observations
    ]
    if columns:
        depth_bn = np.stack([depth_B for depth_B, _ in columns], axis=1)
        mask_bnA = np.stack([mask_BA for _, mask_BA in columns], axis=1)
    else:  # traces without decisions
        depth_bn = np.zeros((b, 0), dtype=np.int64)
        mask_bnA = np.zeros((b, 0, num_actions), dtype=bool)
    return depth_bn, mask_bnA, check_trace_actions(traces.actions, mask_bnA)


def sample_rows(probs_BA: np.ndarray, u_B: np.ndarray) -> np.ndarray:
    """:func:`agents.base.sample_from` on every row, with row ``b`` drawing ``u_B[b]``.

    ``u_B = rng.random(B)`` holds the numbers ``B`` calls of ``rng.random()`` give, so
    the actions are those of sampling row by row (the cumulative sums and the search
    are the same numbers per row).

    Returns:
        int64 indices, never one of a zero-probability entry.
    """
    probs_BA = np.asarray(probs_BA, dtype=np.float64)
    cdf_BA = np.cumsum(probs_BA, axis=1)
    target_B = u_B * cdf_BA[:, -1]
    # searchsorted(side="right") on a sorted row = how many entries are <= the target
    index_B = (cdf_BA <= target_B[:, None]).sum(axis=1)
    A = probs_BA.shape[1]
    rows = np.arange(len(index_B))
    bad = (index_B >= A) | (probs_BA[rows, np.minimum(index_B, A - 1)] <= 0)
    if bad.any():  # float round-off at the top end: the last entry with mass
        last_B = A - 1 - np.argmax((probs_BA[bad] > 0)[:, ::-1], axis=1)
        index_B[bad] = last_B
    return index_B.astype(np.int64, copy=False)


def masked_argmax_rows(values_BA: np.ndarray, mask_BA: np.ndarray) -> np.ndarray:
    """:func:`agents.base.masked_argmax` on every row (the first allowed maximum)."""
    allowed_BA = np.asarray(mask_BA, dtype=bool)
    values = np.where(allowed_BA, np.asarray(values_BA, dtype=np.float64), -np.inf)
    index_B = values.argmax(axis=1)
    # a row whose allowed values are all -inf: argmax picks column 0, which may be masked
    bad = ~allowed_BA[np.arange(len(index_B)), index_B]
    if bad.any():
        index_B[bad] = allowed_BA[bad].argmax(axis=1)
    return index_B.astype(np.int64, copy=False)


def masked_fill_logits(logits_BA: torch.Tensor, mask_BA: torch.Tensor) -> torch.Tensor:
    """Logits with masked actions at ``-inf`` (probability exactly 0 after a softmax)."""
    return logits_BA.masked_fill(~mask_BA, float("-inf"))


def _linear(in_features: int, out_features: int, generator: torch.Generator, scale: float = 1.0) -> nn.Linear:
    # skip_init: no draw from torch's global generator; then PyTorch's default init from ours
    layer = torch.nn.utils.skip_init(nn.Linear, in_features, out_features)
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1.0 / math.sqrt(in_features)
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    with torch.no_grad():
        layer.weight.mul_(scale)
        layer.bias.mul_(scale)
    return layer


class PerDepthMLP(nn.Module):
    """One 2-layer MLP (``F -> H -> A``, ReLU) per depth.

    Args:
        in_features: ``F``.
        out_features: ``A``.
        num_depths: ``n``, how many MLPs.
        hidden_width: ``H`` (the paper: 64).
        generator: Source of the initial weights.
        output_scale: Multiplies the initial weights of the output layer; a small
            value starts a policy close to uniform.
    """

    def __init__(
        self,
        *,
        in_features: int,
        out_features: int,
        num_depths: int,
        hidden_width: int,
        generator: torch.Generator,
        output_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.out_features = out_features
        self.mlps = nn.ModuleList(
            nn.Sequential(
                _linear(in_features, hidden_width, generator),
                nn.ReLU(),
                _linear(hidden_width, out_features, generator, output_scale),
            )
            for _ in range(num_depths)
        )

    def forward(self, x_BF: torch.Tensor, depths_B: Sequence[int]) -> torch.Tensor:
        """Outputs ``B x A``; row ``b`` comes from the MLP of depth ``depths_B[b]``.

        Row by row: the numbers of a one-sample forward, which learning relies on (a
        trace's decisions are at distinct depths anyway). :meth:`forward_batch` runs
        one forward per depth instead.
        """
        out = [self.mlps[d](x_BF[b : b + 1]) for b, d in enumerate(depths_B)]
        return torch.cat(out, dim=0)

    def forward_batch(self, x_BF: torch.Tensor | None, depth_B: np.ndarray) -> torch.Tensor:
        """Outputs ``B x A`` with one forward per depth present (rows grouped by depth).

        Equal to :meth:`forward` up to float round-off: a matrix product of many rows
        may differ from a one-row product in the last bit.

        Raises:
            TypeError: When ``x_BF`` is None (only a table ignores its input).
        """
        if x_BF is None:
            raise TypeError("an MLP needs its input features x_BF, got None")
        depth_B = np.asarray(depth_B, dtype=np.int64).reshape(-1)
        if len(depth_B) == 0:
            return x_BF.new_zeros((0, self.out_features))
        first = int(depth_B[0])
        if (depth_B == first).all():  # the batched env's case: every row at one depth
            return self.mlps[first](x_BF)
        out_BA = x_BF.new_empty((len(depth_B), self.out_features))
        for depth in np.unique(depth_B).tolist():
            rows = torch.from_numpy(np.flatnonzero(depth_B == depth)).to(x_BF.device)
            out_BA[rows] = self.mlps[depth](x_BF[rows])
        return out_BA


class DepthTable(nn.Module):
    """A learnable ``[depth, output]`` table that ignores the input features.

    Args:
        num_depths: ``n`` rows.
        out_features: ``A`` columns.
        init: Initial value of every entry.
    """

    def __init__(self, *, num_depths: int, out_features: int, init: float = 0.0) -> None:
        super().__init__()
        self.table_nA = nn.Parameter(torch.full((num_depths, out_features), float(init)))

    def forward(self, x_BF: torch.Tensor | None, depths_B: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Rows ``depths_B`` of the table, ``B x A`` (``x_BF`` is ignored and may be None)."""
        index = torch.as_tensor(np.asarray(depths_B, dtype=np.int64).reshape(-1), device=self.table_nA.device)
        return self.table_nA[index]

    def forward_batch(self, x_BF: torch.Tensor | None, depth_B: np.ndarray) -> torch.Tensor:
        """The same as :meth:`forward` (a table has nothing to batch)."""
        return self.forward(x_BF, depth_B)


def make_network(
    representation: Representation,
    *,
    in_features: int,
    out_features: int,
    num_depths: int,
    hidden_width: int,
    generator: torch.Generator,
    output_scale: float = 1.0,
) -> DepthTable | PerDepthMLP:
    """A :class:`DepthTable` (``"table"``) or a :class:`PerDepthMLP` (``"mlp"``).

    Raises:
        ValueError: On an unknown representation or a non-positive hidden width.
    """
    if representation == "table":
        return DepthTable(num_depths=num_depths, out_features=out_features)
    if representation == "mlp":
        if isinstance(hidden_width, bool) or not isinstance(hidden_width, int) or hidden_width < 1:
            raise ValueError(f"hidden_width must be a positive int, got {hidden_width!r}")
        return PerDepthMLP(
            in_features=in_features,
            out_features=out_features,
            num_depths=num_depths,
            hidden_width=hidden_width,
            generator=generator,
            output_scale=output_scale,
        )
    raise ValueError(f"representation must be 'table' or 'mlp', got {representation!r}")
