"""Preferences: versioned JSON in the user data dir, tolerant of damaged or foreign files, migrated from version 1."""

from __future__ import annotations

import json
from pathlib import Path

from allgui.core.settings import MAX_RECENT, VERSION, Settings, load_settings, save_settings, settings_path


def test_round_trip_in_allgui_home(isolated_home: Path) -> None:
    settings = Settings(model_id="svm-1", duplicate_threshold=6, review_threshold=0.8, current_tab=2)
    settings.add_recent("/data/a")
    path = save_settings(settings)
    assert path.parent == isolated_home
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["version"] == VERSION
    assert load_settings() == settings


def test_recent_folders_most_recent_first_without_repeats() -> None:
    settings = Settings()
    for number in range(MAX_RECENT + 3):
        settings.add_recent(f"/f{number}")
    settings.add_recent("/f5")
    assert settings.recent_folders[0] == "/f5"
    assert len(settings.recent_folders) == MAX_RECENT
    assert settings.recent_folders.count("/f5") == 1


def test_damaged_newer_and_wrongly_typed_files_fall_back(isolated_home: Path) -> None:
    path = settings_path()
    path.write_text("{not json", encoding="utf-8")
    assert load_settings() == Settings()
    path.write_text(json.dumps({"version": VERSION + 1, "model_id": "x"}), encoding="utf-8")
    assert load_settings() == Settings()
    path.write_text(
        json.dumps(
            {
                "version": VERSION,
                "model_id": 5,
                "duplicate_threshold": "9",
                "review_threshold": 3.0,
                "recent_folders": ["/ok", 7],
                "unknown": 1,
                "current_tab": 1,
            }
        ),
        encoding="utf-8",
    )
    loaded = load_settings()
    assert loaded.model_id == "" and loaded.duplicate_threshold == Settings().duplicate_threshold
    assert loaded.review_threshold is None and loaded.recent_folders == []
    assert loaded.current_tab == 1


def test_version_1_is_migrated(isolated_home: Path) -> None:
    settings_path().write_text(json.dumps({"version": 1, "last_folder": "/old", "hamming": 7}), encoding="utf-8")
    loaded = load_settings()
    assert loaded.recent_folders == ["/old"]
    assert loaded.last_open_dir == "/old"
    assert loaded.duplicate_threshold == 7
