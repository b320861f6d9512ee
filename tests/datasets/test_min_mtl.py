"""MIN-MTL: class draws, task sizes and the three on-disk layouts, on small fixtures."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from routing_env.datasets import DatasetNotFoundError, MultiTaskDataset, min_mtl
from routing_env.datasets.mini_imagenet import MIN_FOLDER

LAYOUTS = ["pickle", "csv", "folders"]


def _check_tasks(ds: MultiTaskDataset, n_train: int, n_test: int) -> None:
    assert ds.name == "min-mtl"
    assert ds.num_tasks == 10 and ds.num_classes == (5,) * 10
    assert ds.input_shape == (3, 84, 84) and len(ds.mean) == 3
    classes = [name for names in ds.class_names for name in names]
    assert len(set(classes)) == 50  # 10 disjoint tasks of 5 labels
    assert all(list(names) == sorted(names) for names in ds.class_names)
    for split, n in ((ds.train, n_train), (ds.test, n_test)):
        assert len(split) == 50 * n and split.inputs_NCHW.dtype == torch.uint8
        for task in range(10):
            labels = split.targets_N[split.tasks_N == task]
            assert torch.bincount(labels, minlength=5).tolist() == [n] * 5


def _check_images_match_labels(ds: MultiTaskDataset, *, tolerance: int) -> None:
    """The fixture's red level is 4 x class index and its green level 3 x image index."""
    for split in (ds.train, ds.test):
        red = split.inputs_NCHW[:, 0].float().mean(dim=(1, 2))
        names = [
            ds.class_names[t][k]
            for t, k in zip(split.tasks_N.tolist(), split.targets_N.tolist(), strict=True)
        ]
        expected = torch.tensor([4.0 * (int(name[1:]) - 1000) for name in names])
        assert float((red - expected).abs().max()) <= tolerance
    # train and test images of a class are different images
    for t in range(10):
        for k in range(5):
            green = {
                split_name: set(
                    (s.inputs_NCHW[(s.tasks_N == t) & (s.targets_N == k), 1].float().mean(dim=(1, 2)) / 3)
                    .round()
                    .int()
                    .tolist()
                )
                for split_name, s in (("train", ds.train), ("test", ds.test))
            }
            assert not green["train"] & green["test"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_give_paper_structure(tmp_path: Path, write_min, layout: str) -> None:
    write_min(tmp_path, layout, num_classes=55, per_class=4)
    ds = min_mtl(root=tmp_path, per_class=(3, 1))
    _check_tasks(ds, n_train=3, n_test=1)
    _check_images_match_labels(ds, tolerance=0 if layout == "pickle" else 2)


def test_layouts_agree_on_the_draw(tmp_path: Path, write_min) -> None:
    draws = []
    for layout in ("pickle", "folders"):
        write_min(tmp_path / layout, layout, num_classes=52, per_class=3)
        draws.append(min_mtl(root=tmp_path / layout, seed=3, per_class=(2, 1)).class_names)
    assert draws[0] == draws[1]


def test_images_are_resized_to_84(tmp_path: Path, write_min) -> None:
    write_min(tmp_path, "folders", num_classes=50, per_class=2, side=100)
    ds = min_mtl(root=tmp_path, per_class=(1, 1))
    assert ds.input_shape == (3, 84, 84)
    _check_images_match_labels(ds, tolerance=2)


def test_same_seed_same_tensors_other_seed_other_draw(tmp_path: Path, write_min) -> None:
    write_min(tmp_path, "pickle", num_classes=60, per_class=5)
    a, b = (min_mtl(root=tmp_path, seed=11, per_class=(3, 1)) for _ in range(2))
    c = min_mtl(root=tmp_path, seed=12, per_class=(3, 1))
    for split in ("train", "test"):
        sa, sb = getattr(a, split), getattr(b, split)
        assert torch.equal(sa.inputs_NCHW, sb.inputs_NCHW) and torch.equal(sa.targets_N, sb.targets_N)
    assert a.class_names == b.class_names and a.mean == b.mean
    assert c.class_names != a.class_names
    assert not torch.equal(c.train.inputs_NCHW, a.train.inputs_NCHW)


def test_too_few_images_per_class_says_what_to_pass(tmp_path: Path, write_min) -> None:
    write_min(tmp_path, "pickle", num_classes=50, per_class=4)
    with pytest.raises(ValueError, match=r"has 4 images; per_class=\(800, 50\) needs 850"):
        min_mtl(root=tmp_path)


def test_too_few_classes(tmp_path: Path, write_min) -> None:
    write_min(tmp_path, "pickle", num_classes=49, per_class=2)
    with pytest.raises(ValueError, match="found 49 classes"):
        min_mtl(root=tmp_path, per_class=(1, 1))


def test_missing_root_names_the_expected_layouts(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        min_mtl(root=tmp_path / "nothing")
    message = str(info.value)
    folder = tmp_path / "nothing" / MIN_FOLDER
    assert f"{folder}/mini-imagenet-cache-{{train,val,test}}.pkl" in message
    assert f"{folder}/{{train,val,test}}.csv" in message
    assert f"{folder}/{{train,val,test}}/<class_name>/*.jpg" in message
    assert "cannot be downloaded" in message and "ROUTING_ENV_DATA" in message
    assert not (tmp_path / "nothing").exists()


def test_corrupt_pickle_is_reported(tmp_path: Path, write_min) -> None:
    write_min(tmp_path, "pickle", num_classes=50, per_class=2)
    path = tmp_path / MIN_FOLDER / "mini-imagenet-cache-val.pkl"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetNotFoundError, match="mini-imagenet-cache-val.pkl is not a readable pickle"):
        min_mtl(root=tmp_path, per_class=(1, 1))


def test_pickle_with_wrong_image_shape_is_reported(tmp_path: Path, write_min) -> None:
    write_min(tmp_path, "pickle", num_classes=50, per_class=2)
    path = tmp_path / MIN_FOLDER / "mini-imagenet-cache-test.pkl"
    with open(path, "rb") as f:
        entry = pickle.load(f)
    entry["image_data"] = entry["image_data"][:, :32, :32]
    with open(path, "wb") as f:
        pickle.dump(entry, f)
    with pytest.raises(DatasetNotFoundError, match="expected N x 84 x 84 x 3 uint8"):
        min_mtl(root=tmp_path, per_class=(1, 1))


def test_missing_image_of_csv_layout_is_reported(tmp_path: Path, write_min) -> None:
    write_min(tmp_path, "csv", num_classes=50, per_class=2)
    victim = sorted((tmp_path / MIN_FOLDER / "images").iterdir())[0]
    victim.unlink()
    with pytest.raises(DatasetNotFoundError, match=f"cannot decode {victim}"):
        min_mtl(root=tmp_path, per_class=(1, 1))


def test_csv_without_header_is_reported(tmp_path: Path, write_min) -> None:
    write_min(tmp_path, "csv", num_classes=50, per_class=2)
    path = tmp_path / MIN_FOLDER / "train.csv"
    path.write_text("\n".join(path.read_text().splitlines()[1:]))
    with pytest.raises(DatasetNotFoundError, match="train.csv: expected a 'filename,label' header"):
        min_mtl(root=tmp_path, per_class=(1, 1))


@pytest.mark.data
def test_real_mini_imagenet(real_root: Path) -> None:
    folder = real_root / MIN_FOLDER
    if not folder.is_dir():
        pytest.skip(f"mini-ImageNet not under ROUTING_ENV_DATA={real_root} (expected {MIN_FOLDER}/)")
    # the standard files have 600 images per class, fewer than the paper's 800 + 50
    ds = min_mtl(root=real_root, per_class=(550, 50))
    _check_tasks(ds, n_train=550, n_test=50)
    assert len(ds.test) == 2_500  # Table 1
    assert np.all(np.array(ds.mean) > 0.3) and np.all(np.array(ds.mean) < 0.6)
