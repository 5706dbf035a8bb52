"""Device names (``cpu``, ``cuda``, ``cuda:N``) turned into torch devices, once per run."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bench.errors import DeviceError

if TYPE_CHECKING:
    import torch

_NAME = re.compile(r"cpu|cuda(:\d+)?")


def check_device_name(name: str) -> None:
    """Raise :class:`DeviceError` unless ``name`` is ``cpu`` or ``cuda[:N]``."""
    if not _NAME.fullmatch(name):
        raise DeviceError(f"device must be 'cpu' or 'cuda[:N]', got {name!r}")


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``; a CUDA device that is not here is a clear error."""
    import torch

    check_device_name(name)
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} was requested but no CUDA GPU is available here "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                "use --device cpu"
            )
        if (device.index or 0) >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} does not exist; {torch.cuda.device_count()} GPU(s) found"
            )
    return device


def resolve_devices(names: tuple[str, ...]) -> dict[str, torch.device]:
    return {name: resolve_device(name) for name in names}


def synchronize(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
