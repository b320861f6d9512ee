"""The routing env for RLlib's multi-agent API (extra ``rllib``).

RLlib reaches AEC envs through ``ray.rllib.env.wrappers.pettingzoo_env.PettingZooEnv``
(a ``MultiAgentEnv``); policies are RLModules mapped per agent id. What it needs of the
env, and how :func:`rllib_env` provides it:

- every agent id and its spaces known when the adapter is built: RLlib's adapter reads
  them from ``env.agents`` after one ``reset()``. The routing env lists every agent from
  reset on, so RLlib's own adapter now sees them all (before, a router joined when it
  first acted); :class:`RoutingPettingZooEnv` reads them from ``env.possible_agents``,
  which does not depend on that, and is otherwise RLlib's adapter unchanged.
- a mask for action masking: RLlib's ``ActionMaskingTorchRLModule`` (PPO) reads a dict
  observation ``{"observations": Box, "action_mask": Box}``;
  :class:`~routing_env.integrations.FlatObservation` provides it (one-hot depth and
  task, after the representation v unless ``representation=False``; a float mask).

Seeding: RLlib's env runners pass ``config.debugging(seed=...)`` to the first reset
only and reset later episodes without a seed, so the run continues as the routing env
expects.

Evaluation: RLlib evaluates on env runners of their own, whose envs would hold other,
untrained networks (the network lives in the env). :func:`evaluate_modules` routes the
test split greedily through the training env instead, with the trained modules'
``forward_inference``; run it after training (the env runner's episode in progress is
abandoned), or build a new algorithm to continue.

Importing this module raises an :class:`ImportError` naming the extra when Ray/RLlib
is not installed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pettingzoo import AECEnv

from routing_env.integrations.wrappers import FlatObservation, missing_extra

try:
    import gymnasium
    import torch
    from ray.rllib.env.wrappers.pettingzoo_env import PettingZooEnv
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise missing_extra(
        feature="routing_env.integrations.rllib", extra="rllib", package="ray[rllib]"
    ) from err

__all__ = [
    "OBSERVATIONS_KEY",
    "RoutingPettingZooEnv",
    "evaluate_modules",
    "rllib_env",
    "routing_env_of",
]

OBSERVATIONS_KEY = "observations"
"""The key of the flat observation that RLlib's ``ActionMaskingTorchRLModule`` reads."""


class RoutingPettingZooEnv(PettingZooEnv):
    """RLlib's ``PettingZooEnv`` with every agent of ``env.possible_agents`` known from the start.

    Args:
        env: An AEC env (see :func:`rllib_env`).
    """

    def __init__(self, env: AECEnv) -> None:
        super().__init__(env)
        # RLlib took the ids from env.agents after one reset; use every agent that can act,
        # whatever an env lists at reset
        self._agent_ids = set(env.possible_agents)
        self.agents = list(env.possible_agents)
        self.possible_agents = list(env.possible_agents)
        observation_spaces: dict[Any, gymnasium.Space] = {
            a: env.observation_space(a) for a in env.possible_agents
        }
        action_spaces: dict[Any, gymnasium.Space] = {a: env.action_space(a) for a in env.possible_agents}
        self.observation_spaces = observation_spaces
        self.action_spaces = action_spaces
        self.observation_space = gymnasium.spaces.Dict(observation_spaces)
        self.action_space = gymnasium.spaces.Dict(action_spaces)


def rllib_env(env: AECEnv, *, representation: bool = False) -> RoutingPettingZooEnv:
    """A routing env as an RLlib ``MultiAgentEnv`` with masked dict observations.

    Args:
        env: A routing env, ``routing_env.env(...)`` (any configuration; RLlib allows
            each agent its own spaces).
        representation: Also give policies the representation v; False gives them
            depth and task only (the state of the paper's tabular routers).

    Raises:
        TypeError: When ``env`` is not a routing AEC env.
    """
    if not isinstance(env, AECEnv):
        raise TypeError(
            f"rllib_env needs a PettingZoo AEC env (routing_env.env(...)), got {type(env).__name__}"
        )
    return RoutingPettingZooEnv(
        FlatObservation(
            env, observation_key=OBSERVATIONS_KEY, representation=representation, mask_dtype=np.float32
        )
    )


def routing_env_of(algorithm: Any) -> RoutingPettingZooEnv:
    """The adapter that the local env runner of an RLlib ``Algorithm`` steps.

    Requires ``num_env_runners=0`` and one env per runner (the network lives in the env,
    so one env instance is one run).

    Raises:
        ValueError: When the algorithm has no local env runner with exactly one env.
    """
    runner = getattr(algorithm, "env_runner", None)
    vector = getattr(runner, "env", None)
    envs = getattr(vector, "envs", None)
    if not envs or len(envs) != 1:
        raise ValueError(
            "expected an algorithm built with env_runners(num_env_runners=0, num_envs_per_env_runner=1), "
            "whose local env runner steps a single routing env"
        )
    adapter = envs[0].unwrapped
    if not isinstance(adapter, RoutingPettingZooEnv):
        raise ValueError(f"the env runner's env is a {type(adapter).__name__}, not a RoutingPettingZooEnv")
    return adapter


def evaluate_modules(
    env: RoutingPettingZooEnv,
    module_of: Callable[[str], Any] | Mapping[str, Any],
    *,
    num_samples: int | None = None,
) -> dict[str, Any]:
    """Route the test split greedily (argmax of the masked logits) with RLlib modules.

    Args:
        env: The adapter the modules were trained on (:func:`routing_env_of`).
        module_of: The RLModule of each agent id: a mapping, or a function such as
            ``lambda agent: algo.get_module(agent)`` (with a policy mapping other than
            the identity, map the agent id first).
        num_samples: Test samples to route (default: the whole test split).

    Returns:
        ``env.unwrapped.evaluation()`` (``{"accuracy", "accuracy_per_task", "samples",
        "complete"}``).

    Raises:
        ValueError: When ``num_samples`` is not a positive int.
    """
    from ray.rllib.core.columns import Columns

    aec = env.env
    routing = aec.unwrapped
    get = module_of.__getitem__ if isinstance(module_of, Mapping) else module_of
    if num_samples is None:
        num_samples = len(routing.dataset.test)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    routed = 0
    with torch.no_grad():
        # the first reset starts a pass over the test split; the next ones go on with it
        # (an eval-mode reset past its end raises instead of wrapping around)
        options: dict[str, Any] | None = {"mode": "eval"}
        while routed < num_samples and not (options is None and routing.eval_pass_complete):
            aec.reset(options=options)
            options = None
            for agent in aec.agent_iter():
                obs, _, terminated, truncated, _ = aec.last()
                if terminated or truncated:
                    aec.step(None)
                    continue
                batch = {
                    Columns.OBS: {key: torch.as_tensor(value)[None] for key, value in obs.items()},
                }
                logits = get(agent).forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
                aec.step(int(torch.argmax(logits[0])))
            routed += routing.samples_per_episode
    result = routing.evaluation()
    routing.set_mode("train")
    return result
