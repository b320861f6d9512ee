"""Fashion-MTL: construction, sizes, labels, determinism and errors on idx fixtures, and on real data."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from routing_env.datasets import DatasetNotFoundError, MultiTaskDataset, fashion_mtl, mnist_mtl
from routing_env.datasets.fashion import FASHION_CLASSES, FASHION_MNIST_FILES
from routing_env.experiments import DatasetOptions, load_run_dataset, parse_args

#: Unbalanced test files: every test image must be in every task, whatever the class counts.
TEST_COUNTS = (3, 1, 2, 4, 2, 1, 5, 2, 3, 1)
SLUGS = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")


def _stamps(inputs_NCHW: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The class and the index in its file the fixture stamped into each image."""
    pixels = inputs_NCHW[:, 0, 0, :3].numpy().astype(np.int64)
    return pixels[:, 0], pixels[:, 1] + 256 * pixels[:, 2]


def _check_tasks(ds: MultiTaskDataset) -> None:
    assert ds.name == "fashion-mtl"
    assert ds.num_tasks == 10 and ds.num_classes == (2,) * 10
    assert ds.input_shape == (1, 28, 28)
    assert ds.task_names == tuple(f"{s}-vs-rest" for s in SLUGS)
    assert ds.task_names[0] == "t-shirt-vs-rest" and ds.task_names[9] == "ankle-boot-vs-rest"
    assert ds.class_names[4] == ("not-coat", "coat")
    for split in (ds.train, ds.test):
        assert split.inputs_NCHW.dtype == torch.uint8
        n = len(split) // 10
        # task-major, the same images in the same order in every task
        assert split.tasks_N.tolist() == np.repeat(np.arange(10), n).tolist()
        per_task = split.inputs_NCHW.reshape(10, n, -1)
        assert torch.equal(per_task, per_task[:1].expand_as(per_task))


def test_every_test_image_in_every_task(tmp_path: Path, write_fashion_mnist) -> None:
    write_fashion_mnist(tmp_path, train_per_class=8, test_per_class=TEST_COUNTS)
    ds = fashion_mtl(root=tmp_path, per_class=(5, None))
    _check_tasks(ds)
    n_test = sum(TEST_COUNTS)
    assert (len(ds.train), len(ds.test)) == (10 * 10 * 5, 10 * n_test)
    classes, index = _stamps(ds.test.inputs_NCHW[ds.test.tasks_N == 0])
    assert index.tolist() == list(range(n_test))  # every test image of the files, in file order
    assert np.bincount(classes, minlength=10).tolist() == list(TEST_COUNTS)
    for split in (ds.train, ds.test):
        classes, _ = _stamps(split.inputs_NCHW)
        assert split.targets_N.tolist() == (classes == split.tasks_N.numpy()).astype(np.int64).tolist()
    positives = ds.test.targets_N.reshape(10, -1).sum(dim=1)
    assert positives.tolist() == list(TEST_COUNTS)  # an image is positive in its class's task only
    assert bool((ds.test.targets_N.reshape(10, -1).sum(dim=0) == 1).all())


def test_train_split_is_drawn_per_class_like_mnist_mtl(tmp_path: Path, write_fashion_mnist) -> None:
    write_fashion_mnist(tmp_path, train_per_class=8, test_per_class=3)
    ds = fashion_mtl(root=tmp_path, seed=4, per_class=(5, None))
    first_task = ds.train.inputs_NCHW[ds.train.tasks_N == 0]
    classes, index = _stamps(first_task)
    assert np.bincount(classes, minlength=10).tolist() == [5] * 10
    assert index.tolist() == sorted(set(index.tolist()))  # drawn without replacement, in file order
    assert (ds.train.targets_N.reshape(10, -1).sum(dim=1) == 5).all()  # majority-class rate 90%
    scaled = first_task.double() / 255.0
    assert ds.mean[0] == pytest.approx(scaled.mean().item(), abs=1e-12)
    assert ds.std[0] == pytest.approx(scaled.std(unbiased=False).item(), abs=1e-12)
    # the same bytes as MNIST files give MNIST-MTL's training split: one construction
    shutil.copytree(tmp_path / "FashionMNIST", tmp_path / "MNIST")
    mnist = mnist_mtl(root=tmp_path, seed=4, per_class=(5, 2))
    assert torch.equal(mnist.train.inputs_NCHW, ds.train.inputs_NCHW)
    assert torch.equal(mnist.train.targets_N, ds.train.targets_N)
    assert (mnist.mean, mnist.std) == (ds.mean, ds.std)


