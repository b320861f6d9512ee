"""The training scripts' command line: a typed ``Args`` dataclass parsed by tyro.

:func:`parse_args` turns a dataclass into a command line (CleanRL's ``Args`` style):
field ``num_epochs: int = 3`` becomes ``--num-epochs``, a ``bool`` field ``--flag`` /
``--no-flag``, a ``Literal`` field offers its choices, an ``X | None`` field also takes
``none``, and the docstring under each field is its ``--help`` text.
:class:`DatasetOptions` are the dataset options every script shares, and
:func:`load_run_dataset` loads what they ask for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import tyro

from routing_env.datasets.base import MultiTaskDataset
from routing_env.datasets.registry import DatasetName, load_dataset
from routing_env.datasets.source import DatasetMismatchError
from routing_env.datasets.storage import DatasetNotFoundError
from routing_env.datasets.subsample import split_validation, subsample
from routing_env.experiments._files import DamagedFileError
from routing_env.experiments.runs import RunInUseError
from routing_env.extras import MissingExtraError

__all__ = [
    "DatasetName",
    "DatasetOptions",
    "DataMismatchError",
    "check_block_training",
    "check_data_fingerprint",
    "check_number",
    "check_seed",
    "data_fingerprint",
    "dataset_sizes",
    "load_run_dataset",
    "parse_args",
    "parse_per_class",
    "run_script",
    "user_error_message",
]

T = TypeVar("T")


def _optional_flags(cls: type) -> set[str]:
    """The flags of ``cls``'s fields whose type admits None."""
    hints = typing.get_type_hints(cls)
    flags = set()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):
            flags.add("--" + f.name.replace("_", "-"))
    return flags


def _none_as_tyro_reads_it(argv: Sequence[str], optional: set[str]) -> list[str]:
    """``--flag none`` (any case) as ``--flag None``: the scripts have always taken ``none``,
    tyro reads only ``None`` (and a ``str | None`` field would keep the word ``none``)."""
    out = list(argv)
    for i, token in enumerate(out):
        name, eq, value = token.partition("=")
        if eq and name in optional and value.lower() == "none":
            out[i] = f"{name}=None"
        elif not eq and i > 0 and out[i - 1] in optional and token.lower() == "none":
            out[i] = "None"
    return out


def parse_args(cls: type[T], argv: Sequence[str] | None = None, *, description: str | None = None) -> T:
    """Parse ``argv`` (default ``sys.argv[1:]``) into an instance of the dataclass ``cls``.

    The command line is tyro's (``tyro.cli``); the description defaults to the class
    docstring. Errors in the values (wrong type, a choice not offered, a ``ValueError``
    raised by the dataclass's ``__post_init__``) exit with status 2 and a message.

    Raises:
        TypeError: When ``cls`` is not a dataclass type.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"parse_args needs a dataclass type, got {cls!r}")
    args = sys.argv[1:] if argv is None else argv
    return tyro.cli(cls, args=_none_as_tyro_reads_it(args, _optional_flags(cls)), description=description)


class DataMismatchError(ValueError):
    """A run resumed on data other than the data it was trained on."""


def data_fingerprint(dataset: MultiTaskDataset) -> str:
    """A short digest of :meth:`MultiTaskDataset.fingerprint` (every split's tensors and the
    metadata): run configs and checkpoints record it, and a resume checks it."""
    text = repr(sorted(dataset.fingerprint().items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def check_data_fingerprint(checkpoint: Mapping[str, Any], dataset: MultiTaskDataset, *, run_dir: Any) -> None:
    """Refuse to resume a run on data that is not what it was trained on.

    A checkpoint written before fingerprints were recorded is not checked.

    Raises:
        DataMismatchError: Naming both fingerprints and both data roots.
    """
    recorded = checkpoint.get("data_fingerprint")
    if recorded is None:
        return
    now = data_fingerprint(dataset)
    if recorded != now:
        trained_on = checkpoint.get("config", {}).get("data_root")
        root = getattr(dataset.source, "root", None)
        raise DataMismatchError(
            f"--resume {run_dir}: the data loaded now (fingerprint {now}, data root {root}) is not the data "
            f"the run was trained on (fingerprint {recorded}, data root {trained_on}): the files changed, or "
            "--data-root points at other files. Nothing was changed. Pass the --data-root of the run's own "
            "data, or start a new run"
        )


def check_seed(flag: str, value: Any) -> None:
    """Refuse a seed outside ``[0, routing_env.MAX_SEED]`` (what the env accepts), naming ``flag``.

    Raises:
        ValueError: ``"--seed must be an int in [0, 9223372036854775807], got -5"``.
    """
    from routing_env.env import MAX_SEED

    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{flag} must be an int in [0, {MAX_SEED}] (2**63 - 1), got {value!r}")


def check_number(
    flag: str,
    value: float | None,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Refuse a number that is not finite or lies outside its range, naming ``flag`` (None passes).

    Raises:
        ValueError: e.g. ``"--lr must be a finite number > 0, got nan"``.
    """
    if value is None:
        return
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    wanted = f"a finite number {' and '.join(parts)}".rstrip()
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if not bad and low is not None:
        bad = value <= low if low_open else value < low
    if not bad and high is not None:
        bad = value >= high if high_open else value > high
    if bad:
        raise ValueError(f"{flag} must be {wanted}, got {value!r}")


