"""Locate the bundled resources/ folder the same way frozen (PyInstaller) and from a checkout."""

from __future__ import annotations

import sys
from pathlib import Path


def resources_dir() -> Path:
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def shipped_models_dir() -> Path:
    return resources_dir() / "models"


def user_guide_path() -> Path:
    return resources_dir() / "docs" / "USER_GUIDE.md"
