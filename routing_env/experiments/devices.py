"""The torch device a training script runs on, checked before anything is built."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | None) -> str:
    """The torch device a training script runs on: ``device``, or ``"cpu"`` for None.

    The scripts' ``--device`` defaults to None so that ``--resume`` keeps the run's own
    device unless one is given, and an explicit ``--device cpu`` can move a GPU run to
    a machine without one.

    Raises:
        ValueError: When ``device`` is not a torch device, or names a CUDA device this
            machine does not have.
    """
    if device is None:
        return "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from err
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device}: CUDA is not available here (torch {torch.__version__}); "
                "pass --device cpu (a resumed GPU run continues on the CPU)"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return device
