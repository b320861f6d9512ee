"""Checkpoints that load with ``weights_only=True``, and the global generators' state.

:func:`save_checkpoint` writes atomically (temp file + ``os.replace``); numpy arrays
(tabular policies, generator states) are stored as byte tensors and restored by
:func:`load_checkpoint`. :func:`global_rng_state` / :func:`set_global_rng_state` carry
Python's, numpy's and torch's global generators across a resume; :func:`seed_everything`
seeds them (examples only, see STYLE.md).
"""

from __future__ import annotations

import os
import random
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from routing_env.experiments._files import DamagedFileError, temp_file

__all__ = [
    "CHECKPOINT_FILE",
    "global_rng_state",
    "load_checkpoint",
    "save_checkpoint",
    "seed_everything",
    "set_global_rng_state",
]

#: A run folder's checkpoint file.
CHECKPOINT_FILE = "checkpoint.pt"

_NDARRAY = "__ndarray__"


def _encode(obj: Any) -> Any:
    """Make ``obj`` loadable with ``weights_only=True``: numpy arrays become byte tensors."""
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        if array.dtype.hasobject:
            raise TypeError("object arrays cannot be checkpointed")
        raw = torch.from_numpy(array.reshape(-1).view(np.uint8).copy())
        return {_NDARRAY: raw, "dtype": array.dtype.str, "shape": list(array.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_encode(v) for v in obj)
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if _NDARRAY in obj:
            raw = obj[_NDARRAY].numpy()
            return raw.view(np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_decode(v) for v in obj)
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (a temp file in the same folder, then ``os.replace``).

    A crash mid-write leaves the previous checkpoint intact. Numpy arrays anywhere in
    ``state`` are stored as tensors and restored by :func:`load_checkpoint`.
    """
    path = Path(path)
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(_encode(state), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError: When ``path`` is not a file.
        ValueError: When the file is corrupt or truncated, or holds objects that
            ``weights_only=True`` refuses to unpickle (nothing is changed on disk).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    damaged = _damaged_member(path)
    if damaged is not None:
        raise DamagedFileError(
            f"checkpoint {path} is damaged: its member {damaged} fails the zip's CRC check (a flipped bit "
            "on disk or in a copy); it was left as it is. Resume from a good copy of the run folder, or "
            "train the run again"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, pickle/zip errors, EOFError...
        if "Unsupported global" in str(err):  # a readable file naming code to run when unpickled
            raise ValueError(
                f"checkpoint {path} holds Python objects besides tensors and plain values; they are not "
                "loaded, since unpickling them could run any code (weights_only=True). It was not written "
                "by save_checkpoint, or was altered; it was left as it is"
            ) from err
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err}); "
            "it was left as it is: restore it or start the run again"
        ) from err
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return _decode(state)


def _damaged_member(path: Path) -> str | None:
    """The first member of the checkpoint's zip whose CRC does not match (None: all do, or
    the file is not a zip, which :func:`torch.load` then reports)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return None
    except zlib.error:  # a compressed member that does not even inflate
        return "(a compressed member)"


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (examples only; see STYLE.md)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def global_rng_state() -> dict[str, Any]:
    """The state of Python's, numpy's and torch's global generators (CUDA's too if present)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`global_rng_state` returned (after a checkpoint round trip)."""

    def tuples(obj: Any) -> Any:
        return tuple(tuples(v) for v in obj) if isinstance(obj, (list, tuple)) else obj

    random.setstate(tuples(state["python"]))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
