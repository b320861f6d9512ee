"""The NumPy path of one decision through a plain fully connected block.

The AEC env routes one sample at a time, and its observation after a decision is the
representation the chosen block outputs. For a block made only of ``nn.Linear``,
``nn.ReLU``, ``nn.Identity``, ``nn.Flatten`` and dropout layers (the default fc blocks),
:class:`ArrayPath` evaluates it with NumPy on views of the block's own parameters,
which skips the dispatch cost of several small torch calls per decision. Training never
goes through here (the engine's minibatch forward is torch's); the batched path does
not use it either. Results match torch's to float32 rounding.

What it relies on, and how narrowly:

- The parameters it reads are found with public calls (``children()``,
  ``parameters(recurse=False)``, ``Tensor.data_ptr()``): a replaced parameter or child
  is noticed and the chain rebuilt.
- A forward hook must not be skipped, and torch has no public way to ask whether a
  module, or all modules, have hooks. :func:`hooks_present` reads the hook
  dictionaries torch keeps (module attributes and ``torch.nn.modules.module``
  globals), in this one function only; where one of them is missing (another torch
  version), it answers "maybe" and the torch path runs instead. So a future torch can
  only make this path unused, never wrong.

Shape legend: ``D`` flat feature width.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["ArrayChain", "ArrayPath", "hooks_present"]

_MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks")
_MISSING = object()


def hooks_present(module: nn.Module | None = None) -> bool:
    """Whether forward hooks may run on ``module`` (None: on every module, the global ones).

    True when a hook is registered, and also when torch keeps its hooks where this
    function does not know to look (then nothing may be skipped).
    """
    owner: object
    if module is None:
        from torch.nn.modules import module as torch_module

        owner, names = torch_module, _GLOBAL_HOOKS
    else:
        owner, names = module, _MODULE_HOOKS
    # hooks with kwargs, or always called, are kept in these dicts too (flagged in others)
    return any(getattr(owner, name, _MISSING) is _MISSING or getattr(owner, name) for name in names)


class ArrayChain:
    """A block of Linear/ReLU layers as NumPy operations on views of its parameters.

    The views share memory with the parameters, so optimizer steps (in place) are seen
    at once; :meth:`still_valid` notices parameters or children that were replaced (new
    objects or storage) and hooks that were added, and :class:`ArrayPath` then rebuilds
    or drops the chain.
    """

    _PASSTHROUGH = (nn.Identity, nn.Flatten, nn.Dropout, nn.AlphaDropout)

    def __init__(
        self,
        modules: list[nn.Module],
        ops: list[tuple[np.ndarray | None, np.ndarray | None, bool]],
    ) -> None:
        self.modules = modules
        self.ops = ops  # (weight, bias, relu after); weight None: relu alone
        self.snapshot = [self._state(m) for m in modules]
        self.stamp = -1

    @staticmethod
    def _state(module: nn.Module) -> tuple[list[object], list[int]]:
        """The module's children and own parameters (identity) and the parameters' storage."""
        params = list(module.parameters(recurse=False))
        return [*module.children(), *params], [p.data_ptr() for p in params]

    @classmethod
    def build(cls, block: nn.Module) -> ArrayChain | None:
        """The chain of ``block``, or None when it holds another layer, a hook, or
        parameters that are not float32 on the CPU."""
        modules = list(block.modules())
        ops: list[tuple[np.ndarray | None, np.ndarray | None, bool]] = []
        for m in modules:
            if hooks_present(m):
                return None
            kind = type(m)
            if kind is nn.Sequential:
                continue
            if kind is nn.Linear:
                assert isinstance(m, nn.Linear)
                params = [m.weight] if m.bias is None else [m.weight, m.bias]
                if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in params):
                    return None
                bias = None if m.bias is None else m.bias.detach().numpy()
                ops.append((m.weight.detach().numpy(), bias, False))
            elif kind is nn.ReLU:
                if ops and ops[-1][0] is not None and not ops[-1][2]:
                    ops[-1] = (ops[-1][0], ops[-1][1], True)  # fuse into the linear before
                else:
                    ops.append((None, None, True))
            elif kind in cls._PASSTHROUGH:  # Flatten: a flat vector; dropout: observations use eval mode
                continue
            else:
                return None
        # modules() lists a Sequential before its children, depth first: the order they run in
        return cls(modules, ops)

    def still_valid(self) -> bool:
        """Same child modules, same parameter objects and storage, and still no hooks."""
        for module, (members, pointers) in zip(self.modules, self.snapshot, strict=True):
            if hooks_present(module):
                return False
            now_members, now_pointers = self._state(module)
            if len(now_members) != len(members) or any(
                a is not b for a, b in zip(now_members, members, strict=True)
            ):
                return False
            if now_pointers != pointers:
                return False
        return True

    def __call__(self, v_D: np.ndarray) -> np.ndarray:
        for weight, bias, relu in self.ops:
            if weight is not None:
                v_D = weight @ v_D
                if bias is not None:
                    v_D += bias
                if relu:
                    np.maximum(v_D, 0, out=v_D)
            else:
                v_D = np.maximum(v_D, 0)
        return v_D


class ArrayPath:
    """The array chains of a network's blocks, checked again after each :meth:`refresh`.

    Args:
        blocks: The network's function blocks, by index.
    """

    def __init__(self, blocks: list[nn.Module]) -> None:
        self.blocks = blocks
        self._chains: dict[int, ArrayChain | None] = {}
        self._stamp = 0
        self._global_hooks = hooks_present()

    def refresh(self) -> None:
        """Check every chain (and the global hooks) again at its next use."""
        self._stamp += 1
        self._global_hooks = hooks_present()

    def __call__(self, block: int, v_D: np.ndarray) -> np.ndarray | None:
        """Block ``block`` applied to ``v_D`` with NumPy, or None where it cannot be."""
        if self._global_hooks:
            return None
        chain = self._chains.get(block)
        if chain is None or chain.stamp != self._stamp:
            chain = self._chain(block)
            if chain is None:
                return None
        return chain(v_D)

    def _chain(self, block: int) -> ArrayChain | None:
        chain = self._chains.get(block)
        if chain is None or not chain.still_valid():
            chain = ArrayChain.build(self.blocks[block])
        if chain is not None:
            chain.stamp = self._stamp
        self._chains[block] = chain
        return chain
