"""The routing network as plain torch modules: trunk, routed layers of function blocks.

Nothing here knows about PettingZoo or agents. A :class:`RoutingNetwork` is a shared,
unrouted trunk followed by routed layers, each a list of function blocks (any
``nn.Module``). A *route* picks one action per decision depth; an action is a block
(or ``PASS`` in the recurrent variant). The module knows which actions are valid where
(block input shapes must fit, and a route must be able to end in a classifier), applies
one block to one representation (for observations), and runs a whole minibatch along its
routes with samples grouped by block, so the cost of a training step depends on the
number of samples, not on the number of blocks.

Shape legend: ``N`` batch, ``C``/``H``/``W`` image, ``D`` flat feature width,
``K`` number of classes, ``n`` number of routing decisions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from routing_env.array_path import ArrayPath

__all__ = [
    "PASS",
    "RoutingNetwork",
    "SimpleConvNet",
    "build_default_network",
    "fc_block",
]

PASS = "PASS"
"""Marker of the PASS action (recurrent routing): leave the representation unchanged."""

Routing = Literal["layered", "recurrent"]
Shape = tuple[int, ...]


class SimpleConvNet(nn.Module):
    """The paper's unrouted trunk: ``conv_layers`` x [conv3x3, BN, ReLU, 2x2 max-pool], flattened.

    Section 4 uses 4 layers of 32 filters (Ravi & Larochelle, 2017). Each layer halves
    the spatial size, so the input must be at least ``2**conv_layers`` pixels high and
    wide: use fewer layers for small images (digits-MTL's 8x8 uses 2).

    Args:
        in_channels: Channels of the input images.
        conv_layers: Number of conv layers (the paper: 4).
        filters: Filters per conv layer (the paper: 32).
    """

    def __init__(self, *, in_channels: int, conv_layers: int = 4, filters: int = 32) -> None:
        super().__init__()
        if in_channels < 1 or conv_layers < 1 or filters < 1:
            raise ValueError(
                f"SimpleConvNet needs in_channels, conv_layers, filters >= 1, got "
                f"{in_channels}, {conv_layers}, {filters}"
            )
        self.conv_layers = conv_layers
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(conv_layers):
            layers += [
                nn.Conv2d(channels, filters, kernel_size=3, padding=1),
                nn.BatchNorm2d(filters),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = filters
        layers.append(nn.Flatten())
        self.body = nn.Sequential(*layers)

    def forward(self, x_NCHW: torch.Tensor) -> torch.Tensor:
        return self.body(x_NCHW)


def fc_block(in_features: int, out_features: int, *, activation: bool = True) -> nn.Module:
    """A fully connected function block: Linear (+ ReLU unless it is a classifier)."""
    if activation:
        return nn.Sequential(nn.Linear(in_features, out_features), nn.ReLU())
    return nn.Sequential(nn.Linear(in_features, out_features))


class RoutingNetwork(nn.Module):
    """A shared trunk followed by routed layers of function blocks.

    Args:
        trunk: Unrouted module applied to every input (e.g. :class:`SimpleConvNet`).
        layers: Routed layers, each a sequence of function blocks. The last layer holds
            the classifiers (their output is the prediction).
        input_shape: ``(C, H, W)`` of one input, used to infer every block's shapes.
        output_size: Width of the prediction (max number of classes over tasks, or the
            regression target width).
        routing: ``"layered"``: decision ``i`` picks a block of layer ``i``.
            ``"recurrent"``: decisions ``0..n-2`` pick any block of layers ``0..n-2``
            whose input shape fits the current representation, or PASS; the last
            decision picks a classifier (paper appendix 7.2).

    Raises:
        ValueError: When the trunk does not accept ``input_shape``, when a layer is
            empty, or when no route can end in a classifier of ``output_size`` outputs.

    Attributes:
        num_decisions: ``n``, routing decisions per sample (= number of routed layers).
        num_actions: Size of the action space: the largest number of choices at any
            depth (recurrent: blocks of layers ``0..n-2`` plus PASS, which is the last
            action, ``num_actions - 1``).
        observation_width: ``D``: the largest flattened representation a router sees.
    """

    def __init__(
        self,
        *,
        trunk: nn.Module,
        layers: Sequence[Sequence[nn.Module]],
        input_shape: Sequence[int],
        output_size: int,
        routing: Routing = "layered",
    ) -> None:
        super().__init__()
        if routing not in ("layered", "recurrent"):
            raise ValueError(f"routing must be 'layered' or 'recurrent', got {routing!r}")
        if not layers or any(len(layer) == 0 for layer in layers):
            raise ValueError("layers must be a non-empty sequence of non-empty sequences of blocks")
        if routing == "recurrent" and len(layers) < 2:
            raise ValueError("recurrent routing needs at least 2 routed layers (blocks, then classifiers)")
        for layer in layers:
            for block in layer:
                if not isinstance(block, nn.Module):
                    raise TypeError(f"function blocks must be nn.Module, got {type(block).__name__}")
        self.trunk = trunk
        self.routing: Routing = routing
        self.input_shape: Shape = tuple(int(s) for s in input_shape)
        self.output_size = int(output_size)
        self.blocks = nn.ModuleList([b for layer in layers for b in layer])
        first_of_layer = np.cumsum([0] + [len(layer) for layer in layers]).tolist()
        layer_blocks = [list(range(first_of_layer[i], first_of_layer[i + 1])) for i in range(len(layers))]
        self.num_decisions = len(layers)
        # _actions[depth][action] = block index, PASS, or None (an unused action index)
        if routing == "layered":
            self.num_actions = max(len(ids) for ids in layer_blocks)
            self._actions: list[tuple[int | str | None, ...]] = [tuple(ids) for ids in layer_blocks]
        else:
            pool = [b for ids in layer_blocks[:-1] for b in ids]
            self.num_actions = max(len(pool) + 1, len(layer_blocks[-1]))
            padding = [None] * (self.num_actions - 1 - len(pool))
            # PASS is the last action index at every depth that offers it
            self._actions = [(*pool, *padding, PASS)] * (len(layers) - 1) + [tuple(layer_blocks[-1])]
        self._block_stateful = [_has_mode_dependent_layers(b) for b in self.blocks]
        self._block_list = list(self.blocks)  # plain-list indexing: this is on the per-decision path
        self._array_path = ArrayPath(self._block_list)
        self._infer_shapes()

    # ------------------------------------------------------------------ shapes
    def _infer_shapes(self) -> None:
        """Find every reachable (depth, shape), the valid actions there, and D."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                try:
                    out = self.trunk(torch.zeros(2, *self.input_shape))
                except Exception as err:
                    raise ValueError(
                        f"the trunk does not accept inputs of shape {self.input_shape} (C, H, W): {err}. "
                        "For small images use fewer conv layers (SimpleConvNet(conv_layers=...))."
                    ) from err
                self.trunk_output_shape: Shape = tuple(out.shape[1:])
                # transitions[(depth, shape)] = {action: next_shape}
                transitions: dict[tuple[int, Shape], dict[int, Shape]] = {}
                frontier = {self.trunk_output_shape}
                cache: dict[tuple[int, Shape], Shape | None] = {}
                for depth, actions in enumerate(self._actions):
                    nxt: set[Shape] = set()
                    for shape in frontier:
                        moves: dict[int, Shape] = {}
                        for action, target in enumerate(actions):
                            if target is None:
                                continue
                            if target == PASS:
                                moves[action] = shape
                            else:
                                key = (int(target), shape)
                                if key not in cache:
                                    cache[key] = _output_shape(self.blocks[int(target)], shape)
                                out_shape = cache[key]
                                if out_shape is not None:
                                    moves[action] = out_shape
                        transitions[(depth, shape)] = moves
                        nxt.update(moves.values())
                    frontier = nxt
        finally:
            self.train(was_training)
        # backward pass: keep only moves from which a route can still end in a prediction
        n = self.num_decisions
        feasible: set[tuple[int, Shape]] = {(n, (self.output_size,))}
        self._masks: dict[tuple[int, Shape], np.ndarray] = {}
        self._next_shape: dict[tuple[int, Shape], dict[int, Shape]] = {}
        for depth in reversed(range(n)):
            for (d, shape), moves in transitions.items():
                if d != depth:
                    continue
                ok = {a: s for a, s in moves.items() if (depth + 1, s) in feasible}
                if ok:
                    feasible.add((depth, shape))
                    mask = np.zeros(self.num_actions, dtype=np.int8)
                    mask[list(ok)] = 1
                    self._masks[(depth, shape)] = mask
                    self._next_shape[(depth, shape)] = ok
        if (0, self.trunk_output_shape) not in feasible:
            raise ValueError(
                f"no route through the routed layers ends in a prediction of width {self.output_size}: "
                f"the trunk outputs {self.trunk_output_shape} and the blocks' shapes do not chain. "
                "Check each layer's input/output sizes and the last layer's output size."
            )
        self.observation_width = max(math.prod(s) for (_, s) in self._masks)

    def action_mask(self, depth: int, shape: Shape) -> np.ndarray:
        """Valid actions (int8, 1 = allowed) at ``depth`` for a representation of ``shape``.

        The returned array is shared: copy it before changing it.
        """
        return self._masks[(depth, shape)]

    def action_target(self, depth: int, action: int) -> int | str | None:
        """The block index an action means at ``depth``, :data:`PASS`, or None if none."""
        actions = self._actions[depth]
        return actions[action] if 0 <= action < len(actions) else None

    def is_pass(self, depth: int, action: int) -> bool:
        return self.action_target(depth, action) == PASS

    # ----------------------------------------------------------------- forward
    def apply_action(self, depth: int, action: int, v: torch.Tensor) -> torch.Tensor:
        """Apply one decision to a batch ``v`` (no grad bookkeeping is done here).

        Blocks with batch-statistics or random layers (batch norm, dropout) are run in
        eval mode here, since one sample's observation cannot depend on a batch that is
        not routed yet; the training pass (:meth:`forward_routes`) runs them in the
        network's current mode.
        """
        target = self._actions[depth][action]
        if target == PASS:
            return v
        block = self._block_list[target]  # type: ignore[index]
        if self._block_stateful[target] and block.training:  # type: ignore[index]
            block.eval()
            try:
                return block(v)
            finally:
                block.train()
        return block(v)

    def refresh_array_path(self) -> None:
        """Re-check, at the next use of each block, that :meth:`apply_action_array` may
        still run it with NumPy (parameters not replaced, no hooks added).

        The engine calls this before every minibatch; call it yourself after changing a
        block's modules or parameters between two calls of :meth:`apply_action_array`.
        """
        self._array_path.refresh()

    def apply_action_array(self, depth: int, action: int, v_D: np.ndarray) -> np.ndarray | None:
        """:meth:`apply_action` for one flat float32 CPU representation, run with NumPy.

        The per-decision observation path of the AEC env (:mod:`routing_env.array_path`):
        a block made only of ``nn.Linear``, ``nn.ReLU``, ``nn.Identity``, ``nn.Flatten``
        and dropout layers (the default fc blocks) is evaluated on NumPy views of its own
        parameters. Returns None when the block has another layer, hooks (or hooks may be
        present), or non-float32/non-CPU parameters; then use :meth:`apply_action`.
        Results match torch's to float32 rounding.
        """
        target = self._actions[depth][action]
        if target == PASS:
            return v_D
        return self._array_path(target, v_D)  # type: ignore[arg-type]

    def forward_routes(self, trunk_out_N: torch.Tensor, routes_Nn: torch.Tensor) -> torch.Tensor:
        """Run a batch of trunk outputs along their routes; return predictions ``N x K``.

        Samples are grouped by (representation shape, action) at each depth, so there is
        one block call per block used, and gradients reach only the blocks on a route.
        The same as :meth:`start_groups`, then :meth:`route_depth` for each depth, then
        :meth:`gather_groups`: the batched routing path runs those steps one depth at a
        time and gets the very same numbers.

        Args:
            trunk_out_N: Trunk output for the batch (``N x ...``).
            routes_Nn: ``int64`` actions, one row per sample, one column per depth.
        """
        groups = self.start_groups(trunk_out_N)
        for depth in range(self.num_decisions):
            groups = self.route_depth(groups, depth, routes_Nn[:, depth])
        return self.gather_groups(groups, trunk_out_N.shape[0])

    @staticmethod
    def start_groups(trunk_out_N: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The representation groups at depth 0: every sample, in order, in one group."""
        return [(torch.arange(trunk_out_N.shape[0]), trunk_out_N)]

    def route_depth(
        self, groups: list[tuple[torch.Tensor, torch.Tensor]], depth: int, actions_N: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Apply the decisions of one depth to groups of representations.

        Args:
            groups: ``(sample indices, representations)`` pairs, one per representation
                shape (as :meth:`start_groups` or this method returns them).
            depth: The decision depth.
            actions_N: ``int64`` action of every sample of the batch at this depth
                (indexed by sample index).

        Returns:
            The groups after the depth: within each group, the samples that took the
            same action are run through the block together (one call per block).
        """
        actions = self._actions[depth]
        by_shape: dict[Shape, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for idx, v in groups:
            acts = actions_N[idx]
            acts_sorted, order = torch.sort(acts, stable=True)
            counts = torch.bincount(acts_sorted, minlength=self.num_actions).tolist()
            if max(counts) == len(idx):  # the whole group takes one action
                parts = [(idx, v, int(acts_sorted[0]))]
            else:
                idx_s, v_s = idx[order], v[order]
                parts, start = [], 0
                for action, count in enumerate(counts):
                    if count:
                        parts.append((idx_s[start : start + count], v_s[start : start + count], action))
                        start += count
            for part_idx, part_v, action in parts:
                target = actions[action]
                out = part_v if target == PASS else self._block_list[target](part_v)  # type: ignore[index]
                by_shape.setdefault(tuple(out.shape[1:]), []).append((part_idx, out))
        return [
            (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
            if len(parts) > 1
            else parts[0]
            for parts in by_shape.values()
        ]

    @staticmethod
    def gather_groups(groups: list[tuple[torch.Tensor, torch.Tensor]], num_samples: int) -> torch.Tensor:
        """The representations of equal-shape groups as one ``N x ...`` tensor in sample order."""
        idx, out = (
            groups[0]
            if len(groups) == 1
            else (
                torch.cat([g[0] for g in groups]),
                torch.cat([g[1] for g in groups]),
            )
        )
        inverse = torch.empty_like(idx)
        inverse[idx] = torch.arange(num_samples)
        return out[inverse]

    def forward(self, x_NCHW: torch.Tensor, routes_Nn: torch.Tensor) -> torch.Tensor:
        """Predictions for inputs routed along ``routes_Nn`` (trunk, then routed layers)."""
        return self.forward_routes(self.trunk(x_NCHW), routes_Nn)


def build_default_network(
    *,
    input_shape: Sequence[int],
    num_tasks: int,
    output_size: int,
    conv_layers: int = 4,
    filters: int = 32,
    hidden_width: int = 128,
    routed_layers: int = 3,
    blocks_per_layer: int | None = None,
    routing: Routing = "layered",
) -> RoutingNetwork:
    """The paper's routed SimpleConvNet (section 4).

    A :class:`SimpleConvNet` trunk, then ``routed_layers`` fully connected routed layers
    of ``blocks_per_layer`` blocks each (default: one per task): ``D -> hidden``,
    ``hidden -> hidden`` (x ``routed_layers - 2``), ``hidden -> output_size``; ReLU
    after every block but the classifiers.
    """
    if routed_layers < 1:
        raise ValueError(f"routed_layers must be >= 1, got {routed_layers}")
    blocks = num_tasks if blocks_per_layer is None else blocks_per_layer
    if blocks < 1 or hidden_width < 1:
        raise ValueError(f"blocks_per_layer and hidden_width must be >= 1, got {blocks}, {hidden_width}")
    c, h, w = (int(s) for s in input_shape)
    if min(h, w) < 2**conv_layers:
        raise ValueError(
            f"inputs of {h}x{w} pixels are too small for {conv_layers} conv layers (each halves the "
            f"size; need at least {2**conv_layers}x{2**conv_layers}): pass conv_layers <= "
            f"{max(1, int(math.log2(max(1, min(h, w)))))}"
        )
    trunk = SimpleConvNet(in_channels=c, conv_layers=conv_layers, filters=filters)
    trunk_width = filters * (h // 2**conv_layers) * (w // 2**conv_layers)
    widths = [trunk_width] + [hidden_width] * (routed_layers - 1) + [output_size]
    layers = [
        [fc_block(widths[i], widths[i + 1], activation=i < routed_layers - 1) for _ in range(blocks)]
        for i in range(routed_layers)
    ]
    return RoutingNetwork(
        trunk=trunk, layers=layers, input_shape=(c, h, w), output_size=output_size, routing=routing
    )


def _output_shape(block: nn.Module, shape: Shape) -> Shape | None:
    """Output shape of ``block`` on a representation of ``shape``, or None if it does not fit."""
    try:
        out = block(torch.zeros(2, *shape))
    except (RuntimeError, ValueError, TypeError, IndexError):
        return None
    if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[0] != 2:
        return None
    return tuple(out.shape[1:])


_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.InstanceNorm1d)


def _has_mode_dependent_layers(module: nn.Module) -> bool:
    return any(isinstance(m, _MODE_DEPENDENT) for m in module.modules())
