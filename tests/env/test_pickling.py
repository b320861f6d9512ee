"""Pickling an env stores a named dataset by reference, every trained state by value (issue 16).

A dataset from ``load_dataset`` (and its ``subsample``) pickles as its recipe plus a
fingerprint and is rebuilt on unpickling; a copy must still continue bit-identically
(issue 18). File-level faults (data changed on disk) are in
tests/datasets/test_dataset_pickling.py.
"""

from __future__ import annotations

import copy
import gc
import pickle
import weakref

import numpy as np
import pytest
import torch

import routing_env
from routing_env.datasets import load_dataset, subsample

from .test_faults import drive, same_weights, weights


def named_small():
    return subsample(load_dataset("digits-mtl", seed=0), max_train=400, max_test=50, seed=0)


def same_data(a, b):
    return (a.num_classes, a.mean, a.std, a.task_names) == (
        b.num_classes,
        b.mean,
        b.std,
        b.task_names,
    ) and all(
        torch.equal(getattr(getattr(a, split), part), getattr(getattr(b, split), part))
        for split in ("train", "test")
        for part in ("inputs_NCHW", "tasks_N", "targets_N")
    )


def data_bytes(dataset):
    return sum(
        t.numel() * t.element_size()
        for split in (dataset.train, dataset.test)
        for t in (split.inputs_NCHW, split.tasks_N, split.targets_N)
    )


@pytest.mark.parametrize("make", [routing_env.env, routing_env.batched_env], ids=["aec", "batched"])
def test_an_env_on_a_named_dataset_pickles_without_the_data(make):
    named = load_dataset("digits-mtl", seed=0)
    by_reference = make(dataset=named)
    by_value = make(dataset=named.self_contained())
    for env in (by_reference, by_value):
        env.reset(seed=0)
    small, large = len(pickle.dumps(by_reference)), len(pickle.dumps(by_value))
    # the same env but for the dataset's tensors (1.4 MB of digits-MTL)
    assert large - small > 0.95 * data_bytes(named)
    clone = pickle.loads(pickle.dumps(by_reference))
    assert (
        getattr(clone, "unwrapped", clone).dataset is named
    )  # loaded in the same process: shared, not rebuilt


def test_a_copy_unpickled_on_a_rebuilt_dataset_continues_bit_identically():
    """The pickled env's dataset is gone before loading, so it is rebuilt from its files;
    the clone then trains exactly like a twin env that never left."""
    kwargs = {"batch_size": 16, "collaboration_reward": 0.2, "preset": "paper", "momentum": 0.9}
    original_data = named_small()
    original = routing_env.env(dataset=original_data, **kwargs)
    twin = routing_env.env(dataset=named_small(), **kwargs)  # same recipe, its own tensors
    for env in (original, twin):
        env.reset(seed=1)
        drive(env, np.random.default_rng(0), 17)  # a sample of the first minibatch in flight
    blob = pickle.dumps(original)
    gone = weakref.ref(original_data)
    del original, original_data
    gc.collect()
    assert gone() is None  # nothing left to share: loading must rebuild the dataset
    clone = pickle.loads(blob)
    assert clone.unwrapped.dataset is not twin.unwrapped.dataset
    assert same_data(clone.unwrapped.dataset, twin.unwrapped.dataset)
    a = drive(twin, np.random.default_rng(1), 1000)
    b = drive(clone, np.random.default_rng(1), 1000)
    assert a == b
    assert twin.unwrapped.engine.updates == clone.unwrapped.engine.updates >= 4
    assert same_weights(weights(twin), weights(clone)) == []


def test_envs_unpickled_in_one_process_share_one_dataset():
    env = routing_env.env(dataset=named_small())
    env.reset(seed=0)
    blob = pickle.dumps(env)
    del env
    gc.collect()
    first, second = pickle.loads(blob), pickle.loads(blob)
    assert first.unwrapped.dataset is second.unwrapped.dataset
    assert first.unwrapped.engine.dataset is first.unwrapped.dataset
    assert first.unwrapped.network is not second.unwrapped.network  # the trained state is each its own


def test_a_dataset_passed_directly_pickles_with_its_data(digits):
    small = subsample(digits, max_train=200, max_test=30, seed=0)  # digits_mtl(): not built by name
    assert small.source is None
    env = routing_env.env(dataset=small)
    env.reset(seed=0)
    blob = pickle.dumps(env)
    assert len(blob) > data_bytes(small)
    clone = pickle.loads(blob)
    assert clone.unwrapped.dataset is not small
    assert same_data(clone.unwrapped.dataset, small)  # the same tensors, carried in the pickle
    a = drive(env, np.random.default_rng(3), 200)
    b = drive(clone, np.random.default_rng(3), 200)
    assert a == b and same_weights(weights(env), weights(clone)) == []


def test_a_deep_copy_shares_the_dataset_and_copies_the_trained_state():
    env = routing_env.env(dataset=named_small(), batch_size=8)
    env.reset(seed=0)
    drive(env, np.random.default_rng(0), 40)
    clone = copy.deepcopy(env)
    assert clone.unwrapped.dataset is env.unwrapped.dataset
    assert clone.unwrapped.engine.dataset is env.unwrapped.dataset
    assert clone.unwrapped.network is not env.unwrapped.network
    assert clone.unwrapped.engine.optimizer is not env.unwrapped.engine.optimizer
    # a deep copy of the dataset alone copies its tensors
    alone = copy.deepcopy(env.unwrapped.dataset)
    assert alone.train.inputs_NCHW.data_ptr() != env.unwrapped.dataset.train.inputs_NCHW.data_ptr()
    assert same_data(alone, env.unwrapped.dataset) and alone.source == env.unwrapped.dataset.source
