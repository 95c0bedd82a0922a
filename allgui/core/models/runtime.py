"""Which engine runs a network, decided without importing torch.

ONNX Runtime on the CPU is the default: exact in float32 and some 70 MB, where torch with its CUDA libraries is
3 GB. Torch runs a network when a person picks it (``--engine torch``, Preferences), when a GPU is wanted and
there, or when a model has no ONNX graph (saved before graphs were written). The desktop bundle for laboratory PCs
leaves torch out; there, asking for it says so instead of failing later.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path

ENGINE_CHOICES = ("auto", "onnx", "torch")
ENGINE_HELP = (
    "auto: ONNX Runtime on the CPU, torch where a GPU is wanted and present or the model has no ONNX graph; "
    "onnx or torch: that engine"
)
FULL_INSTALL = (
    "torch is not installed here (the laboratory bundle and a plain pip install leave it out): use the full AllGUI "
    'bundle, or install the torch extra (pip install "allgui[torch]")'
)


class EngineUnavailable(RuntimeError):
    """The engine a model needs (or a person picked) cannot run here; ``str()`` says why and what to do."""


@functools.cache
def torch_installed() -> bool:
    """Whether torch can be imported, found without importing it (that takes seconds and a gigabyte)."""
    return importlib.util.find_spec("torch") is not None


@functools.cache
def gpu_present() -> bool:
    """Whether an NVIDIA GPU driver is visible, without torch: on Linux the driver's GPU list, on Windows its CUDA
    library. A False answer keeps torch out of a CPU-only machine's start-up; a True one is confirmed by torch."""
    if sys.platform.startswith("linux"):
        gpus = Path("/proc/driver/nvidia/gpus")
        return gpus.is_dir() and any(gpus.iterdir())
    if sys.platform == "win32":
        system = Path(os.environ.get("SYSTEMROOT", r"C:\Windows")) / "System32"
        return (system / "nvcuda.dll").exists()
    return False


def check_engine(engine: str) -> str:
    engine = (engine or "auto").lower()
    if engine not in ENGINE_CHOICES:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}, not {engine!r}")
    return engine


def uses_torch(engine: str, device: str, has_graph: bool) -> bool:
    """Whether a network with (or without) an ONNX graph runs on torch for this engine and device preference."""
    engine = check_engine(engine)
    if engine == "torch" or not has_graph:
        return True
    if engine == "onnx":
        return False
    wants_gpu = device == "cuda" or (device == "auto" and gpu_present())
    return wants_gpu and torch_installed()


def require_torch(why: str) -> None:
    """Raise :class:`EngineUnavailable` naming ``why`` torch is needed, where it is not installed."""
    if not torch_installed():
        raise EngineUnavailable(f"{why}, which needs torch; {FULL_INSTALL}")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system sets one (a SLURM job, taskset), else
    all of the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on macOS and Windows
        return os.cpu_count() or 1


def inference_threads() -> int:
    """Threads for a network in batch inference: half the usable cores, the other half decode (oversubscribing
    costs 4x); ``ALLGUI_INFERENCE_THREADS`` overrides it (a cluster's worker processes get their share that way)."""
    value = os.environ.get("ALLGUI_INFERENCE_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, usable_cores() // 2)
