"""Driving the real main window in tests."""

from __future__ import annotations

from allgui.core.models.store import ModelStore
from allgui.ui.main_window import MainWindow


def open_window(qtbot, store: ModelStore, model_id: str | None = None) -> MainWindow:
    """A shown main window with ``model_id`` (default: the store's active model) loaded."""
    if model_id is not None:
        store.activate(model_id)
    window = MainWindow(store=store)
    qtbot.addWidget(window)
    window.show()
    expected = model_id or store.active_id()
    qtbot.waitUntil(lambda: window.models.current is not None and window.models.current.id == expected, timeout=60000)
    return window


def close_window(qtbot, window: MainWindow) -> None:
    window.close()
    assert not window.runner.busy


class Accepting:
    """Stands in for the modal run of a real dialog: its choices are set, then it is accepted."""

    def __init__(self, dialog) -> None:
        self.dialog = dialog
        self.DialogCode = dialog.DialogCode

    def exec(self):
        return self.DialogCode.Accepted

    def apply(self):
        return self.dialog.apply()
