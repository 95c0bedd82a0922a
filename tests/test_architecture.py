"""The core stays free of Qt: importing every core module loads no Qt binding or pyqtgraph."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import allgui.core

FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "PySide2", "shiboken6", "pyqtgraph")
CORE = Path(allgui.core.__file__).parent


def _core_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages([str(CORE)], prefix="allgui.core.")]


def test_core_sources_import_no_qt() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders


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
