"""The routing env runs on the file-backed datasets: one episode with random valid actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routing_env.datasets import MultiTaskDataset, cifar_mtl, fashion_mtl, mnist_mtl
from routing_env.datasets.fashion import FASHION_MNIST_FILES
from routing_env.datasets.mnist import MNIST_FILES
from routing_env.env import RoutingEnv


def _run_one_episode(dataset: MultiTaskDataset, *, seed: int) -> None:
    env = RoutingEnv(dataset=dataset, conv_layers=4)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    decisions, final_infos = 0, []
    for agent in env.agent_iter(max_iter=10 * env.num_decisions):
        obs, _, terminated, truncated, info = env.last()
        if terminated or truncated:
            env.step(None)
            continue
        assert env.observation_space(agent).contains(obs)
        assert obs["depth"] == decisions and 0 <= obs["task"] < dataset.num_tasks
        valid = np.flatnonzero(obs["action_mask"])
        assert len(valid) > 0
        env.step(int(rng.choice(valid)))
        decisions += 1
        if env.infos[agent].get("sample_done"):
            final_infos.append(env.infos[agent])
    assert decisions == env.num_decisions  # one sample, one decision per routed layer
    assert len(final_infos) == 1 and final_infos[0]["final_reward"] in (-1.0, 1.0)
    assert env.agents == [] or all(env.terminations.values())


@pytest.mark.data
def test_env_episode_on_real_mnist_mtl(real_root: Path) -> None:
    if not all((real_root / f).is_file() for f in MNIST_FILES):
        pytest.skip(f"real MNIST not under ROUTING_ENV_DATA={real_root}")
    _run_one_episode(mnist_mtl(root=real_root), seed=0)


@pytest.mark.data
def test_env_episode_on_real_fashion_mtl(real_root: Path) -> None:
    if not all((real_root / f).is_file() for f in FASHION_MNIST_FILES):
        pytest.skip(f"real Fashion-MNIST not under ROUTING_ENV_DATA={real_root}")
    _run_one_episode(fashion_mtl(root=real_root), seed=0)


def test_env_episode_on_cifar_mtl_fixture(tmp_path: Path, write_cifar100) -> None:
    write_cifar100(tmp_path, train_per_fine=2, test_per_fine=1)
    _run_one_episode(cifar_mtl(root=tmp_path), seed=1)


def test_env_episode_on_fashion_mtl_fixture(tmp_path: Path, write_fashion_mnist) -> None:
    write_fashion_mnist(tmp_path, train_per_class=4, test_per_class=2)
    _run_one_episode(fashion_mtl(root=tmp_path, per_class=(3, None)), seed=2)
