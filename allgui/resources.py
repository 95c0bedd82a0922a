"""Locate the shipped data (models, user guide, icons): the one lookup, installed, editable or frozen.

The top-level ``resources/`` folder is the package ``allgui.assets``: a wheel installs it as package data, an
editable install maps it onto the checkout's folder, and the PyInstaller bundle (installer.spec) holds it at
``_internal/allgui/assets``. ``importlib.resources`` finds it in all three.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PACKAGE = "allgui.assets"


def resources_dir() -> Path:
    root = files(PACKAGE)
    # Callers need real paths (model folders are opened by file name); every way AllGUI is installed leaves the
    # data on disk, so a zipped install is an error rather than something to extract.
    if not isinstance(root, Path):
        raise RuntimeError(f"{PACKAGE} is not on the file system ({root!r}): install AllGUI unzipped")
    return root


def shipped_models_dir() -> Path:
    return resources_dir() / "models"


def user_guide_path() -> Path:
    return resources_dir() / "docs" / "USER_GUIDE.md"
