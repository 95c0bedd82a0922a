"""Detail panels of the review tab for the selected image: its near-duplicates and the technician's label."""

from __future__ import annotations

import contextlib

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from allgui.core.classes import CLASS_NAMES
from allgui.core.imageio import ImageReadError, read_rgb
from allgui.core.review_session import ReviewItem, ReviewSession

DUPLICATES_TIP = (
    "Images that look the same (near-duplicates: the same field photographed twice, a re-saved copy) or are the same "
    "file. Experts: grouped by 64-bit perceptual hash (pHash); near-duplicates differ in at most the number of bits "
    "set in Preferences (the Hamming distance), identical files have the same SHA-256."
)


def to_pixmap(array: np.ndarray, size: int | None = None) -> QPixmap:
    array = np.ascontiguousarray(array[..., :3], dtype=np.uint8)
    height, width = array.shape[:2]
    image = QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    pixmap = QPixmap.fromImage(image)
    if size:
        pixmap = pixmap.scaled(
            size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
    return pixmap


class DuplicatesBox(QGroupBox):
    """Thumbnails of the selected image's near-duplicate group (hidden when it has none); a click selects one."""

    chosen = Signal(int)  # session row of the thumbnail clicked

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Near-duplicates of this image (look the same)", parent)
        self.setToolTip(DUPLICATES_TIP)
        self.strip_layout = QHBoxLayout()
        strip = QWidget()
        strip.setLayout(self.strip_layout)
        scroll = QScrollArea()
        scroll.setWidget(strip)
        scroll.setWidgetResizable(True)
        scroll.setFixedHeight(170)
        self.group_button = QPushButton("List only this group")
        self.group_button.setCheckable(True)
        self.group_button.setToolTip("Filter the list to this image's duplicate group")
        # Beside the title, not in it: a group box is at least as wide as its title.
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #b45309;")
        self.warning.setVisible(False)
        box_layout = QVBoxLayout(self)
        box_layout.addWidget(self.warning)
        box_layout.addWidget(self.group_button)
        box_layout.addWidget(scroll)
        self.setVisible(False)

    def show_group(self, session: ReviewSession, row: int, conflicts: dict[int, tuple[int, ...]]) -> None:
        """The group of session row ``row``; ``conflicts``: the groups whose images got different labels."""
        while self.strip_layout.count():
            widget = self.strip_layout.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        others = session.duplicates_of(row)
        self.setVisible(bool(others))
        if not others:
            if self.group_button.isChecked():
                self.group_button.setChecked(False)
            return
        group = session.items[row].duplicate_group
        self.setTitle(f"Near-duplicate group {group + 1}: {len(others) + 1} images that look the same")
        labels = conflicts.get(group)
        names = ", ".join(CLASS_NAMES[label] for label in labels or ())
        self.warning.setText(f"⚠ Your labels of these images differ: {names}" if labels else "")
        self.warning.setVisible(bool(labels))
        for other, distance in [(row, 0), *others]:
            self.strip_layout.addWidget(self._thumbnail(session, other, distance, row))
        self.strip_layout.addStretch(1)

    def _thumbnail(self, session: ReviewSession, row: int, distance: int | None, shown: int) -> QToolButton:
        item = session.items[row]
        selected = row == shown
        button = QToolButton()
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        with contextlib.suppress(ImageReadError):
            button.setIcon(to_pixmap(np.asarray(read_rgb(item.path)), 112))
        button.setIconSize(QSize(112, 112))
        exact = item.sha256 is not None and item.sha256 == session.items[shown].sha256
        label = "this image" if selected else ("identical file" if exact else "near-duplicate (looks the same)")
        button.setText(f"{item.path.name[:34]}\n{label}")
        expert = "" if selected or distance is None else f"\npHash distance {distance} of 64 bits"
        button.setToolTip(f"{item.path}{expert}")
        button.clicked.connect(lambda _=False, r=row: self.chosen.emit(r))
        return button


class LabelBox(QGroupBox):
    """The technician's label of the selected image: confirm the prediction, choose a class, or clear it.

    The keyboard shortcuts (1-4, Enter) belong to ``shortcut_owner`` (the whole tab), so that they work while the
    image list has the focus."""

    labelled = Signal(object)  # class index, or None to clear
    confirmed = Signal()

    def __init__(self, shortcut_owner: QWidget, parent: QWidget | None = None) -> None:
        super().__init__("Technician's label", parent)
        grid = QGridLayout(self)
        self.status = QLabel("Select an image.")
        self.status.setWordWrap(True)  # a long status must not widen the tab past a 1280 px screen
        self.confirm_button = QPushButton("Confirm prediction (Enter)")
        self.confirm_button.clicked.connect(self.confirmed.emit)
        # Three rows of at most four buttons: the box stays narrow enough for the list's columns at 1280x720.
        grid.addWidget(self.status, 0, 0, 1, 4)
        grid.addWidget(self.confirm_button, 1, 0, 1, 3)
        self.class_buttons = []
        for index, name in enumerate(CLASS_NAMES):
            button = QPushButton(f"{name} ({index + 1})")
            button.setToolTip(f"Set the label to {name}")
            button.clicked.connect(lambda _=False, i=index: self.labelled.emit(i))
            grid.addWidget(button, 2, index)
            self.class_buttons.append(button)
            shortcut = QShortcut(QKeySequence(str(index + 1)), shortcut_owner)
            shortcut.setWhatsThis(f"Label the selected image {name} (Review tab)")  # Help → Keyboard shortcuts
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda i=index: self.labelled.emit(i))
        clear = QPushButton("Clear")
        clear.clicked.connect(lambda: self.labelled.emit(None))
        grid.addWidget(clear, 1, 3)
        for key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            shortcut = QShortcut(QKeySequence(key), shortcut_owner)
            shortcut.setWhatsThis("Confirm the prediction of the selected image (Review tab)")
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(self.confirmed.emit)
        self.enable(False)

    def enable(self, enabled: bool) -> None:
        for button in [self.confirm_button, *self.class_buttons]:
            button.setEnabled(enabled)

    def show_item(self, item: ReviewItem, group_conflicts: bool) -> None:
        """``item``'s label; ``group_conflicts``: images of its near-duplicate group have other labels."""
        self.enable(item.predicted is not None or item.error is None)
        self.confirm_button.setEnabled(item.predicted is not None)
        text = "Not reviewed yet." if item.label is None else f"Your label: {CLASS_NAMES[item.label]} ({item.status})"
        if group_conflicts:
            text += " — ⚠ images of its near-duplicate group have other labels"
        self.status.setText(text)
