"""The routing env for Tianshou 2.x (extra ``tianshou``).

Tianshou reaches PettingZoo through ``tianshou.env.PettingZooEnv``, an AEC adapter
whose ``reset``/``step`` return ``{"agent_id", "obs", "mask"}`` for the agent to act,
and through ``MultiAgentOffPolicyAlgorithm``/``MultiAgentOnPolicyAlgorithm``, which
dispatch each transition to the algorithm of its ``agent_id``. What it needs of the
env, and how :func:`tianshou_env` provides it:

- identical observation and action spaces for every agent: true of the ``per_task``
  and ``single`` configurations; ``dispatched`` (the dispatcher's mask has another
  length) is refused with a :class:`ValueError`.
- everything a policy needs in ``obs["observation"]`` (the adapter drops the other
  keys): :class:`~routing_env.integrations.FlatObservation` puts the one-hot depth
  and task there, after the representation v unless ``representation=False``.
- the mask in ``obs["action_mask"]``: the env's own key.
- no ``None`` in infos (its replay buffer rejects nulls): the routing env's infos hold
  numbers only (``correct`` is -1 where nothing was judged);
  :class:`~routing_env.integrations.InfoNoneAsSentinel` stays in the chain for a wrapped
  env that adds ``None``.

Seeding: the adapter resets the env once when it is built (a fresh run from OS
entropy); ``DummyVectorEnv.seed(s)`` resets it with ``seed=s`` once, which restarts the
run (network weights, data order) from ``s``. Tianshou's collectors reset episodes
without a seed, so training continues the same run, as the routing env expects.

Evaluation: Tianshou evaluates on test envs of their own, but the routing network
lives in the env, so a second env instance would hold another, untrained network.
:func:`evaluate_policy` instead routes the test split greedily through the training
env (eval mode, nothing trained) with a Tianshou ``Collector``, then switches it back
to training; a training collector must be reset (``collector.reset()``) before it
collects again.

Two things the algorithms need besides the env: :func:`masked_actor` masks the logits
of actor policies (REINFORCE, PPO, A2C; DQN masks its Q-values itself), and
:func:`training_step_for_each_agent` works around Tianshou 2.0.1's multi-agent trainer,
which flags only the multi-agent policy, not each agent's, as training (so they would
collect without exploring). ``examples/tianshou_routers.py`` puts it all together.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pettingzoo import AECEnv
from pettingzoo.utils.wrappers import BaseWrapper

from routing_env.extras import import_extra
from routing_env.integrations.wrappers import FlatObservation, InfoNoneAsSentinel

if TYPE_CHECKING:  # pragma: no cover
    from tianshou.algorithm.algorithm_base import Policy
    from tianshou.env import PettingZooEnv

__all__ = ["evaluate_policy", "masked_actor", "tianshou_env", "training_step_for_each_agent"]

# masked logits: very negative but finite, so that entropies stay finite (0 * -1e9 = 0)
_MASKED_LOGIT = -1e9


def _import_tianshou() -> None:
    import_extra(
        "tianshou.env",
        feature="routing_env.integrations.tianshou",
        extra="tianshou",
        package="tianshou>=2,<3",
    )


def tianshou_env(env: AECEnv, *, representation: bool = False) -> PettingZooEnv:
    """``env`` as a ``tianshou.env.PettingZooEnv`` (see the module docstring).

    Args:
        env: A routing env, ``routing_env.env(router="per_task" | "single", ...)``.
        representation: Also give policies the representation v (an MLP router, the
            paper's appendix 7.3); False gives them depth and task only (the state of
            the paper's tabular routers), which learns fastest.

    Returns:
        The adapter; ``adapter.agents`` lists the router ids in the order that
        ``MultiAgentOffPolicyAlgorithm(algorithms=[...], env=adapter)`` expects its
        algorithms, and ``adapter.observation_space["observation"]`` is the policy input.

    Raises:
        ImportError: When Tianshou is not installed (extra ``tianshou``).
        TypeError: When ``env`` is not a routing AEC env.
        ValueError: For the ``dispatched`` configuration.
    """
    _import_tianshou()
    from tianshou.env import PettingZooEnv

    if not isinstance(env, AECEnv):
        raise TypeError(
            f"tianshou_env needs a PettingZoo AEC env (routing_env.env(...)), got {type(env).__name__}"
        )
    if getattr(env.unwrapped, "router_config", None) == "dispatched":
        raise ValueError(
            "Tianshou's PettingZooEnv needs identical observation and action spaces for every agent; "
            "the dispatched configuration's dispatcher has its own, so use router='per_task' or 'single'"
        )
    return PettingZooEnv(InfoNoneAsSentinel(FlatObservation(env, representation=representation)))


@contextlib.contextmanager
def training_step_for_each_agent(algorithm: Any) -> Iterator[None]:
    """Mark every agent's policy as within a training step while Tianshou trains.

    Tianshou 2.0.1's trainer marks only the policy it is given as "within a training
    step" (``policy_within_training_step(algorithm.policy)``); for the multi-agent
    algorithms that is the ``MultiAgentPolicy``, whose per-agent policies keep
    ``is_within_training_step = False``. While collecting training data they then act
    as in evaluation: DQN explores with ``eps_inference`` (0 by default) instead of
    ``eps_training``, and actor policies built with ``deterministic_eval=True`` take
    their most probable action instead of sampling one. Wrap ``run_training`` in this
    context (without a test collector, whose episodes would then explore too)::

        with training_step_for_each_agent(algorithm):
            algorithm.run_training(params)

    Args:
        algorithm: A ``MultiAgentOnPolicyAlgorithm`` or ``MultiAgentOffPolicyAlgorithm``.

    Raises:
        TypeError: When ``algorithm.policy`` has no per-agent ``policies``.
    """
    policies = getattr(getattr(algorithm, "policy", None), "policies", None)
    if not isinstance(policies, dict):
        raise TypeError(
            f"expected a Tianshou multi-agent algorithm (policy.policies by agent id), got {type(algorithm).__name__}"
        )
    before = {agent: policy.is_within_training_step for agent, policy in policies.items()}
    try:
        for policy in policies.values():
            policy.is_within_training_step = True
        yield
    finally:
        for agent, policy in policies.items():
            policy.is_within_training_step = before[agent]


def masked_actor(net: torch.nn.Module) -> torch.nn.Module:
    """A Tianshou discrete actor that masks the logits of ``net`` with the env's action mask.

    Tianshou's DQN policy masks Q-values with ``obs.mask`` itself, but its actor
    policies (``DiscreteActorPolicy`` for REINFORCE, PPO, A2C) hand the whole
    observation batch to the actor and sample from whatever logits it returns. This
    actor computes ``net(obs.obs)`` and sets the logits of masked actions to -1e9, so
    that invalid blocks are never sampled nor chosen by ``deterministic_eval``.

    Args:
        net: A torch module mapping the flat features ``(B, F)`` to logits ``(B, A)``.

    Returns:
        The actor module (``forward(obs, state=None, info=None) -> (logits, state)``).
    """
    _import_tianshou()
    return _masked_actor_class()(net)


def evaluate_policy(policy: Policy, env: PettingZooEnv, *, num_samples: int | None = None) -> dict[str, Any]:
    """Route the test split greedily with a Tianshou policy; the env's evaluation.

    The policy acts as in Tianshou's own evaluation (``Collector`` without exploration
    noise, torch eval mode, outside a training step: greedy for DQN, the mode of the
    distribution for actor policies built with ``deterministic_eval=True``). The env
    is switched to eval mode (the test split from its start, no block training) and
    back to train mode afterwards.

    Args:
        policy: The (multi-agent) policy, e.g. ``MultiAgentOffPolicyAlgorithm(...).policy``.
        env: The adapter returned by :func:`tianshou_env`, the one training used.
        num_samples: Test samples to route (default: the whole test split).

    Returns:
        ``env.unwrapped.evaluation()``: ``{"accuracy", "accuracy_per_task", "samples"}``
        (``loss`` keys for regression datasets).

    Raises:
        ImportError: When Tianshou is not installed.
        ValueError: When ``num_samples`` is not a positive int.
    """
    _import_tianshou()
    from tianshou.data import Collector
    from tianshou.env import DummyVectorEnv

    routing = env.env.unwrapped
    test_size = len(routing.dataset.test)
    if num_samples is None:
        num_samples = test_size
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    # the collector resets an env as soon as its episode ends, also after the last test
    # sample, where the routing env refuses another eval reset: that one is skipped
    adapter = type(env)(_StopAtEndOfPass(env.env))
    collector: Any = Collector(policy, DummyVectorEnv([lambda: adapter]))
    collector.reset(gym_reset_kwargs={"options": {"mode": "eval"}})  # starts a pass over the test split
    # one episode routes samples_per_episode samples; round up to cover num_samples
    episodes = -(-min(num_samples, test_size) // routing.samples_per_episode)
    collector.collect(n_episode=episodes)  # later resets go on with the pass
    result = routing.evaluation()
    routing.set_mode("train")
    return result


class _StopAtEndOfPass(BaseWrapper[str, Any, int]):
    """Leaves the env as it is on a ``reset()`` once its evaluation pass is complete."""

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        if options is None and seed is None and self.env.unwrapped.eval_pass_complete:
            return
        self.env.reset(seed=seed, options=options)


@functools.cache
def _masked_actor_class() -> type[torch.nn.Module]:
    from tianshou.utils.net.common import AbstractDiscreteActor, ModuleWithVectorOutput

    class _MaskedActor(AbstractDiscreteActor):
        def __init__(self, net: torch.nn.Module) -> None:
            if not isinstance(net, torch.nn.Module):
                raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
            out = getattr(net, "output_dim", None) or getattr(net, "out_features", None)
            super().__init__(output_dim=int(out) if out else 0)
            self.net = net

        def get_preprocess_net(self) -> ModuleWithVectorOutput:
            return ModuleWithVectorOutput.from_module(torch.nn.Identity(), self.get_output_dim())

        def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[torch.Tensor, Any]:
            features = obs.obs if hasattr(obs, "obs") else obs
            param = next(self.net.parameters())
            logits_BA = self.net(
                torch.as_tensor(np.asarray(features), dtype=param.dtype, device=param.device)
            )
            if isinstance(logits_BA, tuple):  # Tianshou nets return (output, state)
                logits_BA = logits_BA[0]
            mask = getattr(obs, "mask", None)
            if mask is not None:
                allowed_BA = torch.as_tensor(np.asarray(mask, dtype=bool), device=logits_BA.device)
                logits_BA = logits_BA.masked_fill(~allowed_BA, _MASKED_LOGIT)
            return logits_BA, state

    return _MaskedActor