def test_an_int_test_count_draws_the_test_images(tmp_path: Path, write_fashion_mnist) -> None:
    write_fashion_mnist(tmp_path, train_per_class=8, test_per_class=3)
    drawn = fashion_mtl(root=tmp_path, per_class=(5, 2))
    every = fashion_mtl(root=tmp_path, per_class=(5, None))
    assert len(drawn.test) == 10 * 10 * 2
    classes, _ = _stamps(drawn.test.inputs_NCHW[drawn.test.tasks_N == 0])
    assert np.bincount(classes, minlength=10).tolist() == [2] * 10
    assert torch.equal(drawn.train.inputs_NCHW, every.train.inputs_NCHW)  # the test draw leaves train alone


def test_same_seed_same_tensors_other_seed_other_train_split(tmp_path: Path, write_fashion_mnist) -> None:
    write_fashion_mnist(tmp_path, train_per_class=8, test_per_class=3)
    a, b = (fashion_mtl(root=tmp_path, seed=7, per_class=(5, None)) for _ in range(2))
    c = fashion_mtl(root=tmp_path, seed=8, per_class=(5, None))
    for split in ("train", "test"):
        sa, sb = getattr(a, split), getattr(b, split)
        assert torch.equal(sa.inputs_NCHW, sb.inputs_NCHW)
        assert torch.equal(sa.tasks_N, sb.tasks_N) and torch.equal(sa.targets_N, sb.targets_N)
    assert (a.mean, a.std) == (b.mean, b.std)
    assert not torch.equal(a.train.inputs_NCHW, c.train.inputs_NCHW)
    assert torch.equal(a.test.inputs_NCHW, c.test.inputs_NCHW)  # every test image: nothing drawn


@pytest.mark.parametrize(
    ("per_class", "message"),
    [
        ((9, None), r"hold 8 images of class 0 \(T-shirt/top\), fewer than the 9 per class"),
        ((5, 4), r"test files hold 3 images of class 0 \(T-shirt/top\), fewer than the 4 per class"),
        ((0, None), "per_class must be a pair"),
        ((None, None), "a positive int, and a positive int or None"),
        ((5, 0), r"got \(5, 0\)"),
        ((5,), "per_class must be a pair"),
        ((True, None), "per_class must be a pair"),
    ],
    ids=["train-beyond-files", "test-beyond-files", "train-0", "train-none", "test-0", "one-entry", "bool"],
)
def test_bad_per_class_is_a_value_error(tmp_path: Path, write_fashion_mnist, per_class, message) -> None:
    write_fashion_mnist(tmp_path, train_per_class=8, test_per_class=3)
    with pytest.raises(ValueError, match=message):
        fashion_mtl(root=tmp_path, per_class=per_class)


def test_missing_root_names_the_expected_files(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path)  # MNIST's files are not Fashion-MNIST's
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mtl(root=tmp_path, per_class=(5, None))
    message = str(info.value)
    assert message.startswith(f"fashion-mtl: Fashion-MNIST not found or corrupt under {tmp_path}")
    for rel in FASHION_MNIST_FILES:
        assert rel.startswith("FashionMNIST/raw/") and str(tmp_path / rel) in message
    assert "fashion_mtl(download=True)" in message and "ROUTING_ENV_DATA" in message
    assert "FashionMNIST/raw/" in message
    assert isinstance(info.value, FileNotFoundError)
    assert not (tmp_path / "FashionMNIST").exists()  # nothing written without download=True


def test_one_missing_file_is_named(tmp_path: Path, write_fashion_mnist) -> None:
    write_fashion_mnist(tmp_path)
    (tmp_path / "FashionMNIST/raw/train-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing: FashionMNIST/raw/train-labels-idx1-ubyte\)"):
        fashion_mtl(root=tmp_path, per_class=(5, None))


