"""A dataset built by name pickles as its recipe and a fingerprint (issue 16); files that changed are caught."""

from __future__ import annotations

import dataclasses
import gc
import os
import pickle
from pathlib import Path

import pytest
import torch

from routing_env import RoutingEnv
from routing_env.datasets import DatasetNotFoundError, load_dataset, subsample
from routing_env.datasets.source import DatasetMismatchError, DatasetSource


def _pickled_env(root: Path) -> bytes:
    """An env on MNIST-MTL read from ``root``, pickled; nothing of it stays alive."""
    dataset = subsample(load_dataset("mnist-mtl", root=root, seed=3, per_class=[5, 2]), max_train=60, seed=1)
    env = RoutingEnv(dataset=dataset, hidden_width=16)
    env.reset(seed=0)
    blob = pickle.dumps(env)
    # no image is in it (the fixture's pixels are random: 784 bytes do not recur by chance)
    assert dataset.train.inputs_NCHW[7].numpy().tobytes() not in blob
    assert dataset.test.inputs_NCHW[0].numpy().tobytes() not in blob
    del env, dataset
    gc.collect()
    return blob


def test_the_source_records_the_recipe(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path)
    dataset = subsample(
        load_dataset("mnist-mtl", root=tmp_path, seed=3, per_class=[5, 2]), max_train=60, seed=1
    )
    assert dataset.source == DatasetSource(
        name="mnist-mtl",
        root=os.path.abspath(tmp_path),
        seed=3,
        options=(("per_class", (5, 2)),),
        subsets=((60, None, 1),),
    )
    rebuilt = dataset.source.build()
    assert rebuilt.fingerprint() == dataset.fingerprint()
    assert torch.equal(rebuilt.train.inputs_NCHW, dataset.train.inputs_NCHW)
    # a changed dataset is no longer what its source builds: replace() drops the source
    assert dataclasses.replace(dataset, mean=(0.5,)).source is None
    assert dataset.self_contained().source is None and dataset.self_contained().train is dataset.train


def test_an_env_rebuilds_its_dataset_from_the_files(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path)
    expected = subsample(
        load_dataset("mnist-mtl", root=tmp_path, seed=3, per_class=[5, 2]), max_train=60, seed=1
    )
    expected = expected.self_contained()  # pickling it would share it with the load below
    env = pickle.loads(_pickled_env(tmp_path))
    assert env.dataset.fingerprint() == expected.fingerprint()
    assert len(env.dataset.train) == 60


def test_files_changed_on_disk_are_refused_on_unpickling(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path, seed=0)
    blob = _pickled_env(tmp_path)
    write_mnist(tmp_path, seed=1)  # other pixels, same sizes
    with pytest.raises(
        DatasetMismatchError, match=r"'mnist-mtl' was pickled by reference .* changed on disk"
    ) as err:
        pickle.loads(blob)
    assert "train.inputs_NCHW" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_files_gone_are_named_on_unpickling(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path)
    blob = _pickled_env(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte"):
        pickle.loads(blob)


def test_a_self_contained_copy_pickles_with_its_data(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path)
    dataset = load_dataset("mnist-mtl", root=tmp_path, per_class=(5, 2)).self_contained()
    blob = pickle.dumps(dataset)
    assert dataset.train.inputs_NCHW[7].numpy().tobytes() in blob
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").unlink()  # not read again
    loaded = pickle.loads(blob)
    assert loaded.source is None and torch.equal(loaded.test.inputs_NCHW, dataset.test.inputs_NCHW)
