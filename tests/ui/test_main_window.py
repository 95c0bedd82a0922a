"""The main window: model selector with devices, disclaimer, drag and drop, recent folders, preferences, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from allgui import DISCLAIMER
from allgui.core.settings import load_settings, settings_path

from .helpers import Accepting, close_window, open_window


def test_model_selector_lists_every_offered_model_with_its_device(qtbot, store) -> None:
    window = open_window(qtbot, store, "test-svm")
    texts = [window.model_combo.itemText(i) for i in range(window.model_combo.count())]
    ids = [window.model_combo.itemData(i) for i in range(window.model_combo.count())]
    assert sorted(ids) == ["test-secnn", "test-svm"]
    qtbot.waitUntil(lambda: window.models.network_device is not None, timeout=60000)
    texts = [window.model_combo.itemText(i) for i in range(window.model_combo.count())]
    assert all(text.endswith(" — CPU") for text in texts), texts  # no GPU on the test machine
    assert window.model_combo.currentData() == "test-svm"
    assert window.disclaimer.text() == DISCLAIMER and window.disclaimer.isVisible()

    # Choosing the SE-CNN loads it, makes it active, and says plainly that it runs on the CPU.
    index = ids.index("test-secnn")
    window.model_combo.setCurrentIndex(index)
    window.model_combo.activated.emit(index)
    qtbot.waitUntil(lambda: window.models.current.id == "test-secnn", timeout=60000)
    assert store.active_id() == "test-secnn"
    qtbot.waitUntil(lambda: "CPU" in window.device_label.text(), timeout=5000)
    assert "CUDA" in window.device_label.text()
    close_window(qtbot, window)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_drop_a_folder_and_preferences_persist(qtbot, store, image_folder: Path) -> None:
    window = open_window(qtbot, store, "test-svm")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image_folder))])
    # Qt drops synthetic drop events without a real drag, so the handlers are called the way Qt would call them.
    enter = QDragEnterEvent(
        QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(
        QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    with qtbot.waitSignal(window.review.predictions_done, timeout=60000):
        window.dropEvent(drop)
    assert len(window.review.session) == 21
    assert window.recent_menu.actions()[0].text() == str(image_folder)
    window.settings.duplicate_threshold = 6
    close_window(qtbot, window)

    stored = json.loads(settings_path().read_text(encoding="utf-8"))
    assert stored["recent_folders"] == [str(image_folder)]
    assert stored["model_id"] == "test-svm"
    again = load_settings()
    assert again.duplicate_threshold == 6 and again.window_geometry

    reopened = open_window(qtbot, store)
    assert [a.text() for a in reopened.recent_menu.actions()] == [str(image_folder)]
    close_window(qtbot, reopened)


def test_a_model_that_fails_to_load_is_a_readable_error(qtbot, store) -> None:
    window = open_window(qtbot, store, "test-svm")
    broken = store.shipped_dir / "test-svm" / "manifest.json"
    original = broken.read_text(encoding="utf-8")
    try:
        broken.write_text(original.replace('"class_names": [', '"class_names": ["Other", '), encoding="utf-8")
        window.models.load("test-svm")
        qtbot.waitUntil(lambda: bool(window.errors), timeout=30000)
    finally:
        broken.write_text(original, encoding="utf-8")
    assert "could not be loaded" in window.errors[-1] and "classes" in window.errors[-1]
    assert window.models.current.id == "test-svm"  # the earlier model stays in use
    close_window(qtbot, window)


def test_closing_during_work_stops_the_workers(qtbot, store, data_dir: Path) -> None:
    window = open_window(qtbot, store, "test-svm")
    window.tabs.setCurrentWidget(window.batch)
    assert window.batch.start(data_dir)
    qtbot.waitUntil(lambda: len(window.batch.table_model.rows) > 0, timeout=60000)
    assert window.runner.busy
    window.close()
    assert not window.runner.busy
    assert window.runner.pool.activeThreadCount() == 0


def test_the_window_goes_at_once_while_a_cancelled_step_finishes(qtbot, store) -> None:
    import threading
    import time

    window = open_window(qtbot, store, "test-svm")
    seen: dict[str, bool] = {}
    started = threading.Event()

    def slow_step(task) -> None:
        started.set()
        while not task.cancel.cancelled:
            time.sleep(0.01)
        time.sleep(0.5)  # the step in progress when Cancel arrived
        seen["visible"] = window.isVisible()

    window.runner.start("test-slow", slow_step)
    assert started.wait(10)
    window.close()
    assert seen == {"visible": False}
    assert window.runner.pool.activeThreadCount() == 0


def test_shortcuts_and_preferences(qtbot, store, image_folder: Path) -> None:
    from allgui.ui.preferences import PreferencesDialog

    window = open_window(qtbot, store, "test-svm")
    assert window.open_images_action.shortcut().toString() == "Ctrl+O"
    assert window.open_folder_action.shortcut().toString() == "Ctrl+Shift+O"
    with qtbot.waitSignals([window.review.predictions_done, window.review.duplicates_done], timeout=120000):
        window.open_paths([image_folder])
    confidences = [item.confidence for item in window.review.session.items]

    # A review threshold above every confidence flags every image; the duplicate threshold regroups the folder.
    dialog = PreferencesDialog(window.settings, window)
    dialog.own_policy.setChecked(False)
    dialog.review.setValue(1.0)
    dialog.threshold.setValue(0)
    with qtbot.waitSignals([window.review.predictions_done, window.review.duplicates_done], timeout=120000):
        window.edit_preferences(Accepting(dialog))
    items = window.review.session.items
    assert all(item.needs_review for item in items)
    assert [item.confidence for item in items] == confidences
    assert window.review.session.duplicate_threshold == 0
    assert load_settings().review_threshold == 1.0 and load_settings().duplicate_threshold == 0
    close_window(qtbot, window)
