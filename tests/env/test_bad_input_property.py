"""Property-based: arbitrary action sequences never corrupt the env.

Hypothesis drives the env with valid moves mixed with out-of-range, masked, mistyped
and out-of-turn actions, steps after the episode and resets. Every refused call must
raise a clear error (ValueError / TypeError / RuntimeError with a message) and leave
the blocks, the counters, the turn and the random state exactly as they were.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing_env import RoutingEnv

JUNK = st.one_of(
    st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
    st.just(np.array([1, 2])),
    st.just(np.float32(1.0)),
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("valid"), st.integers(0, 100)),
        st.tuples(st.just("masked"), st.integers(0, 100)),
        st.tuples(st.just("junk"), JUNK),
        st.tuples(st.just("reset"), st.none()),
    ),
    min_size=1,
    max_size=40,
)


def snapshot(env):
    e = env.engine
    return (
        {k: v.clone() for k, v in env.network.state_dict().items()},
        e.selections_nA.copy(),
        (e.depth if e.sample_in_flight else None, e.updates, e.samples_routed, e.epoch),
        (env.agent_selection, list(env.agents), dict(env._cumulative_rewards), dict(env.terminations)),
        e.np_random.bit_generator.state,
        torch.get_rng_state(),
    )


def assert_same(a, b):
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert np.array_equal(a[1], b[1])
    assert a[2:5] == b[2:5]
    assert torch.equal(a[5], b[5])


@pytest.mark.parametrize("config", [dict(router="per_task"), dict(router="dispatched", routing="recurrent")])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_refused_calls_change_nothing(digits, config, ops):
    env = RoutingEnv(dataset=digits, batch_size=4, collaboration_reward=0.2, **config)
    env.reset(seed=0)
    for kind, value in ops:
        if kind == "reset":
            env.reset()
            continue
        over = not env.agents
        agent = None if over else env.agent_selection
        dead = not over and (env.terminations[agent] or env.truncations[agent])
        mask = None if over or dead else env.observe(agent)["action_mask"]
        if kind == "valid":
            action = None if (over or dead) else int(np.flatnonzero(mask)[value % int(mask.sum())])
        elif kind == "masked":
            if over or dead or mask.all():
                action = 0 if dead else value  # a live action for a dead agent, or out of range
            else:
                action = int(np.flatnonzero(mask == 0)[value % int((mask == 0).sum())])
        else:
            action = value
        before = snapshot(env)
        try:
            env.step(action)
        except (ValueError, TypeError, RuntimeError) as err:
            assert str(err), "a refusal must say why"
            assert_same(before, snapshot(env))
        else:
            assert not over, "stepping after the episode must be refused"
