"""split_validation: a validation split carved from the training data, by input, stratified and seeded."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from routing_env import RoutingEnv
from routing_env.datasets import MultiTaskDataset, TaskSplit, load_dataset, split_validation, subsample
from routing_env.datasets.source import DatasetSource
from routing_env.experiments import DatasetOptions, load_run_dataset


def _images(split: TaskSplit) -> set[bytes]:
    return {x.numpy().tobytes() for x in split.inputs_NCHW}


def test_the_split_is_disjoint_by_image_and_stratified(digits) -> None:
    carved = split_validation(digits, 0.2, seed=0)
    assert carved.validation is not None
    # every row goes to one side; no image is on both (one-vs-rest data hold each image once per task)
    assert len(carved.train) + len(carved.validation) == len(digits.train)
    assert not _images(carved.train) & _images(carved.validation)
    # each task and each label keeps about its share (the images are drawn per class)
    for t in range(digits.num_tasks):
        for label in (0, 1):
            total = int(((digits.train.tasks_N == t) & (digits.train.targets_N == label)).sum())
            held = int(((carved.validation.tasks_N == t) & (carved.validation.targets_N == label)).sum())
            assert abs(held - 0.2 * total) <= 0.02 * total + 1
    # the test split and the statistics are untouched
    assert carved.test is digits.test and carved.mean == digits.mean and carved.std == digits.std


def test_the_seed_fixes_the_split(digits) -> None:
    a, b, c = (split_validation(digits, 0.1, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.validation.inputs_NCHW, b.validation.inputs_NCHW)
    assert not torch.equal(a.validation.inputs_NCHW, c.validation.inputs_NCHW)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 0.51, 1.0, float("nan"), True])
def test_a_fraction_outside_its_range_is_refused(digits, fraction) -> None:
    with pytest.raises(ValueError, match=r"validation fraction must be in \(0, 0.5\]"):
        split_validation(digits, fraction)


def test_a_fraction_that_leaves_a_task_without_validation_samples_names_it() -> None:
    """Task 1 has 3 inputs: a tenth of them rounds to none."""
    inputs = torch.arange(13, dtype=torch.uint8).view(13, 1, 1, 1).expand(13, 1, 2, 2).contiguous()
    tasks = torch.tensor([0] * 10 + [1] * 3)
    small = MultiTaskDataset(
        name="small",
        train=TaskSplit(inputs, tasks, torch.zeros(13, dtype=torch.int64)),
        test=TaskSplit(inputs[:2], torch.tensor([0, 1]), torch.zeros(2, dtype=torch.int64)),
        num_classes=(2, 2),
        mean=(0.5,),
        std=(0.25,),
        task_names=("big", "tiny"),
    )
    with pytest.raises(
        ValueError, match=r"leaves task 1 \(tiny\) .* no validation sample .* larger fraction"
    ):
        split_validation(small, 0.1)
    assert len(split_validation(small, 0.5).validation) == 7  # 5 of task 0, 2 of task 1 (rounded)


def test_the_fingerprint_and_the_pickle_carry_the_validation_split(tmp_path: Path, write_mnist) -> None:
    write_mnist(tmp_path)
    loaded = load_dataset("mnist-mtl", root=tmp_path, seed=3, per_class=[5, 2])
    dataset = subsample(split_validation(loaded, 0.2, seed=4), max_train=40, seed=1)
    assert dataset.source == DatasetSource(
        name="mnist-mtl",
        root=os.path.abspath(tmp_path),
        seed=3,
        options=(("per_class", (5, 2)),),
        subsets=(("validation", 0.2, 4), (40, None, 1)),
    )
    assert "validation.inputs_NCHW" in dataset.fingerprint()
    assert "validation.inputs_NCHW" not in loaded.fingerprint()  # a dataset without one is as before
    rebuilt = dataset.source.build()
    assert rebuilt.fingerprint() == dataset.fingerprint()
    env = pickle.loads(pickle.dumps(RoutingEnv(dataset=dataset, hidden_width=8)))
    assert torch.equal(env.dataset.validation.inputs_NCHW, dataset.validation.inputs_NCHW)


def test_the_scripts_carve_it_before_the_training_subset(digits) -> None:
    args = DatasetOptions(dataset="digits-mtl", validation_fraction=0.1, max_train_samples=200)
    dataset = load_run_dataset(args)
    assert len(dataset.train) == 200
    assert len(dataset.validation) == len(split_validation(digits, 0.1).validation)
    assert load_run_dataset(DatasetOptions(dataset="digits-mtl")).validation is None


def test_the_env_evaluates_the_validation_split(digits) -> None:
    dataset = split_validation(subsample(digits, max_train=300, max_test=50), 0.2)
    env = RoutingEnv(dataset=dataset, hidden_width=8)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for split, size in (("validation", len(dataset.validation)), ("test", 50)):
        env.reset(options={"mode": "eval", "split": split})
        while not env.eval_pass_complete:
            for _ in env.agent_iter():
                obs, _, terminated, truncated, _ = env.last()
                env.step(
                    None if terminated or truncated else int(rng.choice(np.flatnonzero(obs["action_mask"])))
                )
            if not env.eval_pass_complete:
                env.reset()
        assert env.evaluation()["samples"] == size and env.evaluation()["complete"]
    with pytest.raises(ValueError, match="pass it with 'mode': 'eval'"):
        env.reset(options={"mode": "train", "split": "validation"})
    with pytest.raises(ValueError, match="'test' or 'validation'"):
        env.reset(options={"mode": "eval", "split": "train"})
    plain = RoutingEnv(dataset=subsample(digits, max_train=100, max_test=20), hidden_width=8)
    plain.reset(seed=0)
    with pytest.raises(ValueError, match="has no validation split"):
        plain.reset(options={"mode": "eval", "split": "validation"})