@pytest.mark.parametrize(
    ("file", "corrupt"),
    [
        ("t10k-images-idx3-ubyte", lambda b: b[: len(b) // 2]),  # truncated download
        ("train-labels-idx1-ubyte", lambda b: b"\x00\x00\x00\x00" + b[4:]),  # bad magic
    ],
    ids=["truncated-images", "bad-magic"],
)
def test_corrupt_file_is_reported(tmp_path: Path, write_fashion_mnist, file: str, corrupt) -> None:
    write_fashion_mnist(tmp_path)
    path = tmp_path / "FashionMNIST" / "raw" / file
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mtl(root=tmp_path, per_class=(5, None))
    problem, *expected = str(info.value).splitlines()
    assert "not found or corrupt" in problem and f"FashionMNIST/raw/{file[:4]}" in problem
    assert str(tmp_path / "FashionMNIST/raw/train-images-idx3-ubyte") in expected[1]


def test_a_class_absent_from_the_test_files_is_reported(tmp_path: Path, write_fashion_mnist) -> None:
    write_fashion_mnist(tmp_path, test_per_class=(2, 2, 2, 0, 2, 2, 2, 2, 2, 2))
    with pytest.raises(DatasetNotFoundError, match=r"no test image of class 3 \(Dress\)"):
        fashion_mtl(root=tmp_path, per_class=(5, None))


def test_download_true_with_files_present_writes_nothing(tmp_path: Path, write_fashion_mnist) -> None:
    write_fashion_mnist(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    fashion_mtl(root=tmp_path, per_class=(5, None), download=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_the_scripts_dataset_option_loads_it(tmp_path: Path, write_fashion_mnist, monkeypatch) -> None:
    # the scripts pass no per_class: the defaults need 1,000 training images per class
    write_fashion_mnist(tmp_path, train_per_class=1000, test_per_class=2)
    monkeypatch.setenv("ROUTING_ENV_DATA", str(tmp_path))
    args = parse_args(DatasetOptions, ["--dataset", "fashion-mtl", "--max-train-samples", "300"])
    ds = load_run_dataset(args)
    assert ds.name == "fashion-mtl" and (len(ds.train), len(ds.test)) == (300, 200)


@pytest.mark.data
def test_real_fashion_mtl_sizes_and_files(real_root: Path) -> None:
    if not all((real_root / f).is_file() for f in FASHION_MNIST_FILES):
        pytest.skip(
            f"real Fashion-MNIST not under ROUTING_ENV_DATA={real_root} (expected {FASHION_MNIST_FILES[0]}, ...)"
        )
    sums = real_root / "MD5SUMS"
    if sums.is_file():  # the shared data folder lists them; a user's download need not
        listed = dict(line.split()[::-1] for line in sums.read_text().splitlines() if line.strip())
        for rel in FASHION_MNIST_FILES:
            if rel in listed:
                assert hashlib.md5((real_root / rel).read_bytes()).hexdigest() == listed[rel], rel
    start = time.perf_counter()
    ds = fashion_mtl(root=real_root, seed=0)
    load_s = time.perf_counter() - start
    # about 1 s on 2 shared cores (benchmarks/datasets_load.py); the bound catches only a
    # pathological slowdown, e.g. per-sample Python work on the 200,000 samples
    assert load_s < 30.0, f"fashion_mtl took {load_s:.1f} s to load"
    _check_tasks(ds)
    assert (len(ds.train), len(ds.test)) == (100_000, 100_000)
    for split in (ds.train, ds.test):
        targets_TN = split.targets_N.reshape(10, -1)
        assert targets_TN.sum(dim=1).tolist() == [1000] * 10  # 10% positives: majority-class rate 90%
        assert bool((targets_TN.sum(dim=0) == 1).all())
    from torchvision.datasets import FashionMNIST

    test_files = FashionMNIST(real_root, train=False, download=False)
    assert torch.equal(ds.test.inputs_NCHW[:10_000, 0], test_files.data)  # every test image, file order
    assert torch.equal(ds.test.targets_N.reshape(10, -1).argmax(dim=0), test_files.targets)
    assert list(test_files.classes) == list(FASHION_CLASSES)
    assert ds.mean[0] == pytest.approx(0.2860, abs=0.005) and ds.std[0] == pytest.approx(0.3530, abs=0.005)
    other = fashion_mtl(root=real_root, seed=1)
    assert not torch.equal(other.train.inputs_NCHW, ds.train.inputs_NCHW)
    assert torch.equal(other.test.inputs_NCHW, ds.test.inputs_NCHW)
