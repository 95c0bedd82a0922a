"""User preferences as small, versioned JSON in the user data directory (never pickled).

Unknown keys are dropped and wrong types fall back to defaults, so a hand-edited or future file never stops the app
from starting. Older versions pass through :func:`migrate` before use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from allgui.core.duplicates import DEFAULT_THRESHOLD
from allgui.core.models.runtime import ENGINE_CHOICES
from allgui.core.paths import user_data_dir
from allgui.core.statefile import StateFileError, read_state_json, warn_ignored, write_json_atomic

SETTINGS_FILE = "settings.json"
VERSION = 2
MAX_RECENT = 10
REVIEW_VIEWS = ("list", "gallery")


@dataclass
class Settings:
    recent_folders: list[str] = field(default_factory=list)
    last_open_dir: str = ""
    last_export_dir: str = ""
    last_data_dir: str = ""
    model_id: str = ""  # chosen in the GUI's selector; empty: the store's active model
    duplicate_threshold: int = DEFAULT_THRESHOLD
    review_threshold: float | None = None  # None: the model's own review policy
    engine: str = "auto"  # what runs a network: allgui.core.models.runtime.ENGINE_CHOICES
    window_geometry: str = ""  # QWidget.saveGeometry() as hex
    window_state: str = ""  # QMainWindow.saveState() as hex
    splitter_state: str = ""
    current_tab: int = 0
    reviewer: str = ""  # the name a case report is signed with (Preferences)
    review_view: str = "list"  # the Review tab's view: REVIEW_VIEWS

    def add_recent(self, folder: str | Path) -> None:
        text = str(folder)
        self.recent_folders = [text, *(f for f in self.recent_folders if f != text)][:MAX_RECENT]

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        defaults = cls()
        values: dict[str, Any] = {}
        for item in fields(cls):
            if item.name not in data:
                continue
            value, default = data[item.name], getattr(defaults, item.name)
            if item.name == "review_threshold":
                ok = value is None or (isinstance(value, int | float) and 0.0 <= value <= 1.0)
            elif item.name == "engine":
                ok = value in ENGINE_CHOICES
            elif item.name == "review_view":
                ok = value in REVIEW_VIEWS
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 64
            elif isinstance(default, list):
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            else:
                ok = isinstance(value, type(default))
            if ok:
                values[item.name] = value
        return cls(**values)


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older file's dict up to :data:`VERSION`, one step at a time."""
    version = int(data.get("version", 1)) if isinstance(data.get("version", 1), int) else 1
    if version < 2:
        # Version 1 kept a single "last_folder" and called the threshold "hamming".
        data = dict(data)
        if isinstance(data.get("last_folder"), str):
            data.setdefault("recent_folders", [data["last_folder"]])
            data.setdefault("last_open_dir", data["last_folder"])
        if "hamming" in data:
            data.setdefault("duplicate_threshold", data["hamming"])
        data["version"] = 2
    return data


def settings_path(folder: Path | None = None) -> Path:
    return (folder or user_data_dir()) / SETTINGS_FILE


def load_settings(folder: Path | None = None) -> Settings:
    """The saved preferences, or defaults when the file is missing, unreadable or from a newer version.

    A file that cannot be used (a pipe, a link out of the folder, huge, nested too deeply, not JSON) is ignored with
    one warning naming it; the app starts with default preferences.
    """
    path = settings_path(folder)
    try:
        data = read_state_json(path)
    except StateFileError as error:
        warn_ignored(error, "default preferences are used")
        return Settings()
    if not isinstance(data, dict) or (isinstance(data.get("version"), int) and data["version"] > VERSION):
        return Settings()
    return Settings.from_dict(migrate(data))


def save_settings(settings: Settings, folder: Path | None = None) -> Path:
    """Write atomically (temporary file + rename) so a crash never leaves half a file."""
    path = settings_path(folder)
    # surrogateescape: a recent folder whose name is not valid UTF-8 is kept as its bytes instead of failing the save.
    write_json_atomic(path, settings.to_dict())
    return path