def check_block_training(args: Any) -> None:
    """Check the block-training and network options both training scripts share (``--lr``,
    ``--momentum``, ``--weight-decay``, the schedule, the batch and the network's sizes).

    Raises:
        ValueError: Naming the first flag out of its range.
    """
    check_number("--lr", args.lr, low=0, low_open=True)
    check_number("--momentum", args.momentum, low=0, high=1, high_open=True)
    check_number("--weight-decay", args.weight_decay, low=0)
    check_number("--lr-decay-factor", args.lr_decay_factor, low=0, high=1, low_open=True)
    for flag, count in (
        ("--batch-size", args.batch_size),
        ("--lr-decay-every", args.lr_decay_every),
        ("--hidden-width", args.hidden_width),
        ("--conv-layers", args.conv_layers),
        ("--blocks-per-layer", args.blocks_per_layer),
    ):
        if count is not None and count < 1:
            raise ValueError(f"{flag} must be >= 1, got {count}")


def dataset_sizes(dataset: MultiTaskDataset) -> dict[str, int]:
    """Samples per split (``train``, ``test`` and, when there is one, ``validation``), for a run's config."""
    return {name: len(split) for name, split in dataset.splits().items()}


#: What a script's user can fix from the command line: reported in one message, with no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    DamagedFileError,
    DataMismatchError,
    DatasetNotFoundError,
    DatasetMismatchError,
    MissingExtraError,
    RunInUseError,
    FileExistsError,
)


def user_error_message(err: BaseException) -> str:
    """What a script prints for a user's error: the problem, and the fix in the script's own flags."""
    if isinstance(err, DatasetNotFoundError) and err.folder:
        fetch = "pass --download to fetch it into --data-root, or " if err.downloadable else ""
        return (
            f"error: {err.summary}\n"
            f"fix: {fetch}pass --data-root DIR, a folder holding {err.folder}/ "
            "(default: $ROUTING_ENV_DATA, else ~/.cache/routing_env)"
        )
    return f"error: {err}"


def run_script(main: Callable[[T], Any], cls: type[T], argv: Sequence[str] | None = None) -> Any:
    """Parse the command line into ``cls`` and call ``main`` with it, as every training script does.

    A bad option exits with status 2 and tyro's message; so does an error the user can
    fix (a missing dataset, a missing extra, a run folder in use or not empty), with one
    message naming the fix in the script's flags and no traceback. A new run that fails
    before it has written anything leaves no run folder (:meth:`RunFolder.close`).
    """
    args = parse_args(cls, argv)
    try:
        return main(args)
    except USER_ERRORS as err:
        print(user_error_message(err), file=sys.stderr)
        raise SystemExit(2) from None


