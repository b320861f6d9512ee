"""AgileRL's IPPO on the routing game's parallel API (extra ``agilerl``; its own venv in CI,
since AgileRL pins tensordict 0.13 where the ``torchrl`` extra needs 0.14)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.extras
pytest.importorskip("agilerl", reason="needs the 'agilerl' extra: pip install 'routing-env[agilerl]'")

from .helpers import load_example  # noqa: E402


@pytest.fixture(scope="module")
def example():
    return load_example("agilerl_routers")


CONFIGS = [(r, g) for r in ("per_task", "single", "dispatched") for g in ("layered", "recurrent")]


@pytest.mark.parametrize("router, routing", CONFIGS, ids=[f"{r}-{g}" for r, g in CONFIGS])
def test_ippo_trains_and_evaluates_through_the_parallel_env(example, router, routing):
    """A tiny budget end to end: AgileRL's get_action/learn on the env, then greedy routes."""
    validation = 0.1 if router == "per_task" else None  # one validation pass is enough
    args = example.Args(
        router=router,
        routing=routing,
        num_samples=48,
        learn_step=48,
        update_epochs=1,
        max_test_samples=50,
        validation_fraction=validation,
    )
    summary = example.main(args)
    assert summary["train_samples"] >= 48
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["test_samples"] == 50
    assert (summary["validation_accuracy"] is None) == (validation is None)


def test_greedy_actions_respect_the_masks(example):
    import numpy as np
    from agilerl.algorithms import IPPO

    import routing_env

    env = routing_env.parallel_env(router="per_task", flat=True)
    agents = env.possible_agents
    agent = IPPO(
        observation_spaces=[env.observation_space(a) for a in agents],
        action_spaces=[env.action_space(a) for a in agents],
        agent_ids=list(agents),
    )
    obs, infos = env.reset(seed=0)
    for _ in range(6):
        actions = example.greedy_actions(agent, obs, infos)
        for a, action in actions.items():
            assert infos[a]["action_mask"][int(action[0])] == 1
        obs, _, terminations, _, infos = env.step({a: int(v[0]) for a, v in actions.items()})
        if all(terminations.values()):
            obs, infos = env.reset()
    assert np.isfinite(env.aec_env.evaluation()["accuracy"] or 0.0)
