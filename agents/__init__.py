"""Router agents for the routing environment, speaking only PettingZoo's AEC API.

Every agent implements :class:`RouterAgent` (``act``/``action_probs`` to act,
``learn`` from a finished :class:`Trace`, ``state_dict``/``load_state_dict``):

- :class:`WPL`: the Weighted Policy Learner (Algorithm 3 of the paper), tabular.
- :class:`Reinforce`: REINFORCE, tabular or one MLP per depth.
- :class:`QLearning`: Q-learning, tabular (Watkins) or one MLP per depth.
- :class:`Dispatcher`: the dispatching agent (REINFORCE with one MLP).

:class:`MultiAgentRouter` holds one learner per env agent; :func:`train`,
:func:`evaluate` and :func:`run_episode` drive the AEC loop for any configuration::

    import routing_env
    from agents import MultiAgentRouter, WPL, evaluate, train

    env = routing_env.env(router="per_task")
    router = MultiAgentRouter.from_env(env, router_factory=WPL, seed=0)
    train(env, router, num_samples=10_000, seed=0)
    print(evaluate(env, router, num_samples=3590).accuracy)

The batched path (:class:`routing_env.BatchedRoutingEnv`, one step per depth of a whole
minibatch) is driven by :func:`train_batched` and :func:`evaluate_batched` with the same
learners (:meth:`RouterAgent.act_batch`, :meth:`RouterAgent.learn_batch`)::

    benv = routing_env.batched_env(router="per_task")
    router = MultiAgentRouter.from_env(benv, router_factory=WPL, seed=0)
    train_batched(benv, router, num_samples=10_000, seed=0)
    print(evaluate_batched(benv, router).accuracy)          # the whole test split
"""

from __future__ import annotations

from agents.base import RouterAgent, RouterSpaces, Trace, TraceBatch, compute_returns
from agents.batched import evaluate_batched, run_batch_episode, train_batched
from agents.dispatcher import Dispatcher
from agents.multi import AgentFactory, MultiAgentRouter, RunStats, evaluate, run_episode, train
from agents.qlearning import EpsilonSchedule, QLearning
from agents.reinforce import Reinforce
from agents.wpl import WPL, WPL_WEIGHTINGS, WPLWeighting, floor_projection, simplex_projection

__all__ = [
    "WPL",
    "WPL_WEIGHTINGS",
    "WPLWeighting",
    "AgentFactory",
    "Dispatcher",
    "EpsilonSchedule",
    "MultiAgentRouter",
    "QLearning",
    "Reinforce",
    "RouterAgent",
    "RouterSpaces",
    "RunStats",
    "Trace",
    "TraceBatch",
    "compute_returns",
    "evaluate",
    "evaluate_batched",
    "floor_projection",
    "run_batch_episode",
    "run_episode",
    "simplex_projection",
    "train",
    "train_batched",
]
