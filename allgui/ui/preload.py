"""Loading torch's shared libraries without holding the GIL, so the window keeps painting while torch imports.

``import torch`` dlopens about 1 GB of libraries whose static initialisers run for a second or more with the GIL
held, freezing the GUI thread. A plain C call through ctypes releases the GIL, so calling libc's ``dlopen`` on them
first (from the worker thread) does that work in parallel; the import then finds them loaded.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

LIBRARIES = ("libtorch_global_deps.so", "libc10.so", "libtorch_cpu.so", "libtorch.so", "libtorch_python.so")
# torchvision's extensions register operators when loaded: the same freeze, the same cure.
VISION_GLOBS = ("_C*.so", "image*.so")


def preload_torch_libraries() -> bool:
    """Best effort, Linux only; True when the libraries were loaded ahead of ``import torch``."""
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.origin is None:
            return False
        folder = Path(spec.origin).parent
        libc = ctypes.CDLL(None)
        libc.dlopen.restype = ctypes.c_void_p
        libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        paths = [folder / "lib" / name for name in LIBRARIES] + sorted(folder.glob("_C.*.so"))
        vision = importlib.util.find_spec("torchvision")
        if vision is not None and vision.origin is not None:
            paths += [p for pattern in VISION_GLOBS for p in sorted(Path(vision.origin).parent.glob(pattern))]
        for path in paths:
            if path.is_file() and not libc.dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_GLOBAL):
                return False
        return True
    except (OSError, AttributeError, ValueError) as error:  # an unusual build: the normal import still works
        log.debug("torch preload skipped: %s", error)
        return False
