"""The one optimizer factory and the one learning-rate schedule of the project.

The env's block training (:class:`~routing_env.engine.RoutingEngine`), the baselines
(:mod:`routing_env.baselines`) and the neural router agents (:mod:`agents`) build their
torch optimizers with :func:`make_optimizer`, and decay a learning rate with
:class:`StepDecay` (the paper divides it by 10 every 20 epochs), so a routing run and a
baseline given the same settings train with the same optimizer and budget (as Tianshou's
``algorithm/optim.py`` gives every algorithm one factory). This module needs only torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch

__all__ = ["OPTIMIZER_NAMES", "OptimizerName", "StepDecay", "make_optimizer"]

OptimizerName = Literal["sgd", "adam"]
#: The optimizers :func:`make_optimizer` builds.
OPTIMIZER_NAMES: tuple[str, ...] = ("sgd", "adam")


def make_optimizer(
    params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
    *,
    name: str,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``torch.optim.SGD`` (``"sgd"``, with ``momentum``) or ``torch.optim.Adam`` (``"adam"``).

    Args:
        params: The parameters to train (e.g. those of a module that require grad), or
            torch's parameter groups (dicts with ``"params"`` and settings of their own,
            such as ``"lr"``); a group's ``lr`` is decayed by :class:`StepDecay` as the others.
        name: ``"sgd"`` or ``"adam"``.
        lr: The learning rate.
        momentum: SGD's momentum; Adam takes none, and refuses a non-zero one.
        weight_decay: L2 weight decay.

    Raises:
        ValueError: On an unknown name, or a momentum given to Adam.
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        if momentum:
            raise ValueError(f"momentum applies to 'sgd' only; 'adam' got momentum={momentum!r}")
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZER_NAMES}, got {name!r}")


@dataclass(frozen=True)
class StepDecay:
    """A learning rate multiplied by ``factor`` every ``every`` epochs (None: constant).

    Apply it to an optimizer in place after each epoch (:meth:`step`: the env's and
    the baselines' way, where each decay multiplies the rate the optimizer holds), or
    read the rate of an epoch from the initial one (:meth:`lr_at`: for a rate kept
    outside an optimizer, such as a tabular router's policy step size).

    Raises:
        ValueError: When ``every`` is not None or >= 1, or ``factor`` not in (0, 1].
    """

    every: int | None
    factor: float = 0.1

    def __post_init__(self) -> None:
        if self.every is not None and (isinstance(self.every, bool) or self.every < 1):
            raise ValueError(f"lr_decay_every must be >= 1 or None, got {self.every}")
        if not 0.0 < self.factor <= 1.0:
            raise ValueError(f"lr_decay_factor must be in (0, 1], got {self.factor}")

    def decays_after(self, epoch: int) -> bool:
        """Whether the rate drops once ``epoch`` epochs are complete."""
        return self.every is not None and epoch > 0 and epoch % self.every == 0

    def step(self, optimizer: torch.optim.Optimizer, *, epoch: int) -> None:
        """Call after each epoch with the number of completed epochs: decays in place when due."""
        if self.decays_after(epoch):
            for group in optimizer.param_groups:
                group["lr"] *= self.factor

    def lr_at(self, lr: float, epoch: int) -> float:
        """The rate during epoch ``epoch`` (0-based) of a schedule that starts at ``lr``."""
        if self.every is None:
            return lr
        return lr * self.factor ** (epoch // self.every)
