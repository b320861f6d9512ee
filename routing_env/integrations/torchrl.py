"""The routing env for TorchRL (extra ``torchrl``).

TorchRL wraps PettingZoo AEC envs itself, and the routing env needs no adapter:
``torchrl.envs.PettingZooWrapper(env=routing_env.env(...), use_mask=True)`` works for
every configuration (``per_task``, ``single``, ``dispatched`` x ``layered``,
``recurrent``), with or without ``return_state=True``, and passes
``torchrl.envs.utils.check_env_specs``. What TorchRL relies on, and what the env
guarantees for it:

- every agent's ``rewards``, ``terminations``, ``truncations`` and ``infos`` entries on
  every step (it reads them for all of ``possible_agents``): every agent is listed from
  ``reset()`` on;
- infos with the same keys on every step and tensor-able values (it builds an info spec
  from the first reset's infos): numbers and bools only, -1 where nothing applies yet;
- ``state()``/``state_space`` for ``return_state=True``.

For an AEC env TorchRL makes one group per agent by default (``"router_0"``, ...);
:func:`torchrl_env` groups the routers into ``"router"`` (``router_0 .. router_{K-1}``
stacked on one agent dimension, so one module can hold every router's parameters) and
the dispatcher, if any, into ``"dispatcher"``. Discrete observation entries (``task``,
``depth``) arrive one-hot. In an AEC env one agent acts per step: ``(group, "mask")`` marks it (``use_mask=True``), the
action mask is ``(group, "action_mask")``, and a step's reward is in the acting agent's
entry of ``(group, "reward")``. Non-acting agents' entries hold zeros: mask them out of a
loss (e.g. ``loss.loss_mask_key = ("router", "mask")``). An episode ends when every
agent is done, i.e. when the env's episode ends, and TorchRL then resets; it never takes
PettingZoo's terminated turns.

This module adds what training with TorchRL needs besides the wrapper:

- :func:`torchrl_env`: the wrapper with the settings routers want (masks, categorical
  actions).
- :func:`evaluate_policy`: routes the test split greedily through the training env
  (the network lives in the env, so another env instance would hold other weights)
  and returns the env's ``evaluation()``.

``examples/torchrl_routers.py`` trains per-task routers with TorchRL's collector and PPO
loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from pettingzoo import AECEnv

from routing_env.extras import import_extra

if TYPE_CHECKING:  # pragma: no cover
    from tensordict.nn import TensorDictModuleBase
    from torchrl.envs import PettingZooWrapper

    from routing_env.env import RoutingEnv

__all__ = ["evaluate_policy", "greedy_pass", "group_map", "routing_env_of", "samples_to_score", "torchrl_env"]


def _import_torchrl() -> None:
    import_extra(
        "torchrl.envs",
        feature="routing_env.integrations.torchrl",
        extra="torchrl",
        package="torchrl>=0.14,<0.15",
    )


def torchrl_env(env: AECEnv, **kwargs: Any) -> PettingZooWrapper:
    """``env`` as a ``torchrl.envs.PettingZooWrapper`` for routers.

    The same as ``PettingZooWrapper(env=env, use_mask=True, categorical_actions=True,
    group_map={"router": [router_0, ...], "dispatcher": ["dispatcher_0"]}, **kwargs)``:
    ``use_mask`` marks the acting agent (an AEC env steps one agent at a time),
    categorical actions are block indices, as the env takes them, and the routers form
    one group (TorchRL's default for AEC envs is a group per agent).

    Args:
        env: A routing env, ``routing_env.env(...)`` (any configuration).
        **kwargs: More ``PettingZooWrapper`` arguments, e.g. ``return_state=True``,
            ``group_map`` (to group otherwise), ``device``, ``seed`` (a seed restarts the
            routing run).

    Raises:
        ImportError: When TorchRL is not installed (naming the extra).
        TypeError: When ``env`` is not a PettingZoo AEC env.
    """
    _import_torchrl()
    from torchrl.envs import PettingZooWrapper

    if not isinstance(env, AECEnv):
        raise TypeError(f"torchrl_env wraps a PettingZoo AEC env such as routing_env.env(), got {env!r}")
    options = {
        "use_mask": True,
        "categorical_actions": True,
        "group_map": group_map(env.possible_agents),
        **kwargs,
    }
    return PettingZooWrapper(env=env, **options)


def group_map(agents: Sequence[str]) -> dict[str, list[str]]:
    """TorchRL groups of the routing env's agents: ``"router"`` and, if any, ``"dispatcher"``.

    Agents that are not the routing env's (other names) get a group each.
    """
    agents = list(agents)
    groups = {
        name: members
        for name in ("router", "dispatcher")
        if (members := [a for a in agents if a.rsplit("_", 1)[0] == name])
    }
    if sum(len(m) for m in groups.values()) != len(agents):  # not the routing env's agents
        groups = {a: [a] for a in agents}
    return groups


def routing_env_of(env: Any) -> RoutingEnv:
    """The :class:`~routing_env.RoutingEnv` inside a TorchRL ``PettingZooWrapper``.

    Raises:
        TypeError: When ``env`` does not wrap a routing env.
    """
    from routing_env.env import RoutingEnv

    inner = getattr(env, "_env", None)  # where TorchRL's wrappers keep the wrapped env
    unwrapped = getattr(inner, "unwrapped", None)
    if not isinstance(unwrapped, RoutingEnv):
        raise TypeError(
            f"expected a TorchRL PettingZooWrapper around a routing env, got {type(env).__name__}"
        )
    return unwrapped


def evaluate_policy(
    env: PettingZooWrapper, policy: TensorDictModuleBase, *, num_samples: int | None = None
) -> dict[str, Any]:
    """Route the test split greedily with a TorchRL policy; the env's evaluation.

    The policy acts with TorchRL's deterministic exploration type (the mode of a
    categorical distribution: the most probable allowed block), without gradients. The
    env starts a pass over the test split (``reset(options={"mode": "eval"})``: nothing
    is trained, the tasks are interleaved, so a pass cut short scores every task in
    proportion), and goes back to training afterwards. A collector that was collecting
    on ``env`` must reset it before it collects again.

    Args:
        env: The TorchRL wrapper of the routing env that training used.
        policy: Maps the env's tensordict to actions (e.g. a ``ProbabilisticActor``).
        num_samples: Test samples to score (default: the whole test split). An episode
            of several samples is finished, so a few more may be scored.

    Returns:
        ``evaluation()`` of the routing env: ``{"accuracy", "accuracy_per_task",
        "samples", "complete"}`` (``loss`` keys for regression).

    Raises:
        ImportError: When TorchRL is not installed.
        ValueError: When ``num_samples`` is not a positive int.
        TypeError: When ``env`` does not wrap a routing env.
    """
    _import_torchrl()
    return greedy_pass(env, policy, routing_env_of(env), num_samples=num_samples)


def greedy_pass(
    env: Any,
    policy: TensorDictModuleBase,
    routing: RoutingEnv,
    *,
    split: Literal["test", "validation"] = "test",
    num_samples: int | None = None,
) -> dict[str, Any]:
    """Route a split greedily through a TorchRL wrapper of the routing game; its evaluation.

    The loop of :func:`evaluate_policy` for any TorchRL wrapper whose ``reset(options=...)``
    reaches the routing env ``routing`` (the AEC env's wrapper, or the parallel env's, as
    :mod:`routing_env.integrations.benchmarl` builds it): the policy acts with TorchRL's
    deterministic exploration type, without gradients, over a pass of ``split`` (nothing is
    trained), and the env goes back to training afterwards.

    Raises:
        ValueError: When the split is unknown or empty, or ``num_samples`` is not a positive int.
    """
    from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

    num_samples = samples_to_score(routing, split, num_samples)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        td = env.reset(options={"mode": "eval", "split": split})
        while True:
            td = env.step(policy(td))
            if bool(td["next", "done"].all()):  # the episode's samples are routed
                if routing.eval_pass_complete or routing.evaluation()["samples"] >= num_samples:
                    break
                td = env.reset()
            else:
                td = step_mdp(td)
    result = routing.evaluation()
    env.reset(options={"mode": "train"})
    return result


def samples_to_score(routing: RoutingEnv, split: str, num_samples: int | None) -> int:
    """``num_samples`` checked (default: the size of ``split``) for a greedy pass of ``routing``.

    Raises:
        ValueError: When the split is unknown or empty, or ``num_samples`` is not a positive int.
    """
    if split not in ("test", "validation"):
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
    data = getattr(routing.dataset, split)
    if data is None or len(data) == 0:
        raise ValueError(f"the dataset has no {split} split")
    if num_samples is None:
        num_samples = len(data)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    return num_samples
