"""The routing game at a checkpoint: values, best responses and distance to equilibrium.

With the function blocks frozen (the network in eval mode, nothing trained), routing is
a game whose payoffs can be measured. Each router agent's *value* is its expected final
reward (+1 correct, -1 wrong; ``-loss`` for regression) per sample it routes, under
its current policy, on held-out samples. Its *best response* is the best it could do
by switching to a pure routing path per task (one block per depth, the same for every
sample of the task), the others' policies fixed. The *best-response gain* is the
difference, and their sum over agents is a NashConv-style distance to equilibrium:
0 exactly when no agent can gain by such a deviation.

The scope (which agents interact under each router configuration), the estimator
(exact expectations over every pure path on held-out samples) and its bias correction
are described in ``docs/game_analysis.md``.

Shape legend: ``N`` samples of a task, ``P`` paths, ``n`` depths, ``A`` actions,
``K`` routers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from routing_env.datasets.base import MultiTaskDataset
from routing_env.network import RoutingNetwork
from routing_env.policy import ActionProbabilities, router_observation
from routing_env.rewards import final_rewards

__all__ = [
    "AgentAnalysis",
    "GameAnalysis",
    "RouteDistribution",
    "TaskGame",
    "analyze_game",
    "analyze_task_games",
    "expand_task_game",
]

Split = Literal["train", "test"]


# ============================================================== data
@dataclass(frozen=True)
class RouteDistribution:
    """How one agent's policy routes the samples of one task, summarized per sample.

    Attributes:
        value_N: Expected final reward of each sample under the policy (exact over routes).
        entropy_N: Entropy (nats) of the policy's distribution over whole routes.
        max_prob_N: Probability of the policy's most likely route.
        top_route_value_N: Final reward along that most likely route (first on ties).
    """

    value_N: np.ndarray
    entropy_N: np.ndarray
    max_prob_N: np.ndarray
    top_route_value_N: np.ndarray

    @classmethod
    def from_probs(cls, probs_NP: np.ndarray, rewards_NP: np.ndarray) -> RouteDistribution:
        """Summarize explicit path probabilities (rows sum to 1; ``1 x P`` broadcasts).

        Raises:
            ValueError: When the shapes do not match or a row does not sum to 1.
        """
        rewards = np.asarray(rewards_NP, dtype=np.float64)
        probs = np.broadcast_to(np.asarray(probs_NP, dtype=np.float64), rewards.shape)
        if probs.shape != rewards.shape:
            raise ValueError(f"probs {np.shape(probs_NP)} do not broadcast to rewards {rewards.shape}")
        if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError("each row of path probabilities must sum to 1")
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(probs > 0, probs * np.log(probs), 0.0)
        top = probs.argmax(axis=1)
        rows = np.arange(len(rewards))
        return cls(
            value_N=(probs * rewards).sum(axis=1),
            entropy_N=-plogp.sum(axis=1),
            max_prob_N=probs[rows, top],
            top_route_value_N=rewards[rows, top],
        )


@dataclass(frozen=True)
class TaskGame:
    """One task's game: payoffs of every pure path and how the agents route its samples.

    Attributes:
        task: The task id.
        paths_Pn: The actions of each pure path (``int64``, one row per path).
        rewards_NP: Final reward of each held-out sample along each path.
        routes: Each router agent's :class:`RouteDistribution` on these samples.
        weights: For each router agent, the probability that it routes each sample
            (``N``; 1 for the responsible agent without a dispatcher). Agents absent
            from it never route this task.
        sample_indices_N: Indices of the samples in their split (for reference).
    """

    task: int
    paths_Pn: np.ndarray
    rewards_NP: np.ndarray
    routes: Mapping[str, RouteDistribution]
    weights: Mapping[str, np.ndarray]
    sample_indices_N: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        n_samples, n_paths = self.rewards_NP.shape
        if self.paths_Pn.shape[0] != n_paths:
            raise ValueError(f"{self.paths_Pn.shape[0]} paths but rewards for {n_paths}")
        for agent, w in self.weights.items():
            if np.shape(w) != (n_samples,):
                raise ValueError(f"weights of {agent!r} have shape {np.shape(w)}, expected ({n_samples},)")
            if agent not in self.routes:
                raise ValueError(f"{agent!r} has weights but no route distribution for task {self.task}")
        for agent, dist in self.routes.items():
            if dist.value_N.shape != (n_samples,):
                raise ValueError(f"route distribution of {agent!r} covers {dist.value_N.shape} samples")

    @property
    def num_samples(self) -> int:
        return int(self.rewards_NP.shape[0])


@dataclass(frozen=True)
class AgentAnalysis:
    """One agent's standing in the game (see the module docstring).

    Attributes:
        agent: The agent id.
        weight: Expected number of held-out samples it routes (or dispatches).
        value, value_se: Expected final reward per sample under its current policy.
        best_response_value, best_response_se: Its value when it switches to the best
            task-conditional pure strategy, the others fixed.
        gain, gain_se: ``best_response_value - value`` (plug-in, biased upwards).
        gain_heldout: The cross-fitted gain (best strategy picked on the other half).
        entropy: Mean entropy (nats) of its distribution over routes (routers) or
            routers (dispatcher).
        max_prob: Mean probability of its most likely route (or router).
        pure: ``max_prob >= 1 - eps``: it has converged to a pure strategy.
        top_route_value: Value of always taking its most likely route.
        best: The best pure strategy per task: a path (routers) or a router index
            (dispatcher).
    """

    agent: str
    weight: float
    value: float
    value_se: float
    best_response_value: float
    best_response_se: float
    gain: float
    gain_se: float
    gain_heldout: float
    entropy: float
    max_prob: float
    pure: bool
    top_route_value: float
    best: Mapping[int, Any]


@dataclass(frozen=True)
class GameAnalysis:
    """The game at a checkpoint: every agent's :class:`AgentAnalysis` and the totals.

    Attributes:
        agents: Per agent, in the env's order (agents that route nothing are left out).
        value: Expected final reward per held-out sample under the current policies
            (``2 * accuracy - 1`` for classification).
        value_se: Its standard error.
        num_samples: Held-out samples used.
        num_paths: Pure paths per task (the largest, if they differ).
        eps: The purity threshold used.
    """

    agents: tuple[AgentAnalysis, ...]
    value: float
    value_se: float
    num_samples: int
    num_paths: int
    eps: float

    @property
    def nash_conv(self) -> float:
        """Sum of the agents' best-response gains (0 at an equilibrium)."""
        return float(sum(a.gain for a in self.agents))

    @property
    def nash_conv_se(self) -> float:
        """Standard error of :attr:`nash_conv`, treating the agents' gains as independent
        (exact for per-task agents, whose samples are disjoint)."""
        return float(math.sqrt(sum(a.gain_se**2 for a in self.agents)))

    @property
    def nash_conv_heldout(self) -> float:
        """Sum of the cross-fitted gains."""
        return float(sum(a.gain_heldout for a in self.agents))

    @property
    def num_pure(self) -> int:
        """Agents whose policy is pure (max route probability >= 1 - eps)."""
        return sum(a.pure for a in self.agents)

    @property
    def mean_entropy(self) -> float:
        return float(np.mean([a.entropy for a in self.agents])) if self.agents else float("nan")

    def agent(self, agent_id: str) -> AgentAnalysis:
        for a in self.agents:
            if a.agent == agent_id:
                return a
        raise KeyError(f"no analysis for {agent_id!r}; agents: {[a.agent for a in self.agents]}")

    def summary(self) -> dict[str, float | int]:
        """The totals as one flat row (for a CSV over training)."""
        return {
            "value": self.value,
            "value_se": self.value_se,
            "nash_conv": self.nash_conv,
            "nash_conv_se": self.nash_conv_se,
            "nash_conv_heldout": self.nash_conv_heldout,
            "num_pure": self.num_pure,
            "num_agents": len(self.agents),
            "mean_entropy": self.mean_entropy,
            "num_samples": self.num_samples,
            "num_paths": self.num_paths,
        }

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per agent (the best strategies as ``task:path`` text)."""
        out = []
        for a in self.agents:
            best = " ".join(
                f"{t}:{'-'.join(map(str, b)) if isinstance(b, tuple) else b}"
                for t, b in sorted(a.best.items())
            )
            out.append(
                {
                    "agent": a.agent,
                    "weight": a.weight,
                    "value": a.value,
                    "value_se": a.value_se,
                    "best_response_value": a.best_response_value,
                    "best_response_se": a.best_response_se,
                    "gain": a.gain,
                    "gain_se": a.gain_se,
                    "gain_heldout": a.gain_heldout,
                    "entropy": a.entropy,
                    "max_prob": a.max_prob,
                    "pure": int(a.pure),
                    "top_route_value": a.top_route_value,
                    "best": best,
                }
            )
        return out


# ============================================================== the network side
def _observation(v_D: torch.Tensor, width: int, task: int, depth: int, mask_A: np.ndarray) -> dict[str, Any]:
    """The observation the env would show for representation ``v`` (the env's own builder)."""
    return router_observation(v_D.numpy(), width=width, task=task, depth=depth, action_mask_A=mask_A)


def _rewards(pred_NK: torch.Tensor, targets_N: torch.Tensor, num_classes: int) -> np.ndarray:
    """The env's final reward of each prediction (:func:`~routing_env.rewards.final_rewards`):
    +1/-1 (classification, over the task's ``num_classes``) or -squared error (``num_classes`` 0)."""
    if num_classes == 0:
        return final_rewards(loss_N=((pred_NK[:, 0].double() - targets_N.double()) ** 2).numpy())
    return final_rewards(correct_N=(pred_NK[:, :num_classes].argmax(dim=1) == targets_N).numpy())


class _Accumulator:
    """Running per-sample summaries of one policy's route distribution, leaf by leaf."""

    def __init__(self, n: int) -> None:
        self.value = np.zeros(n)
        self.entropy = np.zeros(n)
        self.max_prob = np.full(n, -1.0)
        self.top_value = np.zeros(n)

    def add(self, prob: np.ndarray, reward: np.ndarray) -> None:
        prob = np.broadcast_to(prob, reward.shape)
        self.value += prob * reward
        with np.errstate(divide="ignore", invalid="ignore"):
            self.entropy -= np.where(prob > 0, prob * np.log(prob), 0.0)
        better = prob > self.max_prob
        self.max_prob = np.where(better, prob, self.max_prob)
        self.top_value = np.where(better, reward, self.top_value)

    def result(self) -> RouteDistribution:
        return RouteDistribution(
            value_N=self.value,
            entropy_N=self.entropy,
            max_prob_N=self.max_prob,
            top_route_value_N=self.top_value,
        )


def expand_task_game(
    network: RoutingNetwork,
    dataset: MultiTaskDataset,
    *,
    task: int,
    policies: Mapping[str, ActionProbabilities] | None = None,
    weights: Mapping[str, np.ndarray] | None = None,
    split: Split = "test",
    indices: np.ndarray | None = None,
    per_sample: bool = False,
) -> TaskGame:
    """Route held-out samples of ``task`` along every pure path of the frozen network.

    The route tree is expanded depth by depth on the whole batch (one block call per
    tree node, in eval mode, without gradients); at each node every policy in
    ``policies`` is asked for ``action_probs`` on the observation the env would show.
    The network's train/eval mode is restored afterwards and no random number is drawn.

    Args:
        network: The routing network (its current weights are the frozen blocks).
        dataset: The data; the samples of ``task`` in ``split`` are used.
        task: The task id.
        policies: Router policies whose route distributions on this task are wanted.
        weights: For each agent of ``policies`` that routes this task, the probability
            that it routes each sample (default: 1 for every agent of ``policies``).
        split: ``"test"`` (held out, default) or ``"train"``.
        indices: Indices into the split of the samples to use (all of the task's
            samples must belong to ``task``); default: every sample of the task.
        per_sample: False asks each policy once per tree node, with the observation of
            the node's first sample: right for policies that read only the task and
            depth (tabular agents, e.g. WPL; the paper's MARL:WPL uses ``t, d``).
            True asks it for every sample (policies that read ``v``; costs one
            ``action_probs`` call per sample and tree node).

    Raises:
        ValueError: On an unknown task or split, or indices of another task.
    """
    if not 0 <= task < dataset.num_tasks:
        raise ValueError(f"task must be in [0, {dataset.num_tasks}), got {task}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data = dataset.test if split == "test" else dataset.train
    tasks_N = data.tasks_N.numpy()
    if indices is None:
        indices = np.flatnonzero(tasks_N == task)
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        raise ValueError(f"task {task} has no samples to evaluate")
    if np.any(tasks_N[indices] != task):
        raise ValueError(f"indices include samples of tasks other than {task}")
    policies = dict(policies or {})
    weights = {a: np.asarray(w, dtype=np.float64) for a, w in (weights or {}).items()}
    if not weights:
        weights = {a: np.ones(len(indices)) for a in policies}
    idx_t = torch.from_numpy(indices)
    targets = data.targets_N[idx_t]
    num_classes = 0 if dataset.is_regression else dataset.num_classes[task]
    width = network.observation_width
    n_depths = network.num_decisions
    accumulators = {a: _Accumulator(len(indices)) for a in policies}
    paths: list[tuple[int, ...]] = []
    rewards: list[np.ndarray] = []
    device = next(iter(network.parameters()), torch.zeros(0)).device

    def node_probs(v: torch.Tensor, depth: int, mask: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        v_cpu = v.detach().cpu()
        for agent, policy in policies.items():
            if per_sample:
                rows = [
                    policy.action_probs(_observation(v_cpu[i], width, task, depth, mask))
                    for i in range(len(v))
                ]
                out[agent] = np.asarray(rows, dtype=np.float64)
            else:
                p = policy.action_probs(_observation(v_cpu[0], width, task, depth, mask))
                out[agent] = np.asarray(p, dtype=np.float64)[None, :]
        return out

    def expand(v: torch.Tensor, depth: int, prefix: tuple[int, ...], reach: dict[str, np.ndarray]) -> None:
        mask = network.action_mask(depth, tuple(v.shape[1:]))
        probs = node_probs(v, depth, mask)
        for action in np.flatnonzero(mask).tolist():
            out = network.apply_action(depth, action, v)
            child = {a: reach[a] * probs[a][:, action] for a in policies}
            path = (*prefix, action)
            if depth + 1 == n_depths:
                reward = _rewards(out.cpu(), targets, num_classes)
                paths.append(path)
                rewards.append(reward)
                for a, acc in accumulators.items():
                    acc.add(child[a], reward)
            else:
                expand(out, depth + 1, path, child)

    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            x = dataset.normalize(data.inputs_NCHW[idx_t]).to(device)
            v0 = network.trunk(x)
            expand(v0, 0, (), {a: np.ones(1) for a in policies})
    finally:
        network.train(was_training)
    return TaskGame(
        task=task,
        paths_Pn=np.asarray(paths, dtype=np.int64).reshape(len(paths), n_depths),
        rewards_NP=np.stack(rewards, axis=1),
        routes={a: acc.result() for a, acc in accumulators.items()},
        weights=weights,
        sample_indices_N=indices,
    )


# ============================================================== the game side
def _weighted_mean_se(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted mean and its standard error (ratio-estimator linearization; with unit
    weights this is ``sd / sqrt(N)`` with the ``N - 1`` correction)."""
    total = weights.sum()
    if total <= 0:
        return float("nan"), float("nan")
    mean = float((weights * values).sum() / total)
    n = int((weights > 0).sum())
    if n < 2:
        return mean, float("nan")
    var = (weights**2 * (values - mean) ** 2).sum() * n / (n - 1)
    return mean, float(math.sqrt(var) / total)


def _folds(n: int) -> list[np.ndarray]:
    even = np.zeros(n, dtype=bool)
    even[::2] = True
    return [even, ~even]


def _router_analysis(agent: str, games: Sequence[TaskGame], eps: float) -> AgentAnalysis | None:
    values, brs, diffs, heldout, weights = [], [], [], [], []
    entropy, max_prob, top = [], [], []
    best: dict[int, Any] = {}
    for game in games:
        w = game.weights.get(agent)
        if w is None or w.sum() <= 0:
            continue
        dist = game.routes[agent]
        R = game.rewards_NP
        p_star = int(np.argmax(w @ R))  # best pure path of this task, for these weights
        best[game.task] = tuple(int(a) for a in game.paths_Pn[p_star])
        values.append(dist.value_N)
        brs.append(R[:, p_star])
        diffs.append(R[:, p_star] - dist.value_N)
        cross = np.empty(len(w))
        folds = _folds(len(w))
        for fold, other in (folds, folds[::-1]):
            pick = int(np.argmax(w[other] @ R[other])) if other.any() else p_star
            cross[fold] = R[fold, pick] - dist.value_N[fold]
        heldout.append(cross)
        weights.append(w)
        entropy.append(dist.entropy_N)
        max_prob.append(dist.max_prob_N)
        top.append(dist.top_route_value_N)
    if not weights:
        return None
    per_sample = (values, brs, diffs, heldout, entropy, max_prob, top)
    return _summary(agent, np.concatenate(weights), *per_sample, best=best, eps=eps)


def _dispatcher_analysis(
    agent: str, games: Sequence[TaskGame], routers: Sequence[str], eps: float
) -> AgentAnalysis:
    values, brs, diffs, heldout, entropy, max_prob, top = [], [], [], [], [], [], []
    best: dict[int, Any] = {}
    for game in games:
        n = game.num_samples
        # v_NK: each router's expected reward on each sample; w_NK: dispatch probabilities
        v_NK = np.stack(
            [game.routes[r].value_N if r in game.routes else np.zeros(n) for r in routers], axis=1
        )
        w_NK = np.stack([game.weights.get(r, np.zeros(n)) for r in routers], axis=1)
        current = (w_NK * v_NK).sum(axis=1)
        k_star = int(np.argmax(v_NK.sum(axis=0)))
        best[game.task] = k_star
        values.append(current)
        brs.append(v_NK[:, k_star])
        diffs.append(v_NK[:, k_star] - current)
        cross = np.empty(n)
        folds = _folds(n)
        for fold, other in (folds, folds[::-1]):
            pick = int(np.argmax(v_NK[other].sum(axis=0))) if other.any() else k_star
            cross[fold] = v_NK[fold, pick] - current[fold]
        heldout.append(cross)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy.append(-np.where(w_NK > 0, w_NK * np.log(w_NK), 0.0).sum(axis=1))
        max_prob.append(w_NK.max(axis=1))
        top.append(v_NK[np.arange(n), w_NK.argmax(axis=1)])
    ones = np.ones(sum(len(v) for v in values))  # every sample counts once
    per_sample = (values, brs, diffs, heldout, entropy, max_prob, top)
    return _summary(agent, ones, *per_sample, best=best, eps=eps)


def _summary(
    agent: str,
    w: np.ndarray,
    values: list[np.ndarray],
    brs: list[np.ndarray],
    diffs: list[np.ndarray],
    heldout: list[np.ndarray],
    entropy: list[np.ndarray],
    max_prob: list[np.ndarray],
    top: list[np.ndarray],
    *,
    best: dict[int, Any],
    eps: float,
) -> AgentAnalysis:
    """An agent's :class:`AgentAnalysis`: the ``w``-weighted means of its per-sample numbers
    (each a list of per-task arrays, in the order of ``w``)."""
    value, value_se = _weighted_mean_se(np.concatenate(values), w)
    br, br_se = _weighted_mean_se(np.concatenate(brs), w)
    gain, gain_se = _weighted_mean_se(np.concatenate(diffs), w)
    total = w.sum()

    def mean(parts: list[np.ndarray]) -> float:
        return float((w * np.concatenate(parts)).sum() / total)

    mp = mean(max_prob)
    return AgentAnalysis(
        agent=agent,
        weight=float(total),
        value=value,
        value_se=value_se,
        best_response_value=br,
        best_response_se=br_se,
        gain=gain,
        gain_se=gain_se,
        gain_heldout=mean(heldout),
        entropy=mean(entropy),
        max_prob=mp,
        pure=mp >= 1.0 - eps,
        top_route_value=mean(top),
        best=best,
    )


def analyze_task_games(
    games: Sequence[TaskGame],
    *,
    agents: Sequence[str] | None = None,
    dispatcher: str | None = None,
    eps: float = 0.01,
) -> GameAnalysis:
    """Values, best responses, gains and purity of every agent from the tasks' games.

    Pure numpy on the payoff tables: usable on synthetic games (tests) as well as on
    those :func:`expand_task_game` measures.

    Args:
        games: One :class:`TaskGame` per task.
        agents: The router agents, in order (default: every agent with weights, sorted).
        dispatcher: The dispatcher's id, when the routers' weights are its dispatch
            probabilities (they must sum to 1 over the routers for each sample).
        eps: Purity threshold: an agent is pure when its most likely route (router)
            has probability >= ``1 - eps`` on average over the samples it handles.

    Raises:
        ValueError: On an empty list of games or ``eps`` outside ``[0, 1)``.
    """
    if not games:
        raise ValueError("analyze_task_games needs at least one task game")
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    if agents is None:
        agents = sorted({a for g in games for a in g.weights})
    analyses = [a for a in (_router_analysis(agent, games, eps) for agent in agents) if a is not None]
    if dispatcher is not None:
        for game in games:
            total = sum((game.weights.get(r, 0.0) for r in agents), np.zeros(game.num_samples))
            if not np.allclose(total, 1.0, atol=1e-6):
                raise ValueError(
                    f"dispatch probabilities of task {game.task} do not sum to 1 over the routers"
                )
        analyses.insert(0, _dispatcher_analysis(dispatcher, games, agents, eps))
    # the overall value: each sample's expected reward under the current profile
    per_sample = []
    for game in games:
        v = np.zeros(game.num_samples)
        for agent, w in game.weights.items():
            v += w * game.routes[agent].value_N
        per_sample.append(v)
    all_values = np.concatenate(per_sample)
    value, value_se = _weighted_mean_se(all_values, np.ones(len(all_values)))
    return GameAnalysis(
        agents=tuple(analyses),
        value=value,
        value_se=value_se,
        num_samples=len(all_values),
        num_paths=max(g.paths_Pn.shape[0] for g in games),
        eps=float(eps),
    )


# ============================================================== the env side
def _pick_indices(
    tasks_N: np.ndarray, task: int, max_samples: int | None, rng: np.random.Generator
) -> np.ndarray:
    idx = np.flatnonzero(tasks_N == task)
    if max_samples is not None and len(idx) > max_samples:
        idx = np.sort(rng.choice(idx, size=max_samples, replace=False))
    return idx


def analyze_game(
    env: Any,
    policies: Mapping[str, ActionProbabilities],
    *,
    split: Split = "test",
    max_samples_per_task: int | None = None,
    per_sample: bool = False,
    eps: float = 0.01,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> GameAnalysis:
    """Analyze the game of a routing env at its current weights, for the given policies.

    Reads the env's network, dataset and agent configuration (``per_task``, ``single``
    or ``dispatched``; see the module docstring), expands every task's route tree on
    held-out samples with :func:`expand_task_game`, and calls :func:`analyze_task_games`.
    The env is not stepped and its network's mode is restored, so training can go on
    afterwards unchanged.

    Args:
        env: A (possibly wrapped) :class:`~routing_env.RoutingEnv`.
        policies: The acting policy of every agent, by id (e.g. a
            :class:`agents.MultiAgentRouter`).
        split: Held-out ``"test"`` samples (default) or ``"train"``.
        max_samples_per_task: Use at most this many samples per task, drawn with
            ``seed`` (None: all).
        per_sample: Ask the router policies per sample (see :func:`expand_task_game`).
            The dispatcher is always asked per sample.
        eps: Purity threshold.
        seed: Seed of the sample subset.
        progress: Called with ``(tasks done, tasks)`` after each task.

    Raises:
        TypeError: When ``env`` is not a routing env.
        ValueError: When a policy is missing, or on bad arguments.
    """
    raw = getattr(env, "unwrapped", env)
    for name in ("network", "dataset", "router_of_task", "routers"):
        if not hasattr(raw, name):
            raise TypeError(f"analyze_game needs a routing_env.RoutingEnv, got {type(raw).__name__}")
    if max_samples_per_task is not None and (
        isinstance(max_samples_per_task, bool)
        or not isinstance(max_samples_per_task, int)
        or max_samples_per_task < 1
    ):
        raise ValueError(f"max_samples_per_task must be a positive int or None, got {max_samples_per_task!r}")
    network: RoutingNetwork = raw.network
    dataset: MultiTaskDataset = raw.dataset
    routers: list[str] = list(raw.routers)
    dispatcher: str | None = getattr(raw, "dispatcher", None)
    needed = routers + ([dispatcher] if dispatcher else [])
    missing = [a for a in needed if a not in policies]
    if missing:
        raise ValueError(f"no policy for agents {missing}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data = dataset.test if split == "test" else dataset.train
    tasks_N = data.tasks_N.numpy()
    rng = np.random.default_rng(seed)
    games = []
    for task in range(dataset.num_tasks):
        indices = _pick_indices(tasks_N, task, max_samples_per_task, rng)
        n = len(indices)
        router = raw.router_of_task(task)  # the env's mapping; None: the dispatcher decides
        if router is not None:
            agent_policies = {router: policies[router]}
            weights = {router: np.ones(n)}
        else:
            assert dispatcher is not None
            dispatch_NK = _dispatch_probs(
                network, dataset, data, indices, task, policies[dispatcher], len(routers)
            )
            agent_policies = {r: policies[r] for r in routers}
            weights = {r: dispatch_NK[:, k] for k, r in enumerate(routers)}
        games.append(
            expand_task_game(
                network,
                dataset,
                task=task,
                policies=agent_policies,
                weights=weights,
                split=split,
                indices=indices,
                per_sample=per_sample,
            )
        )
        if progress is not None:
            progress(task + 1, dataset.num_tasks)
    return analyze_task_games(games, agents=routers, dispatcher=dispatcher, eps=eps)


def _dispatch_probs(
    network: RoutingNetwork,
    dataset: MultiTaskDataset,
    data: Any,
    indices: np.ndarray,
    task: int,
    dispatcher: ActionProbabilities,
    num_routers: int,
) -> np.ndarray:
    """The dispatcher's probability of each router for each sample (it reads the trunk output)."""
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            device = next(iter(network.parameters()), torch.zeros(0)).device
            v = network.trunk(dataset.normalize(data.inputs_NCHW[torch.from_numpy(indices)]).to(device)).cpu()
    finally:
        network.train(was_training)
    mask = np.ones(num_routers, dtype=np.int8)
    rows = [
        dispatcher.action_probs(_observation(v[i], network.observation_width, task, 0, mask))
        for i in range(len(v))
    ]
    probs = np.asarray(rows, dtype=np.float64).reshape(len(indices), num_routers)
    return probs / probs.sum(axis=1, keepdims=True)
