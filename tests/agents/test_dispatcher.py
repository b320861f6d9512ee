"""The dispatcher: one MLP whatever the depth, learns which router suits each task."""

from __future__ import annotations

import functools

import numpy as np

from agents import WPL, Dispatcher, MultiAgentRouter, Trace, evaluate, train


def test_the_dispatcher_has_a_single_mlp_and_ignores_the_depth(spaces, obs):
    obs_space, act_space = spaces(num_actions=3, num_depths=4, num_tasks=2)
    dispatcher = Dispatcher(observation_space=obs_space, action_space=act_space, seed=0)
    assert len(dispatcher.policy_net.mlps) == 1
    o = obs(task=1, mask=[1, 1, 1], v=[1, 2, 3, 4])
    np.testing.assert_allclose(dispatcher.action_probs(o), dispatcher.action_probs({**o, "depth": 3}))
    stats = dispatcher.learn(Trace(observations=[o], actions=[2], rewards=[1.0], final_reward=0.0))
    assert stats["mean_advantage"] == 1.0


def test_the_dispatcher_learns_to_send_each_task_to_its_router(fake_routing_env):
    """Only router ``t`` can route task ``t`` correctly; the routers' own choices do not matter."""
    env = fake_routing_env(
        correct=lambda task, route, router_index, rng: router_index == task,
        num_tasks=2,
        num_actions=2,
        layer_sizes=(2,),
        router="dispatched",
    )
    router = MultiAgentRouter.from_env(
        env, router_factory=WPL, dispatcher_factory=functools.partial(Dispatcher, lr=1e-2), seed=0
    )
    assert isinstance(router["dispatcher_0"], Dispatcher)
    assert evaluate(env, router, num_samples=40).accuracy < 0.9  # one router for both tasks
    train(env, router, num_samples=400, seed=0)
    assert evaluate(env, router, num_samples=40).accuracy == 1.0
