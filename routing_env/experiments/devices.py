"""The torch device a training script runs on, checked before anything is built, and the machine."""

from __future__ import annotations

import os
import platform
from functools import cache
from typing import Any

import torch

__all__ = ["machine_info", "resolve_device"]


@cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """What a result was computed on: CPU model, core count, torch, Python, OS, and the GPU if any.

    Recorded in run configs and result JSONs: reruns on another CPU (or torch version)
    agree in the first epoch and drift apart in the last digits from the second on, so
    "reproduces to the last digit" holds on the machine recorded here.
    """
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


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
