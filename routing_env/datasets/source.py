"""Pickling a dataset built by name as the recipe that rebuilds it, not as its tensors.

A dataset from :func:`~routing_env.datasets.load_dataset` (and any
:func:`~routing_env.datasets.subsample` of one) records a :class:`DatasetSource`: the
name, resolved data root, seed and builder options, and the subsets taken since. Such a
dataset pickles as that source plus its :meth:`~routing_env.datasets.MultiTaskDataset.fingerprint`
(shapes, dtypes and a checksum of every tensor), so an env sent to a subprocess (a
vector env, a Ray worker) carries kilobytes instead of the data. Unpickling rebuilds
the dataset once per process and shares it between every copy unpickled there; a
rebuilt dataset whose fingerprint differs (the files on disk changed, another data
root) raises :class:`DatasetMismatchError` instead of training on other data.

A dataset built any other way (by hand, or changed with ``dataclasses.replace``) has no
source and pickles with its tensors, as before.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routing_env.datasets.base import MultiTaskDataset

__all__ = ["DatasetMismatchError", "DatasetSource", "rebuild_dataset"]


class DatasetMismatchError(ValueError):
    """A dataset rebuilt from its source is not the dataset that was pickled."""


@dataclass(frozen=True)
class DatasetSource:
    """How a dataset was built: :func:`~routing_env.datasets.load_dataset`'s arguments, then subsets.

    Attributes:
        name: The registered name (one of :data:`~routing_env.datasets.DATASET_NAMES`).
        root: The data root as resolved when the dataset was built (an absolute path;
            None for digits-MTL, which reads no files).
        seed: The builder's seed.
        options: The builder's further keyword arguments, as sorted ``(key, value)`` pairs.
        subsets: The :func:`~routing_env.datasets.subsample` calls applied since, in
            order, as ``(max_train, max_test, seed)``, and the
            :func:`~routing_env.datasets.split_validation` call as ``("validation", fraction, seed)``.
    """

    name: str
    root: str | None
    seed: int
    options: tuple[tuple[str, Any], ...] = ()
    subsets: tuple[tuple[Any, ...], ...] = ()

    @classmethod
    def of_load(
        cls, name: str, *, root: str | os.PathLike[str] | None, seed: int, options: dict[str, Any]
    ) -> DatasetSource | None:
        """The source of ``load_dataset(name, root=root, seed=seed, **options)``.

        None when an option is of a kind that cannot serve as a key (the dataset then
        pickles with its data).
        """
        from routing_env.datasets.storage import resolve_root

        resolved = None if name == "digits-mtl" else os.path.abspath(resolve_root(root))
        frozen = tuple(sorted((k, _frozen(v)) for k, v in options.items()))
        source = cls(name=name, root=resolved, seed=int(seed), options=frozen)
        try:
            hash(source)
        except TypeError:
            return None
        return source

    def with_subset(self, max_train: int | None, max_test: int | None, seed: int) -> DatasetSource:
        """This source followed by ``subsample(..., max_train=, max_test=, seed=)``."""
        return DatasetSource(
            name=self.name,
            root=self.root,
            seed=self.seed,
            options=self.options,
            subsets=(*self.subsets, (max_train, max_test, int(seed))),
        )

    def with_validation(self, fraction: float, seed: int) -> DatasetSource:
        """This source followed by ``split_validation(..., fraction, seed=seed)``."""
        return DatasetSource(
            name=self.name,
            root=self.root,
            seed=self.seed,
            options=self.options,
            subsets=(*self.subsets, ("validation", float(fraction), int(seed))),
        )

    def build(self) -> MultiTaskDataset:
        """Build the dataset again (reading its files; nothing is downloaded)."""
        from routing_env.datasets.registry import load_dataset
        from routing_env.datasets.subsample import split_validation, subsample

        dataset = load_dataset(self.name, root=self.root, seed=self.seed, **dict(self.options))
        for step in self.subsets:
            if step[0] == "validation":
                dataset = split_validation(dataset, step[1], seed=step[2])
            else:
                max_train, max_test, seed = step
                dataset = subsample(dataset, max_train=max_train, max_test=max_test, seed=seed)
        return dataset


def _frozen(value: Any) -> Any:
    """Lists (e.g. ``per_class=[550, 50]``) as tuples, so that a source can be a key."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


# One dataset per (source, fingerprint) in a process: every env unpickled here shares it,
# and so does the original when the pickle is loaded in the process that wrote it. Held
# weakly, so the data is freed with the last env that uses it.
_shared: weakref.WeakValueDictionary[tuple[DatasetSource, str], MultiTaskDataset] = (
    weakref.WeakValueDictionary()
)
_lock = threading.Lock()


def _key(source: DatasetSource, fingerprint: dict[str, Any]) -> tuple[DatasetSource, str]:
    return source, repr(sorted(fingerprint.items()))


def share(source: DatasetSource, fingerprint: dict[str, Any], dataset: MultiTaskDataset) -> None:
    """Record ``dataset`` as the one that ``(source, fingerprint)`` rebuilds in this process."""
    with _lock:
        _shared.setdefault(_key(source, fingerprint), dataset)


def rebuild_dataset(source: DatasetSource, fingerprint: dict[str, Any]) -> MultiTaskDataset:
    """The dataset of ``source`` whose fingerprint is ``fingerprint`` (what unpickling calls).

    Returns the one already in this process when there is one, else builds it from
    ``source`` and checks its fingerprint.

    Raises:
        DatasetMismatchError: When the rebuilt dataset differs from the pickled one,
            naming what differs.
        DatasetNotFoundError: When the dataset's files are no longer there.
    """
    key = _key(source, fingerprint)
    with _lock:
        dataset = _shared.get(key)
    if dataset is not None:
        return dataset
    dataset = source.build()
    rebuilt = dataset.fingerprint()
    differ = [
        f"{k}: pickled {fingerprint.get(k)!r}, rebuilt {rebuilt.get(k)!r}"
        for k in sorted(set(fingerprint) | set(rebuilt))
        if fingerprint.get(k) != rebuilt.get(k)
    ]
    if differ:
        raise DatasetMismatchError(
            f"dataset {source.name!r} was pickled by reference (rebuilt from {source}) but the rebuilt "
            f"dataset is not the one pickled; its files changed on disk since, or the data root differs: "
            f"{'; '.join(differ)}. Restore the files, or pickle `dataset.self_contained()` (it carries its data)"
        )
    with _lock:
        return _shared.setdefault(key, dataset)
