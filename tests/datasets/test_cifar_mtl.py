"""CIFAR-MTL: superclass tasks and rank labels on pickle fixtures, and on real CIFAR-100 when present."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from routing_env.datasets import DatasetNotFoundError, MultiTaskDataset, cifar_mtl
from routing_env.datasets.cifar import CIFAR100_FILES


def _check_tasks(ds: MultiTaskDataset) -> None:
    assert ds.name == "cifar-mtl"
    assert ds.num_tasks == 20 and ds.num_classes == (5,) * 20
    assert ds.input_shape == (3, 32, 32) and len(ds.mean) == len(ds.std) == 3
    assert len(ds.task_names) == 20 and all(len(names) == 5 for names in ds.class_names)
    for split in (ds.train, ds.test):
        assert split.inputs_NCHW.dtype == torch.uint8
        for task in range(20):
            labels = split.targets_N[split.tasks_N == task]
            assert sorted(set(labels.tolist())) == [0, 1, 2, 3, 4]  # 5 distinct labels in every task
            assert torch.bincount(labels).tolist() == [len(labels) // 5] * 5


def test_fixture_tasks_are_superclasses_labels_are_fine_ranks(tmp_path: Path, write_cifar100) -> None:
    fine_to_coarse = write_cifar100(tmp_path, train_per_fine=3, test_per_fine=1)
    ds = cifar_mtl(root=tmp_path)
    _check_tasks(ds)
    assert (len(ds.train), len(ds.test)) == (300, 100)
    for split in (ds.train, ds.test):
        stamp = split.inputs_NCHW.reshape(len(split), -1)[
            :, :2
        ].long()  # (fine, coarse) written by the fixture
        fine, coarse = stamp[:, 0].numpy(), stamp[:, 1].numpy()
        assert np.array_equal(split.tasks_N.numpy(), coarse)
        assert np.array_equal(fine_to_coarse[fine], coarse)
        rank = np.array(
            [np.flatnonzero(fine_to_coarse == c).tolist().index(f) for f, c in zip(fine, coarse, strict=True)]
        )
        assert np.array_equal(split.targets_N.numpy(), rank)
        assert not np.array_equal(split.targets_N.numpy(), fine % 5)  # the rank is not fine % 5 here
        assert bool((split.tasks_N[1:] >= split.tasks_N[:-1]).all())  # task-major
    assert ds.task_names[4] == "coarse_4"
    assert ds.class_names[4] == tuple(f"fine_{i}" for i in np.flatnonzero(fine_to_coarse == 4))
    train = ds.train.inputs_NCHW.double() / 255.0
    assert ds.mean == pytest.approx(train.mean(dim=(0, 2, 3)).tolist(), abs=1e-12)
    assert ds.std == pytest.approx(train.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-12)


def test_image_rows_are_channel_major(tmp_path: Path, write_cifar100) -> None:
    write_cifar100(tmp_path, train_per_fine=1, test_per_fine=1)
    with open(tmp_path / "cifar-100-python" / "train", "rb") as f:
        raw = pickle.load(f)
    ds = cifar_mtl(root=tmp_path)
    # find the row of the first loaded image through its stamped index
    first = ds.train.inputs_NCHW[0]
    index = int(first[0, 0, 2]) + 256 * int(first[0, 0, 3])
    row = raw["data"][index]
    assert np.array_equal(first[1].numpy().reshape(-1), row[1024:2048])  # green plane
    assert np.array_equal(first[0, 1].numpy(), row[32:64])  # second red row


def test_loads_are_identical(tmp_path: Path, write_cifar100) -> None:
    write_cifar100(tmp_path)
    a, b = cifar_mtl(root=tmp_path, seed=0), cifar_mtl(root=tmp_path, seed=0)
    for split in ("train", "test"):
        sa, sb = getattr(a, split), getattr(b, split)
        assert torch.equal(sa.inputs_NCHW, sb.inputs_NCHW) and torch.equal(sa.targets_N, sb.targets_N)


def test_missing_root_names_the_expected_files(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    with pytest.raises(DatasetNotFoundError) as info:
        cifar_mtl(root=root)
    message = str(info.value)
    for rel in CIFAR100_FILES:
        assert str(root / rel) in message
    assert "download=True" in message and "ROUTING_ENV_DATA" in message
    assert not root.exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _relabel_coarse(path: Path) -> None:
    with open(path, "rb") as f:
        entry = pickle.load(f)
    entry["coarse_labels"][0] = (entry["coarse_labels"][0] + 1) % 20  # one fine class in two superclasses
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def _drop_key(path: Path) -> None:
    with open(path, "rb") as f:
        entry = pickle.load(f)
    del entry["coarse_labels"]
    with open(path, "wb") as f:
        pickle.dump(entry, f)


@pytest.mark.parametrize(
    ("file", "corrupt", "expected"),
    [
        ("train", _truncate, "cifar-100-python/train is not a readable pickle"),
        ("meta", _truncate, "cifar-100-python/meta is not a readable pickle"),
        ("test", _drop_key, "cifar-100-python/test: no 'coarse_labels' entry"),
        ("train", _relabel_coarse, "exactly one superclass"),
        ("test", _relabel_coarse, "disagree with the train file"),
    ],
    ids=[
        "truncated-train",
        "truncated-meta",
        "test-without-coarse",
        "train-inconsistent",
        "test-inconsistent",
    ],
)
def test_corrupt_file_is_reported(tmp_path: Path, write_cifar100, file, corrupt, expected) -> None:
    write_cifar100(tmp_path, train_per_fine=2, test_per_fine=1)
    corrupt(tmp_path / "cifar-100-python" / file)
    with pytest.raises(DatasetNotFoundError) as info:
        cifar_mtl(root=tmp_path)
    assert expected in str(info.value)
    assert str(tmp_path / "cifar-100-python" / "meta") in str(info.value)


@pytest.mark.data
def test_real_cifar100_matches_the_paper(real_root: Path) -> None:
    if not all((real_root / f).is_file() for f in CIFAR100_FILES):
        pytest.skip(
            f"real CIFAR-100 not under ROUTING_ENV_DATA={real_root} (expected {', '.join(CIFAR100_FILES)})"
        )
    ds = cifar_mtl(root=real_root)
    _check_tasks(ds)
    assert (len(ds.train), len(ds.test)) == (50_000, 10_000)  # Table 1
    assert torch.bincount(ds.train.tasks_N).tolist() == [2_500] * 20
    assert torch.bincount(ds.test.tasks_N).tolist() == [500] * 20
    assert ds.task_names[0] == "aquatic_mammals"
    assert ds.class_names[0] == ("beaver", "dolphin", "otter", "seal", "whale")
    assert ds.mean == pytest.approx((0.5071, 0.4865, 0.4409), abs=0.002)
