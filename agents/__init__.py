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
    router = MultiAgentRouter.from_env(env, router=WPL, seed=0)
    train(env, router, num_samples=10_000, seed=0)
    print(evaluate(env, router, num_samples=3590).accuracy)
"""

from __future__ import annotations

from agents.base import RouterAgent, RouterSpaces, Trace, compute_returns
from agents.dispatcher import Dispatcher
from agents.multi import AgentFactory, MultiAgentRouter, RunStats, evaluate, run_episode, train
from agents.qlearning import EpsilonSchedule, QLearning
from agents.reinforce import Reinforce
from agents.wpl import WPL, floor_projection, simplex_projection

__all__ = [
    "WPL",
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
    "compute_returns",
    "evaluate",
    "floor_projection",
    "run_episode",
    "simplex_projection",
    "train",
]
