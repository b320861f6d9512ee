"""load_dataset, root resolution, shared helpers and the class_names field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from routing_env.datasets import (
    DATASET_NAMES,
    DatasetNotFoundError,
    MultiTaskDataset,
    TaskSplit,
    cifar_mtl,
    load_dataset,
    mnist_mtl,
)
from routing_env.datasets.storage import channel_mean_std, resolve_root


def test_names() -> None:
    assert DATASET_NAMES == ("digits-mtl", "mnist-mtl", "cifar-mtl", "min-mtl")


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        load_dataset("mnist")
    for name in DATASET_NAMES:
        assert name in str(info.value)


def test_builds_each_dataset_like_its_builder(tmp_path: Path, write_mnist, write_cifar100, write_min) -> None:
    write_mnist(tmp_path)
    write_cifar100(tmp_path)
    write_min(tmp_path, "pickle", num_classes=50, per_class=2)
    digits = load_dataset("digits-mtl", root=tmp_path / "ignored", seed=1, download=True)
    assert digits.name == "digits-mtl" and not (tmp_path / "ignored").exists()
    mnist = load_dataset("mnist-mtl", root=tmp_path, seed=2, per_class=(5, 2))
    assert torch.equal(
        mnist.train.inputs_NCHW, mnist_mtl(root=tmp_path, seed=2, per_class=(5, 2)).train.inputs_NCHW
    )
    cifar = load_dataset("cifar-mtl", root=tmp_path)
    assert torch.equal(cifar.test.targets_N, cifar_mtl(root=tmp_path).test.targets_N)
    # mini-ImageNet cannot be downloaded; download=True is ignored
    assert load_dataset("min-mtl", root=tmp_path, download=True, per_class=(1, 1)).num_tasks == 10


def test_root_precedence(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ROUTING_ENV_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_root(None) == tmp_path / "env"
    monkeypatch.delenv("ROUTING_ENV_DATA")
    assert resolve_root(None) == tmp_path / "cache" / "routing_env"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_root(None) == tmp_path / "home" / ".cache" / "routing_env"
    with pytest.raises(TypeError, match="root must be a path"):
        resolve_root(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["mnist-mtl", "cifar-mtl", "min-mtl"])
def test_missing_default_root_is_named_and_left_alone(tmp_path: Path, monkeypatch, name: str) -> None:
    monkeypatch.delenv("ROUTING_ENV_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name)
    assert str(tmp_path / "routing_env") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_invalid_seed_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        mnist_mtl(root=tmp_path, seed=-1)
    with pytest.raises(TypeError, match="non-negative int"):
        cifar_mtl(root=tmp_path, seed=1.5)  # type: ignore[arg-type]


def test_channel_mean_std_is_exact() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5000, 3, 4, 5), dtype=np.uint8)
    images[:, 2] //= 4
    mean, std = channel_mean_std(images)
    scaled = images.astype(np.float64) / 255.0
    assert mean == pytest.approx(scaled.mean(axis=(0, 2, 3)).tolist(), abs=1e-12)
    assert std == pytest.approx(scaled.std(axis=(0, 2, 3)).tolist(), abs=1e-12)


def test_class_names_must_match_num_classes() -> None:
    split = TaskSplit(
        inputs_NCHW=torch.zeros(4, 1, 2, 2, dtype=torch.uint8),
        tasks_N=torch.tensor([0, 0, 1, 1]),
        targets_N=torch.tensor([0, 1, 0, 1]),
    )
    kwargs = dict(name="toy", train=split, test=split, num_classes=(2, 2), mean=(0.5,), std=(0.5,))
    assert MultiTaskDataset(**kwargs).class_names == ()
    assert MultiTaskDataset(**kwargs, class_names=(("a", "b"), ("c", "d"))).class_names[1] == ("c", "d")
    with pytest.raises(ValueError, match="class_names"):
        MultiTaskDataset(**kwargs, class_names=(("a", "b"), ("c",)))
