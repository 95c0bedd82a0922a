"""A warning under a table of results when many of its images are unlike the model's training images."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QLabel

from allgui.core.result import ResultRow, unlike_training_warning


class DriftWarning(QLabel):
    """Hidden until :func:`unlike_training_warning` has something to say about the rows shown (another
    stain, lamp or white-balance setting makes every class unreliable)."""

    def __init__(self) -> None:
        super().__init__("")
        self.setWordWrap(True)
        self.setStyleSheet("color: #b45309;")
        self.hide()

    def update_from(self, rows: Sequence[ResultRow]) -> None:
        warning = unlike_training_warning(rows)
        self.setText(f"⚠ {warning}" if warning else "")
        self.setVisible(warning is not None)
