"""The core stays free of Qt at run time: importing every core module loads no Qt binding or pyqtgraph.

The import contracts in pyproject.toml (lint-imports; tests/test_import_contracts.py) check the source statically,
imports inside functions and indirect ones included; this test catches what they cannot see, such as a module
imported by a name computed at run time."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import allgui.core

FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "PySide2", "shiboken6", "pyqtgraph")
CORE = Path(allgui.core.__file__).parent


def _core_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages([str(CORE)], prefix="allgui.core.")]


def test_importing_core_loads_no_qt() -> None:
    modules = _core_modules()
    assert len(modules) >= 8
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
