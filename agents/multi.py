"""One learner per PettingZoo agent, and the AEC loop that trains or evaluates them.

:class:`MultiAgentRouter` maps each agent id of an environment (``router_0``, ...,
``dispatcher_0``) to a :class:`~agents.base.RouterAgent`. :func:`run_episode` drives
the standard AEC loop: on each turn an agent first collects the reward and info of
its previous action from ``env.last()``, and when that action ended a trace
(termination, truncation, or ``info["sample_done"]``) the buffered trace is handed
to the agent's :meth:`~agents.base.RouterAgent.learn`; then the agent acts on its
observation. One loop serves every configuration (per-task, single, dispatched),
because the env decides whose turn it is.

:func:`train` runs episodes until a number of samples have been routed;
:func:`evaluate` acts greedily (argmax of each policy) without learning.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pettingzoo import AECEnv

from agents.base import Observation, RouterAgent, Trace
from agents.dispatcher import Dispatcher
from agents.wpl import WPL

__all__ = [
    "AgentFactory",
    "MultiAgentRouter",
    "RunStats",
    "evaluate",
    "is_dispatcher",
    "run_episode",
    "train",
]

AgentFactory = Callable[..., RouterAgent]
"""Builds a learner from ``observation_space=``, ``action_space=`` and ``seed=``
keywords (and ``device=`` where it takes one), e.g. ``WPL`` or
``functools.partial(Reinforce, representation="table")``."""

DISPATCHER_PREFIX = "dispatcher"


def is_dispatcher(agent_id: str) -> bool:
    """True for the dispatching agent of the dispatched configuration (``dispatcher_0``)."""
    return agent_id.startswith(DISPATCHER_PREFIX)


def _takes_device(factory: AgentFactory) -> bool:
    """Whether ``factory`` names a ``device`` parameter that a caller may set by keyword.

    A ``functools.partial`` that binds ``device`` already counts as not taking it: its
    own choice stands. A factory whose signature cannot be read (some builtins) or that
    takes only ``**kwargs`` is not given one, since it may not pass it on to a learner
    that accepts it.
    """
    if isinstance(factory, functools.partial) and "device" in factory.keywords:
        return False
    try:
        parameter = inspect.signature(factory).parameters.get("device")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _renamed(old: str, old_value: Any, new: str, new_value: Any, default: Any) -> Any:
    """The value of a renamed keyword: ``new``'s, or ``old``'s where only that one is given."""
    if old_value is not None and new_value is not None:
        raise TypeError(f"pass {new}= only ({old}= is its former name), not both")
    if new_value is not None:
        return new_value
    return default if old_value is None else old_value


class MultiAgentRouter(Mapping[str, RouterAgent]):
    """The learners of every agent of an environment, by agent id.

    Args:
        learners: A learner for each agent id the environment can select.

    Raises:
        TypeError: When a learner is not a :class:`~agents.base.RouterAgent`.
        ValueError: When ``learners`` is empty.
    """

    def __init__(self, learners: Mapping[str, RouterAgent]) -> None:
        if not learners:
            raise ValueError("MultiAgentRouter needs at least one learner")
        for agent_id, learner in learners.items():
            if not isinstance(learner, RouterAgent):
                raise TypeError(
                    f"the learner of {agent_id!r} must be a RouterAgent, got {type(learner).__name__}"
                )
        self.learners: dict[str, RouterAgent] = dict(learners)

    @classmethod
    def from_env(
        cls,
        env: AECEnv,
        *,
        router_factory: AgentFactory | None = None,
        dispatcher_factory: AgentFactory | None = None,
        seed: int | None = None,
        device: str | torch.device | None = None,
        router: AgentFactory | None = None,
        dispatcher: AgentFactory | None = None,
    ) -> MultiAgentRouter:
        """One learner per agent of ``env.possible_agents``, built from the env's spaces.

        Per-task and single configurations get a ``router_factory`` learner for each
        ``router_*`` agent; the dispatched configuration additionally gets a
        ``dispatcher_factory`` learner for ``dispatcher_0``.

        Args:
            env: The (possibly wrapped) AEC environment, or a
                :class:`routing_env.BatchedRoutingEnv`.
            router_factory: Factory of the router learners (default :class:`~agents.WPL`).
            dispatcher_factory: Factory of the dispatcher learner (default
                :class:`~agents.Dispatcher`).
            seed: Root seed; each agent gets an independent generator spawned from
                it (None: fresh entropy).
            device: Torch device of the learners that have one (the MLP agents:
                :class:`~agents.Reinforce`, :class:`~agents.QLearning`,
                :class:`~agents.Dispatcher`), e.g. the env's network's device. It is
                passed as ``device=`` to a factory whose signature names a ``device``
                parameter (a ``functools.partial`` that binds ``device`` itself keeps its
                own), and to no other (``WPL``, or a factory taking only ``**kwargs``).
                None: the factories' own default.
            router: The former name of ``router_factory`` (``router`` also names the
                env's configuration and this mapping), kept for code that passes it.
            dispatcher: The former name of ``dispatcher_factory``, likewise.

        Raises:
            TypeError: When a factory is given under both names.
        """
        router = _renamed("router", router, "router_factory", router_factory, WPL)
        dispatcher = _renamed("dispatcher", dispatcher, "dispatcher_factory", dispatcher_factory, Dispatcher)
        agents = list(env.possible_agents)
        children = np.random.SeedSequence(seed).spawn(len(agents))

        def device_kwargs(factory: AgentFactory) -> dict[str, Any]:
            return {"device": device} if device is not None and _takes_device(factory) else {}

        router_kwargs, dispatcher_kwargs = device_kwargs(router), device_kwargs(dispatcher)
        learners: dict[str, RouterAgent] = {}
        for agent_id, child in zip(agents, children, strict=True):
            factory, kwargs = (
                (dispatcher, dispatcher_kwargs) if is_dispatcher(agent_id) else (router, router_kwargs)
            )
            learners[agent_id] = factory(
                observation_space=env.observation_space(agent_id),
                action_space=env.action_space(agent_id),
                seed=np.random.default_rng(child),
                **kwargs,
            )
        return cls(learners)

    def __getitem__(self, agent_id: str) -> RouterAgent:
        try:
            return self.learners[agent_id]
        except KeyError:
            raise KeyError(f"no learner for agent {agent_id!r}; known: {sorted(self.learners)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.learners)

    def __len__(self) -> int:
        return len(self.learners)

    def state_dict(self) -> dict[str, Any]:
        """Each learner's :meth:`~agents.base.RouterAgent.state_dict`, by agent id."""
        return {agent_id: learner.state_dict() for agent_id, learner in self.learners.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            ValueError: When the agent ids differ.
        """
        if set(state) != set(self.learners):
            raise ValueError(f"the state holds agents {sorted(state)}, expected {sorted(self.learners)}")
        for agent_id, learner in self.learners.items():
            learner.load_state_dict(state[agent_id])


@dataclass
class RunStats:
    """What happened while routing samples (filled by :func:`run_episode`).

    Attributes:
        num_samples: Samples whose route was completed (traces of router agents).
        num_correct: Of those, how many were predicted correctly (``info["correct"]``).
        num_judged: Samples whose info said whether they were correct (classification).
        final_reward_sum: Sum of the final rewards of the routed samples.
        traces_learned: Traces handed to ``learn`` (router and dispatcher agents).
        correct_per_task: ``task -> [correct, judged]`` when infos carry ``"task"``.
        episodes: Episodes run.
    """

    num_samples: int = 0
    num_correct: int = 0
    num_judged: int = 0
    final_reward_sum: float = 0.0
    traces_learned: int = 0
    correct_per_task: dict[int, list[int]] = field(default_factory=dict)
    episodes: int = 0

    @property
    def accuracy(self) -> float:
        """Fraction of judged samples predicted correctly (nan when none was judged)."""
        return self.num_correct / self.num_judged if self.num_judged else float("nan")

    @property
    def accuracy_per_task(self) -> dict[int, float]:
        return {t: c / n for t, (c, n) in sorted(self.correct_per_task.items()) if n}

    @property
    def mean_final_reward(self) -> float:
        return self.final_reward_sum / self.num_samples if self.num_samples else float("nan")

    def merge(self, other: RunStats) -> None:
        """Add ``other``'s counts to these."""
        self.num_samples += other.num_samples
        self.num_correct += other.num_correct
        self.num_judged += other.num_judged
        self.final_reward_sum += other.final_reward_sum
        self.traces_learned += other.traces_learned
        self.episodes += other.episodes
        for task, (c, n) in other.correct_per_task.items():
            counts = self.correct_per_task.setdefault(task, [0, 0])
            counts[0] += c
            counts[1] += n

    def _record_sample(self, trace: Trace) -> None:
        info = trace.infos[-1] if trace.infos else {}
        self.num_samples += 1
        self.final_reward_sum += trace.final_reward
        correct = info.get("correct")
        if correct is not None:
            self.num_judged += 1
            self.num_correct += int(bool(correct))
            task = info.get("task")
            if task is not None:
                counts = self.correct_per_task.setdefault(int(task), [0, 0])
                counts[0] += int(bool(correct))
                counts[1] += 1


class _TraceBuffer:
    """The decisions of one agent's trace in progress."""

    def __init__(self) -> None:
        self.observations: list[Observation] = []
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.infos: list[Mapping[str, Any]] = []

    @property
    def awaiting_outcome(self) -> bool:
        return len(self.rewards) < len(self.actions)

    def trace(self, *, truncated: bool) -> Trace:
        return Trace.from_env_rewards(
            self.observations, self.actions, self.rewards, self.infos, truncated=truncated
        )


def _copy_obs(obs: Observation) -> dict[str, Any]:
    # the env may reuse its arrays; a trace must keep what the agent saw
    return {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in obs.items()}


def learn_flag(learn: bool, train: bool | None) -> bool:
    """``learn``, or the deprecated keyword ``train`` where a caller still passes it."""
    if train is None:
        return learn
    warnings.warn(
        "the keyword train= of run_episode / run_batch_episode is now learn=",
        DeprecationWarning,
        stacklevel=3,
    )
    return bool(train)


def run_episode(
    env: AECEnv,
    router: Mapping[str, RouterAgent],
    *,
    learn: bool = True,
    greedy: bool = False,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
    train: bool | None = None,
) -> RunStats:
    """Run one episode of the AEC loop, acting with (and optionally training) ``router``.

    Args:
        env: The AEC environment (wrapped or not).
        router: The learner of every agent id the env selects.
        learn: Call ``learn`` on every finished trace.
        greedy: Act greedily (``greedy_action``) instead of sampling.
        seed: Passed to ``env.reset``; on the routing env a seed starts a new run.
        options: Passed to ``env.reset`` (e.g. ``{"mode": "eval"}``).
        train: The former name of ``learn`` (it clashed with :func:`train`), kept for
            code that passes it; it warns ``DeprecationWarning``.

    Returns:
        The episode's :class:`RunStats`.
    """
    learn = learn_flag(learn, train)
    env.reset(seed=seed, options=dict(options) if options is not None else None)
    stats = RunStats(episodes=1)
    buffers: dict[str, _TraceBuffer] = {}

    def finish(agent_id: str, truncated: bool) -> None:
        buffer = buffers.pop(agent_id)
        trace = buffer.trace(truncated=truncated)
        if not is_dispatcher(agent_id):
            stats._record_sample(trace)
        if learn:
            router[agent_id].learn(trace)
            stats.traces_learned += 1

    for agent_id in env.agent_iter():
        obs, reward, terminated, truncated, info = env.last()
        buffer = buffers.get(agent_id)
        if buffer is not None and buffer.awaiting_outcome:
            buffer.rewards.append(float(reward))
            buffer.infos.append(dict(info))
            if terminated or truncated or info.get("sample_done"):
                finish(agent_id, truncated=bool(truncated) and not info.get("sample_done"))
                buffer = None
        if terminated or truncated:
            env.step(None)
            continue
        if buffer is not None and buffer.actions and int(obs["depth"]) == 0:
            # a new sample began although no info said the last one was done
            finish(agent_id, truncated=False)
            buffer = None
        action = router[agent_id].act(obs, greedy=greedy)
        buffer = buffers.setdefault(agent_id, _TraceBuffer())
        buffer.observations.append(_copy_obs(obs))
        buffer.actions.append(action)
        env.step(action)
    # traces the env never closed (no termination reached them) are dropped: their outcome is unknown
    return stats


def train(
    env: AECEnv,
    router: Mapping[str, RouterAgent],
    *,
    num_samples: int,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
    callback: Callable[[RunStats, RunStats], None] | None = None,
) -> RunStats:
    """Train ``router`` until at least ``num_samples`` samples have been routed.

    Args:
        env: The AEC environment.
        router: The learners, by agent id.
        num_samples: Samples to route (> 0).
        seed: Seed of the first ``reset`` (on the routing env: start a new run);
            later episodes continue the run.
        options: Options of the first ``reset``; None switches the routing env to
            training with ``{"mode": "train"}`` (ignored by envs without modes).
        callback: Called after each episode with the episode's and the running stats.

    Returns:
        The accumulated :class:`RunStats` (training accuracy of the sampled routes).

    Raises:
        ValueError: When ``num_samples`` is not a positive int.
    """
    return _train_loop(
        run_episode, env, router, num_samples=num_samples, seed=seed, options=options, callback=callback
    )


def _train_loop(
    run_one: Callable[..., RunStats],
    env: Any,
    router: Mapping[str, RouterAgent],
    *,
    num_samples: int,
    seed: int | None,
    options: Mapping[str, Any] | None,
    callback: Callable[[RunStats, RunStats], None] | None,
) -> RunStats:
    """The loop of :func:`train` and :func:`agents.batched.train_batched`, which differ in
    ``run_one`` (:func:`run_episode` or :func:`agents.batched.run_batch_episode`)."""
    _check_num_samples(num_samples)
    total = RunStats()
    first_options: Mapping[str, Any] | None = {"mode": "train"} if options is None else options
    first = True
    while total.num_samples < num_samples:
        episode = run_one(
            env, router, learn=True, seed=seed if first else None, options=first_options if first else None
        )
        first = False
        total.merge(episode)
        if callback is not None:
            callback(episode, total)
        if episode.num_samples == 0 and episode.traces_learned == 0:
            raise RuntimeError("an episode routed no sample; is the environment terminating immediately?")
    return total


def evaluate(
    env: AECEnv,
    router: Mapping[str, RouterAgent],
    *,
    num_samples: int,
    greedy: bool = True,
    options: Mapping[str, Any] | None = None,
) -> RunStats:
    """Route ``num_samples`` samples without learning, greedily by default.

    On the routing env the first reset passes ``{"mode": "eval"}``, which routes the
    test split in order without training the blocks; call :func:`train` (or reset
    with ``{"mode": "train"}``) to continue training afterwards.

    Args:
        env: The AEC environment.
        router: The learners, by agent id.
        num_samples: Samples to route (> 0); use the test split's size for a full pass.
        greedy: Take each agent's greedy action (argmax policy); False samples.
        options: Options of the first ``reset``; None means ``{"mode": "eval"}``.

    Returns:
        The :class:`RunStats` of the evaluated samples (``accuracy``, per task).
    """
    _check_num_samples(num_samples)
    total = RunStats()
    first_options: Mapping[str, Any] = {"mode": "eval"} if options is None else options
    first = True
    while total.num_samples < num_samples:
        episode = run_episode(
            env, router, learn=False, greedy=greedy, options=first_options if first else None
        )
        first = False
        total.merge(episode)
        if episode.num_samples == 0:
            raise RuntimeError("an episode routed no sample; is the environment terminating immediately?")
    return total


def _check_num_samples(num_samples: int) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
