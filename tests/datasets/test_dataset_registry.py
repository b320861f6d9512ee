"""load_dataset, root resolution, shared helpers and the class_names field."""

from __future__ import annotations

import typing
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
    fashion_mtl,
    load_dataset,
    mnist_mtl,
)
from routing_env.datasets.storage import channel_mean_std, resolve_root
from routing_env.experiments import DatasetName


def test_every_name_loads_the_dataset_it_names(
    tmp_path: Path, write_mnist, write_fashion_mnist, write_cifar100, write_min
) -> None:
    write_mnist(tmp_path)
    write_fashion_mnist(tmp_path, seed=1)
    write_cifar100(tmp_path)
    write_min(tmp_path, "pickle", num_classes=50, per_class=2)
    small = {"mnist-mtl": (5, 2), "fashion-mtl": (5, None), "min-mtl": (1, 1)}
    tasks = {"digits-mtl": 10, "mnist-mtl": 10, "fashion-mtl": 10, "cifar-mtl": 20, "min-mtl": 10}
    assert set(DATASET_NAMES) == set(tasks)  # the paper's four and Fashion-MTL, no other
    for name in DATASET_NAMES:
        options = {"per_class": small[name]} if name in small else {}
        dataset = load_dataset(name, root=tmp_path, **options)
        assert dataset.name == name and dataset.num_tasks == tasks[name]


def test_the_scripts_offer_every_dataset() -> None:
    # DatasetName is the --dataset choices of every script built on DatasetOptions
    assert typing.get_args(DatasetName) == DATASET_NAMES


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        load_dataset("mnist")
    for name in DATASET_NAMES:
        assert name in str(info.value)


def test_builds_each_dataset_like_its_builder(
    tmp_path: Path, write_mnist, write_fashion_mnist, write_cifar100, write_min
) -> None:
    write_mnist(tmp_path)
    write_fashion_mnist(tmp_path, seed=1)
    write_cifar100(tmp_path)
    write_min(tmp_path, "pickle", num_classes=50, per_class=2)
    digits = load_dataset("digits-mtl", root=tmp_path / "ignored", seed=1, download=True)
    assert digits.name == "digits-mtl" and not (tmp_path / "ignored").exists()
    mnist = load_dataset("mnist-mtl", root=tmp_path, seed=2, per_class=(5, 2))
    assert torch.equal(
        mnist.train.inputs_NCHW, mnist_mtl(root=tmp_path, seed=2, per_class=(5, 2)).train.inputs_NCHW
    )
    fashion = load_dataset("fashion-mtl", root=tmp_path, seed=3, per_class=(5, None))
    expected = fashion_mtl(root=tmp_path, seed=3, per_class=(5, None))
    assert torch.equal(fashion.train.inputs_NCHW, expected.train.inputs_NCHW)
    assert torch.equal(fashion.test.targets_N, expected.test.targets_N)
    assert not torch.equal(fashion.train.inputs_NCHW, mnist.train.inputs_NCHW)  # its own files
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


@pytest.mark.parametrize("name", ["mnist-mtl", "fashion-mtl", "cifar-mtl", "min-mtl"])
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


def toy_split(inputs=None, targets=None) -> TaskSplit:
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0)) if inputs is None else inputs
    y = torch.tensor([0, 1, 0, 1]) if targets is None else targets
    return TaskSplit(inputs_NCHW=x, tasks_N=torch.tensor([0, 0, 1, 1]), targets_N=y)


TOY = dict(name="toy", test=toy_split(), num_classes=(2, 2), mean=(0.5,), std=(0.25,))


