"""MNIST-MTL: sizes, labels and determinism on idx fixtures, and on real MNIST when present."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from routing_env.datasets import DatasetNotFoundError, MultiTaskDataset, mnist_mtl
from routing_env.datasets.mnist import MNIST_FILES


def _digits_of(split_inputs: torch.Tensor) -> np.ndarray:
    """The digit the fixture stamped into pixel (0, 0) of each image."""
    return split_inputs[:, 0, 0, 0].numpy().astype(np.int64)


def _check_one_vs_rest(ds: MultiTaskDataset, n_train: int, n_test: int) -> None:
    assert ds.name == "mnist-mtl"
    assert ds.num_tasks == 10 and ds.num_classes == (2,) * 10
    assert ds.input_shape == (1, 28, 28)
    for split, n in ((ds.train, n_train), (ds.test, n_test)):
        assert len(split) == 10 * 10 * n
        assert split.inputs_NCHW.dtype == torch.uint8
        tasks, targets = split.tasks_N.numpy(), split.targets_N.numpy()
        # task-major, the same images in every task, 1 positive and 9 negative digits
        per_task = split.inputs_NCHW.reshape(10, 10 * n, -1)
        assert torch.equal(per_task, per_task[:1].expand_as(per_task))
        for task in range(10):
            in_task = tasks == task
            assert in_task.sum() == 10 * n
            assert set(targets[in_task]) == {0, 1}
            assert (targets[in_task] == 1).sum() == n  # 10% positives: majority-class rate 90%


def test_fixture_sizes_labels_and_normalization(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path, train_per_digit=8, test_per_digit=3)
    ds = mnist_mtl(root=tmp_path, per_class=(5, 2))
    _check_one_vs_rest(ds, n_train=5, n_test=2)
    for split in (ds.train, ds.test):
        digits = _digits_of(split.inputs_NCHW)
        assert np.array_equal(split.targets_N.numpy(), (digits == split.tasks_N.numpy()).astype(np.int64))
        first_task = split.inputs_NCHW[split.tasks_N == 0]
        assert np.bincount(_digits_of(first_task), minlength=10).tolist() == [len(first_task) // 10] * 10
        # no image drawn twice: the fixture's index pixels are unique within a task
        stamps = first_task[:, 0, 0, :3].numpy()
        assert len(np.unique(stamps, axis=0)) == len(first_task)
    distinct = ds.train.inputs_NCHW[ds.train.tasks_N == 0].double() / 255.0
    assert ds.mean[0] == pytest.approx(distinct.mean().item(), abs=1e-12)
    assert ds.std[0] == pytest.approx(distinct.std(unbiased=False).item(), abs=1e-12)
    assert ds.class_names[3] == ("not-3", "3")


def test_same_seed_same_tensors_other_seed_other_split(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path, train_per_digit=8, test_per_digit=3)
    a, b = (mnist_mtl(root=tmp_path, seed=7, per_class=(5, 2)) for _ in range(2))
    c = mnist_mtl(root=tmp_path, seed=8, per_class=(5, 2))
    for split in ("train", "test"):
        sa, sb, sc = (getattr(d, split) for d in (a, b, c))
        assert torch.equal(sa.inputs_NCHW, sb.inputs_NCHW)
        assert torch.equal(sa.tasks_N, sb.tasks_N) and torch.equal(sa.targets_N, sb.targets_N)
        assert not torch.equal(sa.inputs_NCHW, sc.inputs_NCHW)


def test_per_class_beyond_the_files_is_a_value_error(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path, train_per_digit=4, test_per_digit=2)
    with pytest.raises(ValueError, match="fewer than the 5 per digit"):
        mnist_mtl(root=tmp_path, per_class=(5, 1))
    with pytest.raises(ValueError, match="per_class"):
        mnist_mtl(root=tmp_path, per_class=(0, 1))


def test_missing_root_names_the_expected_files(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        mnist_mtl(root=root)
    message = str(info.value)
    for rel in MNIST_FILES:
        assert str(root / rel) in message
    assert "download=True" in message and "ROUTING_ENV_DATA" in message
    assert isinstance(info.value, FileNotFoundError)
    assert not root.exists()  # nothing written without download=True


def test_one_missing_file_is_named(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path)
    (tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing: MNIST/raw/t10k-labels-idx1-ubyte\)"):
        mnist_mtl(root=tmp_path, per_class=(5, 2))


@pytest.mark.parametrize(
    ("file", "corrupt"),
    [
        ("train-images-idx3-ubyte", lambda b: b[: len(b) // 2]),  # truncated download
        ("train-images-idx3-ubyte", lambda b: b"\x00\x00\x00\x00" + b[4:]),  # bad magic
        ("t10k-labels-idx1-ubyte", lambda b: b[:-1]),  # one label short
    ],
    ids=["truncated-images", "bad-magic", "short-labels"],
)
def test_corrupt_file_is_reported(tmp_path: Path, write_mnist, file: str, corrupt) -> None:
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / file
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DatasetNotFoundError) as info:
        mnist_mtl(root=tmp_path, per_class=(5, 2))
    problem, *expected = str(info.value).splitlines()
    assert "not found or corrupt" in problem and f"MNIST/raw/{file}" in problem
    assert str(tmp_path / "MNIST/raw/train-images-idx3-ubyte") in expected[1]


def test_download_true_with_files_present_writes_nothing(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    mnist_mtl(root=tmp_path, per_class=(5, 2), download=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_root_defaults_to_routing_env_data(tmp_path: Path, write_mnist, monkeypatch) -> None:
    write_mnist(tmp_path)
    monkeypatch.setenv("ROUTING_ENV_DATA", str(tmp_path))
    ds = mnist_mtl(per_class=(5, 2))
    assert len(ds.train) == 500


@pytest.mark.data
def test_real_mnist_matches_the_paper(real_root: Path) -> None:
    if not all((real_root / f).is_file() for f in MNIST_FILES):
        pytest.skip(f"real MNIST not under ROUTING_ENV_DATA={real_root} (expected {MNIST_FILES[0]}, ...)")
    ds = mnist_mtl(root=real_root, seed=0)
    _check_one_vs_rest(ds, n_train=1000, n_test=20)
    assert (len(ds.train), len(ds.test)) == (100_000, 2_000)  # Table 1
    for split, n in ((ds.train, 1000), (ds.test, 20)):
        # the images are shared by all tasks, so an image's digit is the task where it is positive
        digit_N = split.targets_N.reshape(10, -1).argmax(dim=0)
        assert torch.bincount(digit_N, minlength=10).tolist() == [n] * 10
        assert bool((split.targets_N.reshape(10, -1).sum(dim=0) == 1).all())
    assert ds.mean[0] == pytest.approx(0.1307, abs=0.005) and ds.std[0] == pytest.approx(0.3081, abs=0.005)
    other = mnist_mtl(root=real_root, seed=1)
    assert not torch.equal(other.train.inputs_NCHW, ds.train.inputs_NCHW)


def test_a_file_that_differs_from_the_roots_md5sums_is_refused(tmp_path, write_mnist):
    """A staged data folder's MD5SUMS is checked: an altered file is named, a listed good one passes."""
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    sums = {p: hashlib.md5(p.read_bytes()).hexdigest() for p in raw.iterdir()}
    (tmp_path / "MD5SUMS").write_text(
        "".join(f"{digest}  MNIST/raw/{p.name}\n" for p, digest in sums.items()), encoding="utf-8"
    )
    mnist_mtl(root=tmp_path, per_class=(5, 2))  # every file as listed
    images = raw / "train-images-idx3-ubyte"
    data = bytearray(images.read_bytes())
    data[-1] ^= 0xFF
    images.write_bytes(bytes(data))
    with pytest.raises(DatasetNotFoundError, match=r"train-images-idx3-ubyte: its MD5 is .* lists"):
        mnist_mtl(root=tmp_path, per_class=(5, 2))
