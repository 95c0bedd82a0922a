"""Where AllGUI keeps the user's models, settings, journals and review files (one place for every caller)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def user_data_dir() -> Path:
    """The user's AllGUI folder; ``ALLGUI_HOME`` overrides the platform default."""
    override = os.environ.get("ALLGUI_HOME")
    if override:
        return Path(override)
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "AllGUI"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "AllGUI"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "allgui"


def batch_journals_dir() -> Path:
    return user_data_dir() / "batches"


def corrections_dir() -> Path:
    return user_data_dir() / "corrections"