def nan_pixel() -> torch.Tensor:
    x = torch.rand(4, 1, 2, 2)
    x[2, 0, 1, 1] = float("nan")
    return x


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (dict(std=(0.0,)), ValueError, r"std=\(0.0,\); expected a standard deviation > 0"),
        (dict(std=(-0.2,)), ValueError, "standard deviation > 0"),
        (dict(std=(float("inf"),)), ValueError, "std=.*expected finite numbers"),
        (dict(mean=(float("nan"),)), ValueError, "mean=.*expected finite numbers"),
        (dict(mean="0.5"), TypeError, "mean must be a tuple of floats"),
        (dict(mean=("0.5",)), TypeError, r"mean=\('0.5',\); expected a float per channel, got '0.5' \(str\)"),
        (dict(std=(None,)), TypeError, "std=.*expected a float per channel"),
        (
            dict(num_classes=(2.5, 2)),
            TypeError,
            r"num_classes=\(2.5, 2\); expected an int per task.*2.5 \(float\)",
        ),
        (dict(num_classes=(True, 2)), TypeError, "expected an int per task"),
        (dict(num_classes=2), TypeError, "num_classes must be a tuple of ints"),
        (
            dict(train=toy_split(nan_pixel())),
            ValueError,
            r"train split: 1 input images hold non-finite.*sample 2 \(NaN\)",
        ),
        (
            dict(train=toy_split(torch.full((4, 1, 2, 2), float("inf")))),
            ValueError,
            r"4 input images hold non-finite pixels, the first is sample 0 \(inf\)",
        ),
        (
            dict(test=toy_split(torch.rand(4, 1, 2, 2) * 255)),
            ValueError,
            r"'toy', test split: float32 inputs span .*0..255 pixels; divide them by 255, or pass them as torch.uint8",
        ),
        (
            dict(train=toy_split(torch.randn(4, 1, 2, 2) - 3)),
            ValueError,
            r"expected pixels scaled to \[0, 1\]",
        ),
        (
            dict(train=toy_split(targets=torch.tensor([0, 1, 0, 2]))),
            ValueError,
            r"sample 3 of task 1 has label 2",
        ),
        (dict(train=toy_split(targets=torch.tensor([0, -1, 0, 1]))), ValueError, "has label -1"),
    ],
    ids=[
        "std-0",
        "std-negative",
        "std-inf",
        "mean-nan",
        "mean-string",
        "mean-string-entry",
        "std-none-entry",
        "num-classes-float",
        "num-classes-bool",
        "num-classes-int",
        "nan-pixel",
        "inf-pixels",
        "float-0-255",
        "float-standardized",
        "label-too-large",
        "label-negative",
    ],
)
def test_bad_values_are_refused_at_construction(change, error, message) -> None:
    kwargs = dict(TOY, train=toy_split())
    kwargs.update(change)
    with pytest.raises(error, match=message):
        MultiTaskDataset(**kwargs)


def test_regression_targets_must_be_finite() -> None:
    targets = torch.tensor([0.1, float("nan"), 0.3, 0.4])
    kwargs = dict(TOY, num_classes=(0, 0), test=toy_split(targets=torch.zeros(4)))
    MultiTaskDataset(**kwargs, train=toy_split(targets=torch.zeros(4)))
    with pytest.raises(
        ValueError, match=r"train split: 1 regression targets are not finite.*sample 1 \(task 0\)"
    ):
        MultiTaskDataset(**kwargs, train=toy_split(targets=targets))
    with pytest.raises(ValueError, match="not finite"):
        MultiTaskDataset(**kwargs, train=toy_split(targets=torch.tensor([0.0, 0.0, float("inf"), 0.0])))


def test_valid_float_and_uint8_inputs_are_accepted() -> None:
    edges = torch.tensor([0.0, 1.0, 0.5, 0.25]).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    MultiTaskDataset(**dict(TOY, train=toy_split(edges)))
    uint8 = torch.full((4, 1, 2, 2), 255, dtype=torch.uint8)  # uint8 pixels are 0..255 by definition
    MultiTaskDataset(**dict(TOY, train=toy_split(uint8)))
    MultiTaskDataset(
        **dict(TOY, train=toy_split(), mean=(np.float32(0.5),), std=(1,), num_classes=(np.int64(2), 2))
    )


def test_a_constant_channel_gets_std_one() -> None:
    # a channel with one gray level would normalize to 0/0 = NaN (and be refused as std 0)
    images = np.zeros((3, 2, 4, 4), dtype=np.uint8)
    images[:, 0] = np.arange(3, dtype=np.uint8)[:, None, None] * 100
    images[:, 1] = 7
    mean, std = channel_mean_std(images)
    assert std[1] == 1.0 and mean[1] == pytest.approx(7 / 255)
    assert std[0] == pytest.approx((images[:, 0] / 255.0).std())
