"""Helpers of the third-party integration tests: example loading and the random-router baseline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from agents import MultiAgentRouter, RouterAgent, evaluate, train

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# The env settings the learning tests share with the uniformly random baseline: Adam at
# 1e-3 on minibatches of 16 trains the blocks within a few thousand routed samples.
FAST_BLOCKS = {"optimizer": "adam", "lr": 1e-3, "batch_size": 16}


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (registered in ``sys.modules`` for dataclasses)."""
    module_name = f"routing_env_integration_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class UniformRouter(RouterAgent):
    """Picks uniformly among the allowed blocks and never learns."""

    def action_probs(self, obs):
        _, mask = self.check_observation(obs)
        return mask / mask.sum()

    def learn(self, trace):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def uniform_router_accuracy(*, num_samples: int, max_test_samples: int | None, seed: int = 0) -> float:
    """Test accuracy of uniformly random per-task routers after routing ``num_samples``
    training samples through an env with :data:`FAST_BLOCKS` (the same budget as a
    learning test; sampled routes, since a uniform router has no greedy route)."""
    import routing_env
    from routing_env.datasets import digits_mtl, subsample

    dataset = subsample(digits_mtl(), max_train=None, max_test=max_test_samples, seed=0)
    env = routing_env.env(dataset=dataset, router="per_task", **FAST_BLOCKS)
    router = MultiAgentRouter.from_env(env, router_factory=UniformRouter, seed=seed)
    train(env, router, num_samples=num_samples, seed=seed)
    evaluate(env, router, num_samples=len(dataset.test), greedy=False)
    return env.unwrapped.evaluation()["accuracy"]
