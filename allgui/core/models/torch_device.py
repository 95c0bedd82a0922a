"""Choosing where torch runs: ``auto`` prefers CUDA, and every CUDA failure falls back to the CPU with a warning."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceWarning(UserWarning):
    """CUDA was asked for (or tried) but the CPU is used instead."""


def _warn(message: str, log: Callable[[str], None] | None) -> None:
    warnings.warn(message, DeviceWarning, stacklevel=3)
    if log is not None:
        log(f"warning: {message}")


def choose_device(preference: str = "auto", log: Callable[[str], None] | None = None) -> torch.device:
    """The device for ``preference`` (auto|cpu|cuda); ``cuda`` without a working GPU warns and gives the CPU."""
    preference = (preference or "auto").lower()
    if preference not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, not {preference!r}")
    if preference == "cpu":
        return torch.device("cpu")
    try:
        available = torch.cuda.is_available()
        if available:
            # Touch the device once: a broken driver fails here rather than in the middle of training.
            torch.zeros(1, device="cuda")
            return torch.device("cuda")
    except Exception as error:  # noqa: BLE001 - any CUDA failure means "use the CPU"
        _warn(f"CUDA is not usable ({type(error).__name__}: {error}); using the CPU", log)
        return torch.device("cpu")
    if preference == "cuda":
        _warn("CUDA was requested but no GPU is available; using the CPU", log)
    return torch.device("cpu")


def is_cuda_failure(error: BaseException) -> bool:
    """True for out-of-memory and other CUDA runtime errors, after which the CPU should take over."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("CUDA" in text or "cuDNN" in text or "CUBLAS" in text)


def cuda_failure_message(error: BaseException) -> str:
    """The plain notice for a CUDA failure: what failed, and that the CPU takes over."""
    first_line = str(error).splitlines()[0] if str(error) else ""
    return f"CUDA failed ({type(error).__name__}: {first_line}); continuing on the CPU"


def fallback_to_cpu(error: BaseException, log: Callable[[str], None] | None = None) -> torch.device:
    """Warn about a CUDA failure, free what CUDA holds, and return the CPU device."""
    _warn(cuda_failure_message(error), log)
    with contextlib.suppress(Exception):  # a dead driver cannot free memory either
        torch.cuda.empty_cache()
    return torch.device("cpu")


def device_label(device: torch.device) -> str:
    """ "CPU" or the GPU's name, for display."""
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_name(device)
        except Exception:  # noqa: BLE001
            return "CUDA GPU"
    return "CPU"
