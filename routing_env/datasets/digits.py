"""digits-MTL: the paper's MNIST-MTL construction on scikit-learn's bundled 8x8 digits.

Needs no download, so it is the offline default for tests and the main job.
"""

from __future__ import annotations

import numpy as np
import torch

from routing_env.datasets.base import MultiTaskDataset, TaskSplit

__all__ = ["digits_mtl"]


def digits_mtl(*, seed: int = 0, test_fraction: float = 0.2) -> MultiTaskDataset:
    """Build digits-MTL: 10 binary one-vs-rest tasks, like MNIST-MTL (paper section 4).

    The 1,797 8x8 images of ``sklearn.datasets.load_digits`` are split once into train
    and test images, stratified by digit (``test_fraction`` of each digit to test).
    Task ``c`` asks "is this digit ``c``?": every image of a split appears once in
    every task, labelled 1 when its digit is ``c`` and 0 otherwise. As in MNIST-MTL,
    each task then has its positives and the same number of images of each of the 9
    other digits, so about 10% of each task's samples are positive, in train and test
    alike: the majority-class rate is about 90%, the paper's "random baseline".

    Sizes with the default ``test_fraction=0.2``: 1,438 train and 359 test images,
    i.e. 14,380 train and 3,590 test samples over the 10 tasks.

    Inputs are ``uint8`` 1x8x8 images (the 0..16 gray levels scaled to 0..255),
    normalized with the train split's mean and standard deviation.

    Args:
        seed: Seed of the train/test split.
        test_fraction: Fraction of each digit's images held out for test, in (0, 1).

    Raises:
        ValueError: If ``test_fraction`` is not in (0, 1).
        ImportError: If scikit-learn (a dependency of routing-env) is not installed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a core dependency
        raise ImportError(
            "digits-MTL needs scikit-learn, a dependency of routing-env that is not installed here; "
            "reinstall routing-env (pip install routing-env) or: pip install 'scikit-learn>=1.3'"
        ) from err

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # N x 8 x 8
    digit = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(digit == c))
        n_test = max(1, int(round(test_fraction * len(idx))))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])

    def split(image_idx: np.ndarray) -> TaskSplit:
        image_idx = np.sort(image_idx)
        n = len(image_idx)
        # every image once per task: task-major order
        inputs = np.tile(images[image_idx][:, None], (10, 1, 1, 1))
        tasks = np.repeat(np.arange(10, dtype=np.int64), n)
        targets = (np.tile(digit[image_idx], 10) == tasks).astype(np.int64)
        return TaskSplit(
            inputs_NCHW=torch.from_numpy(inputs),
            tasks_N=torch.from_numpy(tasks),
            targets_N=torch.from_numpy(targets),
        )

    train = split(np.concatenate(train_idx))
    test = split(np.concatenate(test_idx))
    scaled = images[np.concatenate(train_idx)].astype(np.float64) / 255.0
    return MultiTaskDataset(
        name="digits-mtl",
        train=train,
        test=test,
        num_classes=(2,) * 10,
        mean=(float(scaled.mean()),),
        std=(float(scaled.std()),),
        task_names=tuple(f"{c}-vs-rest" for c in range(10)),
    )