def parse_per_class(text: str) -> tuple[int, int]:
    """``"550,50"`` as ``(550, 50)``: MIN-MTL's training and test images per class.

    Raises:
        ValueError: When ``text`` is not two positive ints separated by a comma.
    """
    try:
        train, test = (int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"expected 'TRAIN,TEST' images per class, e.g. '550,50', got {text!r}") from None
    if train < 1 or test < 1:
        raise ValueError(f"images per class must be positive, got {text!r}")
    return train, test


@dataclasses.dataclass
class DatasetOptions:
    """The dataset options every training script takes; :func:`load_run_dataset` reads them.

    A script's ``Args`` dataclass subclasses this (and may redefine a field to change its
    default or help text), so the options have the same names, types and defaults everywhere.
    """

    dataset: DatasetName = "digits-mtl"
    """multi-task dataset; digits-mtl ships with scikit-learn (offline), the others are read from --data-root"""
    data_root: str | None = None
    """folder holding the datasets (torchvision layout); default $ROUTING_ENV_DATA, else ~/.cache/routing_env"""
    download: bool = False
    """download MNIST / CIFAR-100 into --data-root if missing"""
    data_seed: int = 0
    """seed of the dataset's train/test construction and of the subsets below (kept fixed across run seeds)"""
    max_train_samples: int | None = None
    """train on a per-task stratified subset of at most this many samples (none: all)"""
    max_test_samples: int | None = None
    """evaluate on a per-task stratified subset of at most this many test samples (none: all)"""
    min_per_class: str | None = None
    """MIN-MTL only: TRAIN,TEST images per class (none: the paper's 800,50; the standard mini-ImageNet files need e.g. 550,50)"""
    validation_fraction: float | None = None
    """share of the training images set aside as a validation split, stratified per task and class and drawn with --data-seed, in (0, 0.5] (none: no validation split); hyper-parameters are chosen on it, never on the test split"""

    def __post_init__(self) -> None:
        check_seed("--data-seed", self.data_seed)
        fraction = self.validation_fraction
        if fraction is not None and not (isinstance(fraction, (int, float)) and 0.0 < fraction <= 0.5):
            raise ValueError(f"--validation-fraction must be in (0, 0.5] or none, got {fraction}")


def load_run_dataset(args: DatasetOptions) -> MultiTaskDataset:
    """The dataset a training script's ``args`` ask for, with its validation split and subsets.

    The validation split (``validation_fraction``) is carved from the whole training
    split first; ``max_train_samples`` then subsets what remains for training.

    Reads the fields of :class:`DatasetOptions`; ``min_per_class`` (``"TRAIN,TEST"``
    images per class) applies to MIN-MTL only: the paper's 800 + 50 need more images
    than the 600 per class of the standard mini-ImageNet files, which take e.g. ``"550,50"``.
    """
    options: dict[str, Any] = {}
    per_class = args.min_per_class
    if per_class is not None and args.dataset == "min-mtl":
        options["per_class"] = parse_per_class(per_class) if isinstance(per_class, str) else tuple(per_class)
    dataset = load_dataset(
        args.dataset, root=args.data_root, seed=args.data_seed, download=args.download, **options
    )
    fraction = getattr(args, "validation_fraction", None)
    if fraction is not None:  # carved from the whole training split, before any subset of it
        try:
            dataset = split_validation(dataset, fraction, seed=args.data_seed)
        except ValueError as err:
            raise ValueError(f"--validation-fraction: {err}") from None
    return subsample(
        dataset, max_train=args.max_train_samples, max_test=args.max_test_samples, seed=args.data_seed
    )
