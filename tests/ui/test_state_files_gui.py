"""The window with a data folder it cannot write and with damaged state files: it loads the model, tells the user
once, and keeps working."""

from __future__ import annotations

from pathlib import Path

import pytest

from allgui.core.models.store import ModelStore
from allgui.ui.main_window import MainWindow

from .helpers import close_window


def start(qtbot, store: ModelStore, settings_dir: Path | None = None) -> MainWindow:
    window = MainWindow(store=store, settings_dir=settings_dir)
    qtbot.addWidget(window)
    window.show()
    return window


def test_window_loads_a_model_when_the_data_folder_cannot_be_written(
    qtbot, ui_models: Path, tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file: nothing can be created below it, even by root")
    monkeypatch.setenv("ALLGUI_HOME", str(blocker / "home"))
    store = ModelStore(blocker / "home", ui_models)
    window = start(qtbot, store, blocker / "home")
    qtbot.waitUntil(lambda: window.models.current is not None, timeout=60000)
    assert window.models.current.id == store.active_id()
    assert not any("could not be loaded" in e for e in window.errors), window.errors
    # Choosing another model works for the session, and the user is told the choice is not kept.
    ids = [window.model_combo.itemData(i) for i in range(window.model_combo.count())]
    other = next(i for i, model_id in enumerate(ids) if model_id != window.models.current.id)
    window.model_combo.setCurrentIndex(other)
    window.model_combo.activated.emit(other)
    qtbot.waitUntil(lambda: window.models.current.id == ids[other], timeout=60000)
    assert store.active_id() == ids[other]
    qtbot.waitUntil(lambda: "cannot be saved" in window.device_label.toolTip(), timeout=5000)
    assert "lasts until AllGUI closes" in window.device_label.toolTip()

    # Batches still run, without the crash journal, and say so.
    qtbot.waitUntil(lambda: window.batch is not None, timeout=30000)
    with qtbot.waitSignal(window.batch.finished, timeout=120000):
        assert window.batch.start(image_folder)
    assert window.batch.table_model.rowCount() == 21
    assert any("not journalled" in e for e in window.errors), window.errors
    close_window(qtbot, window)  # saving preferences fails quietly: nothing raised


@pytest.mark.parametrize("content", ["[" * 200_000 + "]" * 200_000, "{not json"])
def test_window_starts_with_a_damaged_settings_file(qtbot, store: ModelStore, isolated_home: Path, content) -> None:
    (isolated_home / "settings.json").write_text(content)
    with pytest.warns(UserWarning, match="settings.json"):
        window = start(qtbot, store, isolated_home)
    qtbot.waitUntil(lambda: window.models.current is not None, timeout=60000)
    close_window(qtbot, window)
    assert "[[[" not in (isolated_home / "settings.json").read_text()  # replaced by good preferences on close
