"""Torch pieces shared by the approximator agents (REINFORCE, Q-learning, the dispatcher).

Per the paper's appendix 7.3 an approximator is "a vector of d MLPs, one for each
decision/depth", each a 2-layer MLP with a hidden width of 64 fed with
``concat(v, one-hot(t))``. The tabular representation is a ``[depth, action]`` table;
it is wrapped as a module with the same call signature so one learning rule serves
both.

Parameters are initialized from the agent's own :class:`torch.Generator`, never
from torch's global generator, so building an agent has no effect on other code's
randomness.

Shape legend: ``B`` decisions in a batch, ``F`` input features (``D + T``), ``H``
hidden units, ``A`` actions (or outputs), ``n`` depths.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from agents.base import Observation

__all__ = [
    "DepthTable",
    "PerDepthMLP",
    "Representation",
    "features",
    "make_network",
    "make_optimizer",
    "masked_fill_logits",
    "torch_generator",
]

Representation = Literal["table", "mlp"]


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
        self.mlps = nn.ModuleList(
            nn.Sequential(
                _linear(in_features, hidden_width, generator),
                nn.ReLU(),
                _linear(hidden_width, out_features, generator, output_scale),
            )
            for _ in range(num_depths)
        )

    def forward(self, x_BF: torch.Tensor, depths_B: Sequence[int]) -> torch.Tensor:
        """Outputs ``B x A``; row ``b`` comes from the MLP of depth ``depths_B[b]``."""
        out = [self.mlps[d](x_BF[b : b + 1]) for b, d in enumerate(depths_B)]
        return torch.cat(out, dim=0)


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

    def forward(self, x_BF: torch.Tensor, depths_B: Sequence[int]) -> torch.Tensor:
        """Rows ``depths_B`` of the table, ``B x A`` (``x_BF`` is ignored)."""
        return self.table_nA[torch.as_tensor(list(depths_B), dtype=torch.long)]


def make_network(
    representation: Representation,
    *,
    in_features: int,
    out_features: int,
    num_depths: int,
    hidden_width: int,
    generator: torch.Generator,
    output_scale: float = 1.0,
) -> nn.Module:
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


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (``"adam"``) or plain ``torch.optim.SGD`` (``"sgd"``).

    Raises:
        ValueError: On an unknown name.
    """
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")
