"""The Review tab's gallery mode: every image as a thumbnail under its class, for verifying a whole run.

The technician scans each class (the doubtful images first), moves the wrong ones with a key or a drag and
confirms the rest. Labels go through the Review tab into the one :class:`ReviewSession`, so the list, the saved
review and the exports show the same labels. Data: :mod:`allgui.ui.gallery_model`; painting and keys:
:mod:`allgui.ui.gallery_view`.
"""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QPixmap, QResizeEvent, QShowEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QSplitter, QVBoxLayout, QWidget

from allgui.core.imageio import ImageReadError, read_rgb
from allgui.core.review_session import ReviewItem, ReviewSession
from allgui.ui.charts import ClassBarChart
from allgui.ui.gallery_model import THUMB, UNCLASSIFIED, GalleryModel, Thumbnails, item_lines
from allgui.ui.gallery_view import GalleryView
from allgui.ui.review_detail import to_pixmap
from allgui.ui.workers import TaskRunner

KEYS_HINT = (
    "1-4: move the selected images to Benign, Early Pre-B, Pre-B, Pro-B · Enter: confirm as shown · "
    "Backspace: undo your label · Space: large view · arrows, Shift/Ctrl+click: select · click a class header: "
    "select the class · drag onto a class: move there"
)
REFRESH_MS = 500  # regrouping while predictions arrive: at most twice a second (each is a relayout and a repaint)


class PreviewPanel(QWidget):
    """The current image large, with its probabilities and why it needs review (Space shows and hides it)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(240, 240)
        # Sized by the panel, not by its pixmap: the pixmap is scaled to the label (see _fit), never the reverse.
        self.image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.chart = ClassBarChart("Class probabilities", "probability")
        self.chart.setMinimumHeight(170)
        layout = QVBoxLayout(self)
        layout.addWidget(self.image, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.chart)
        self.row: int | None = None
        self._pixmap: QPixmap | None = None

    def show_item(self, row: int, item: ReviewItem) -> None:
        self.row = row
        try:  # one image, on the technician's request: read here, as the list's detail view does
            self._pixmap = to_pixmap(np.asarray(read_rgb(item.path)))
            self._fit()
        except ImageReadError as error:
            self._pixmap = None
            self.image.setText(error.reason)
        lines = [f"<b>{html.escape(item.path.name)}</b>", *map(html.escape, item_lines(item))]
        self.caption.setText("<br>".join(lines))
        self.chart.set_values(item.probabilities)

    def _fit(self) -> None:
        if self._pixmap is not None:
            side = max(64, min(self.image.width(), self.image.height()))
            mode = Qt.TransformationMode.SmoothTransformation
            self.image.setPixmap(self._pixmap.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio, mode))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()


class GalleryPage(QWidget):
    labels_chosen = Signal(object)  # session row -> class index or None: the tab records them in the session
    current_changed = Signal(int)  # session row of the current thumbnail

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = GalleryModel(self)
        self.thumbnails = Thumbnails(runner, parent=self)
        self.view = GalleryView(self.model, self.thumbnails)
        self.view.labels_chosen.connect(self.labels_chosen.emit)
        self.view.preview_requested.connect(self.toggle_preview)
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        self.preview = PreviewPanel()
        self.preview.setVisible(False)
        hint = QLabel(KEYS_HINT)
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #555;")
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.view)
        self.splitter.addWidget(self.preview)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setSizes([1000, 420])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(hint)
        layout.addWidget(self.splitter, 1)
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.refresh_now)

    @property
    def session(self) -> ReviewSession:
        return self.model.session

    def set_session(self, session: ReviewSession) -> None:
        self._timer.stop()
        self.thumbnails.clear()
        self.view.delegate.cards.clear()
        self.model.set_session(session)
        self._dirty = False
        self._hide_empty_group()

    def refresh(self) -> None:
        """Regroup soon (predictions arriving), or when shown: a hidden gallery does no work."""
        if not self.isVisible():
            self._dirty = True
        elif not self._timer.isActive():
            self._timer.start(REFRESH_MS)

    def refresh_now(self) -> None:
        self._timer.stop()
        self._dirty = False
        self.model.refresh()
        self._hide_empty_group()
        row = self.view.current_row()
        if self.preview.isVisible() and row is not None:
            self.preview.show_item(row, self.session.items[row])

    def _hide_empty_group(self) -> None:
        if self.model.entries:
            empty = self.model.counts[UNCLASSIFIED].total == 0
            self.view.setRowHidden(self.model.header_position(UNCLASSIFIED), empty)

    def showEvent(self, event: QShowEvent) -> None:
        if self._dirty:
            self.refresh_now()
        super().showEvent(event)

    # ---- current image and preview -----------------------------------------------------------------------------
    def select_row(self, row: int | None) -> None:
        """Make session row ``row`` current (None: the first image shown)."""
        if row is None or not 0 <= row < len(self.session):
            row = next((e.key for e in self.model.entries if e.kind == THUMB), None)
        if row is not None:
            self.view.select_row(row)

    def toggle_preview(self) -> None:
        self.preview.setVisible(not self.preview.isVisible())
        row = self.view.current_row()
        if self.preview.isVisible() and row is not None:
            self.preview.show_item(row, self.session.items[row])

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        row = self.view.current_row()
        if row is None:
            return
        if self.preview.isVisible():
            self.preview.show_item(row, self.session.items[row])
        self.current_changed.emit(row)
