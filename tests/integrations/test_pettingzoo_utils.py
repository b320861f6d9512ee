"""PettingZoo's own utilities and SuperSuit's wrappers on every configuration (the table
in docs/integrations.md). PettingZoo's checkers themselves run in tests/env/test_api.py."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import api_test
from pettingzoo.utils import wrappers
from pettingzoo.utils.conversions import aec_to_parallel

import routing_env
from routing_env.datasets import subsample

SMALL = {"batch_size": 8, "hidden_width": 16, "filters": 8}
CONFIGS = [
    (router, routing)
    for router in ("per_task", "single", "dispatched")
    for routing in ("layered", "recurrent")
]
IDS = [f"{r}-{g}" for r, g in CONFIGS]


def make(digits, router, routing):
    return routing_env.env(dataset=digits, router=router, routing=routing, **SMALL)


@pytest.mark.parametrize("router, routing", CONFIGS, ids=IDS)
def test_pettingzoo_action_wrappers_pass_the_api_test(digits, router, routing):
    env = wrappers.AssertOutOfBoundsWrapper(
        wrappers.TerminateIllegalWrapper(make(digits, router, routing), illegal_reward=-1)
    )
    api_test(env, num_cycles=10)


def test_aec_to_parallel_is_refused_the_env_is_turn_based(digits):
    # agents act in turns on one sample (metadata is_parallelizable=False): PettingZoo refuses
    with pytest.raises(AssertionError, match="not generally safe"):
        aec_to_parallel(make(digits, "per_task", "layered"))


@pytest.mark.extras
@pytest.mark.parametrize("router, routing", CONFIGS, ids=IDS)
def test_supersuit_reward_wrappers_work(digits, router, routing):
    ss = pytest.importorskip(
        "supersuit", reason="needs the 'supersuit' extra: pip install 'routing-env[supersuit]'"
    )
    env = ss.reward_lambda_v0(
        ss.clip_reward_v0(make(digits, router, routing), lower_bound=-1, upper_bound=1), lambda r: 2 * r
    )
    api_test(env, num_cycles=10)
    env.reset(seed=0)
    rewards = []
    for _agent in env.agent_iter():
        obs, reward, terminated, truncated, info = env.last()
        rewards.append(reward)
        env.step(None if terminated or truncated else int(np.flatnonzero(obs["action_mask"])[0]))
    assert {2.0, -2.0} & set(rewards)  # the sample's +1/-1, doubled


@pytest.mark.extras
@pytest.mark.parametrize(
    "wrapper",
    [
        "flatten_v0",
        "dtype_v0",
        "normalize_obs_v0",
        "frame_stack_v1",
        "agent_indicator_v0",
        "pad_observations_v0",
    ],
)
def test_supersuit_observation_wrappers_refuse_the_dict_observation(digits, wrapper):
    """The observation is a Dict (v, task, depth and PettingZoo's action_mask); SuperSuit's
    observation wrappers take Box (or Discrete) observations only."""
    ss = pytest.importorskip(
        "supersuit", reason="needs the 'supersuit' extra: pip install 'routing-env[supersuit]'"
    )
    extra = {"dtype_v0": (np.float32,), "frame_stack_v1": (2,)}.get(wrapper, ())
    with pytest.raises((AttributeError, AssertionError), match="Dict|Box|homogenization"):
        env = getattr(ss, wrapper)(make(digits, "per_task", "layered"), *extra)
        env.reset(seed=0)


@pytest.mark.extras
def test_supersuit_pad_action_space_breaks_the_dispatchers_mask(digits):
    ss = pytest.importorskip(
        "supersuit", reason="needs the 'supersuit' extra: pip install 'routing-env[supersuit]'"
    )
    api_test(ss.pad_action_space_v0(make(digits, "per_task", "layered")), num_cycles=5)  # already uniform
    env = ss.pad_action_space_v0(make(digits, "dispatched", "recurrent"))
    # padded to the recurrent routers' 21 actions, but the dispatcher's mask still covers
    # its 10 routers: masked sampling (PettingZoo's api_test, any masked policy) fails
    env.reset(seed=0)
    assert env.action_space("dispatcher_0").n == 21 != len(env.observe("dispatcher_0")["action_mask"]) == 10
    with pytest.raises(AssertionError, match="shape of the sample mask"):
        api_test(env, num_cycles=5)


@pytest.mark.extras
@pytest.mark.parametrize(
    "config",
    [dict(router="per_task"), dict(routing="recurrent"), dict(router="single"), dict(router="dispatched")],
)
def test_supersuit_vector_envs_take_the_flat_parallel_env(digits, config):
    """SuperSuit's vector-env conversions need a ParallelEnv with one Box space for every agent:
    routing_env.parallel_env(flat=True) is one (not dispatched-recurrent, whose dispatcher's
    mask is shorter than its routers')."""
    ss = pytest.importorskip(
        "supersuit", reason="needs the 'supersuit' extra: pip install 'routing-env[supersuit]'"
    )
    env = routing_env.parallel_env(
        dataset=subsample(digits, max_train=200, max_test=50),
        batch_size=8,
        flat=True,
        invalid_action="first_valid",
        **config,
    )
    venv = ss.concat_vec_envs_v1(ss.pettingzoo_env_to_vec_env_v1(env), 2, num_cpus=0, base_class="gymnasium")
    obs, _ = venv.reset(seed=0)
    for _ in range(10):
        obs, rewards, *_ = venv.step(np.zeros(venv.num_envs, dtype=np.int64))
    assert obs.shape == (venv.num_envs, env.observation_space(env.possible_agents[0]).shape[0])
