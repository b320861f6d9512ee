"""Block training by Jacobian descent: a minibatch's per-task losses combined by a torchjd aggregator.

``TrainingConfig(aggregator="mean")`` (the default) trains the trunk and the function
blocks on the minibatch's mean loss, as the paper does. Any other name in
:data:`AGGREGATORS` trains them on the per-task losses of the minibatch combined by an
aggregator of `torchjd <https://torchjd.org>`_ (Yu et al., "Gradient Surgery for
Multi-Task Learning", NeurIPS 2020, report PCGrad's gain on routing + WPL). The rule,
for a minibatch of ``B`` routed samples:

- **Rows.** Task ``t``'s loss is ``L_t = (1/B) sum_{i in t} loss_i = (n_t/B) x`` the
  mean loss of its ``n_t`` samples, so that ``sum_t L_t`` is the mean path's loss and the
  sum of the task gradients is the mean path's gradient.
- **Shared parameters.** A parameter is *shared* in a minibatch when samples of two or
  more tasks went through it: the trunk (every sample goes through it) and each block
  that samples of several tasks were routed through (at any depth). The aggregator gets
  the Jacobian of the losses over all shared parameters at once: one row per task that
  used at least one of them (``d L_t / d theta_shared``; zero where the task did not use
  a block), and its output is their update direction.
- **Private parameters.** A block used by the samples of one task only gets that task's
  gradient, as on the mean path; a block nobody used is not touched.
- **Scale.** PCGrad and ConFIG return a sum of (projected) rows; the others (UPGrad,
  DualProj, MGDA, IMTL-G, Aligned-MTL) a weighted mean, which is multiplied here by the
  number of rows ``m``. So every aggregator, given ``m`` identical rows, returns their
  sum: the mean path's gradient. Where no two task gradients conflict, PCGrad returns
  exactly the sum and UPGrad/DualProj return ``m`` x the mean of the rows, the sum too.
- **Randomness.** PCGrad projects in a random order; it draws from torch's CPU
  generator, which the engine seeds for each step from a generator of its own (saved in
  its ``state_dict``) and restores afterwards, so a run is reproducible and resumes
  bit-identically and no other random stream moves.

Computing the Jacobian takes one backward pass per task present (``retain_graph``), so
a step costs about ``m`` times the mean path's backward pass (see ``docs/results.md``).

``upgrad`` and ``dualproj`` solve a quadratic program with quadprog (torchjd's
``quadprog-projector`` extra); ``pip install 'routing-env[mtl]'`` installs torchjd with
it. Aggregators that need other solvers (CAGrad, Nash-MTL: cvxpy), keep state across
steps (GradVac, ...) or draw on the network's device (GradDrop) are not offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import torch

from routing_env.network import PASS, RoutingNetwork

__all__ = [
    "AGGREGATORS",
    "AggregatorName",
    "TaskJacobian",
    "check_aggregator",
    "make_aggregator",
    "task_jacobian",
]

AggregatorName = Literal["mean", "pcgrad", "upgrad", "dualproj", "mgda", "imtl-g", "aligned-mtl", "config"]
"""The type of ``TrainingConfig.aggregator`` (and of ``--aggregator`` in ``examples/train_wpl.py``)."""

AGGREGATORS: tuple[str, ...] = get_args(AggregatorName)
"""The names ``TrainingConfig(aggregator=...)`` accepts: ``"mean"`` (the minibatch's mean
loss, no torchjd) and torchjd's PCGrad, UPGrad, DualProj, MGDA, IMTL-G, Aligned-MTL and ConFIG."""

# torchjd class, and whether its output is a weighted mean of the rows (multiplied by m here)
_TORCHJD: dict[str, tuple[str, bool]] = {
    "pcgrad": ("PCGrad", False),
    "upgrad": ("UPGrad", True),
    "dualproj": ("DualProj", True),
    "mgda": ("MGDA", True),
    "imtl-g": ("IMTLG", True),
    "aligned-mtl": ("AlignedMTL", True),
    "config": ("ConFIG", False),
}

_INSTALL = "pip install 'routing-env[mtl]'"


def check_aggregator(name: Any) -> None:
    """Raise ``ValueError`` listing the choices when ``name`` is not in :data:`AGGREGATORS`."""
    if not isinstance(name, str) or name not in AGGREGATORS:
        raise ValueError(f"aggregator must be one of {list(AGGREGATORS)}, got {name!r}")


class _Aggregator:
    """A torchjd aggregator on the scale of the sum of the rows (see the module docstring)."""

    def __init__(self, name: str, aggregator: Any, per_row: bool) -> None:
        self.name = name
        self.aggregator = aggregator
        self.per_row = per_row

    def __call__(self, jacobian_mn: torch.Tensor) -> torch.Tensor:
        out_n = self.aggregator(jacobian_mn)
        return out_n * jacobian_mn.shape[0] if self.per_row else out_n

    def __repr__(self) -> str:
        return f"{self.name} ({self.aggregator!r}{', x rows' if self.per_row else ''})"


def make_aggregator(name: str) -> _Aggregator | None:
    """The aggregator named ``name``, callable on an ``m x n`` Jacobian; None for ``"mean"``.

    Raises:
        ValueError: For a name not in :data:`AGGREGATORS`.
        ImportError: When torchjd (or, for upgrad/dualproj, quadprog) is not installed,
            naming ``pip install 'routing-env[mtl]'``.
    """
    check_aggregator(name)
    if name == "mean":
        return None
    try:
        from torchjd import aggregation
    except ImportError as err:
        raise ImportError(f"aggregator={name!r} needs torchjd, which is not installed: {_INSTALL}") from err
    cls, per_row = _TORCHJD[name]
    try:
        aggregator = getattr(aggregation, cls)()
    except ImportError as err:  # upgrad/dualproj: torchjd's quadprog projector
        raise ImportError(
            f"aggregator={name!r} needs a solver that is not installed ({err}): {_INSTALL}"
        ) from err
    return _Aggregator(name, aggregator, per_row)


class TaskJacobian:
    """The per-task gradients of a minibatch, split into shared and private parameters.

    Attributes:
        tasks: The task ids with a row, ascending (the tasks present in the minibatch).
        params: The parameters used by at least one task, in network order.
        users: For each parameter of ``params``, the row indices of the tasks that used it.
        grads: ``grads[r][k]``: gradient of task ``tasks[r]``'s loss ``L_t`` (see the
            module docstring) with respect to ``params[k]``.
    """

    def __init__(
        self,
        tasks: list[int],
        params: list[torch.nn.Parameter],
        users: list[frozenset[int]],
        grads: list[list[torch.Tensor]],
    ) -> None:
        self.tasks = tasks
        self.params = params
        self.users = users
        self.grads = grads

    @property
    def shared(self) -> list[int]:
        """Indices into ``params`` of the parameters used by two or more tasks."""
        return [k for k, u in enumerate(self.users) if len(u) >= 2]

    def shared_rows(self) -> tuple[list[int], torch.Tensor | None]:
        """The rows the aggregator gets: (row indices, ``m x n`` matrix over the shared
        parameters), only of tasks that used a shared parameter; ``(rows, None)`` when
        no parameter is shared."""
        shared = self.shared
        if not shared:
            return [], None
        rows = sorted(set().union(*(self.users[k] for k in shared)))
        matrix = torch.stack([torch.cat([self.grads[r][k].reshape(-1) for k in shared]) for r in rows])
        return rows, matrix

    def apply(self, aggregator: _Aggregator) -> None:
        """Write the update into each parameter's ``.grad`` (which must be None or zero):
        the aggregated shared direction, and each private parameter's task gradient."""
        shared = self.shared
        _, matrix = self.shared_rows()
        if matrix is not None:
            direction_n = aggregator(matrix)
            sizes = [self.params[k].numel() for k in shared]
            for k, piece in zip(shared, direction_n.split(sizes), strict=True):
                self.params[k].grad = piece.view_as(self.params[k])
        for k, users in enumerate(self.users):
            if len(users) == 1:
                (r,) = users
                self.params[k].grad = self.grads[r][k]


def parameter_users(
    network: RoutingNetwork, tasks_N: np.ndarray, routes_Nn: np.ndarray
) -> tuple[list[int], list[tuple[torch.nn.Parameter, frozenset[int]]]]:
    """The tasks present and, for each trainable parameter used, the rows of its tasks.

    Every parameter outside the function blocks (the trunk) is used by every task
    present; a block's parameters by the tasks of the samples whose route took it at
    some depth (PASS uses none).
    """
    tasks = sorted(int(t) for t in np.unique(tasks_N))
    row_of = {t: r for r, t in enumerate(tasks)}
    block_users: dict[int, set[int]] = {}
    for depth in range(routes_Nn.shape[1]):
        pairs = np.unique(np.stack([routes_Nn[:, depth], tasks_N]), axis=1)
        for action, task in pairs.T.tolist():
            target = network.action_target(depth, int(action))
            if target is not None and target != PASS:
                block_users.setdefault(int(target), set()).add(row_of[int(task)])
    param_users: dict[int, set[int]] = {}
    in_block: set[int] = set()
    for b, block in enumerate(network.blocks):
        for p in block.parameters():
            in_block.add(id(p))
            if b in block_users:
                param_users.setdefault(id(p), set()).update(block_users[b])
    everyone = set(range(len(tasks)))
    used = []
    for p in network.parameters():
        if not p.requires_grad:
            continue
        users = everyone if id(p) not in in_block else param_users.get(id(p), set())
        if users:
            used.append((p, frozenset(users)))
    return tasks, used


def task_jacobian(
    *,
    network: RoutingNetwork,
    loss_N: torch.Tensor,
    tasks_N: np.ndarray,
    routes_Nn: np.ndarray,
) -> TaskJacobian:
    """The gradient of each task's loss ``L_t = (1/N) sum_{i in t} loss_N[i]``.

    One backward pass per task present (the graph is kept until the last). The sum of
    the rows is the gradient of ``loss_N.mean()``.

    Args:
        network: The network whose parameters are differentiated.
        loss_N: Per-sample losses of the minibatch, with their graph.
        tasks_N: Task id of each sample (NumPy, on the host).
        routes_Nn: The actions of each sample's route (NumPy).
    """
    tasks, used = parameter_users(network, tasks_N, routes_Nn)
    params = [p for p, _ in used]
    positions = np.searchsorted(np.asarray(tasks), tasks_N)
    index_N = torch.from_numpy(positions.astype(np.int64)).to(loss_N.device)
    losses_T = torch.zeros(len(tasks), dtype=loss_N.dtype, device=loss_N.device).index_add(0, index_N, loss_N)
    losses_T = losses_T / len(loss_N)
    grads: list[list[torch.Tensor]] = []
    for r in range(len(tasks)):
        row: Sequence[torch.Tensor | None] = torch.autograd.grad(
            losses_T[r], params, retain_graph=r < len(tasks) - 1, allow_unused=True
        )
        grads.append([torch.zeros_like(p) if g is None else g for p, g in zip(params, row, strict=True)])
    return TaskJacobian(tasks, params, [u for _, u in used], grads)
