"""The gallery's data: a flat list of class headers and thumbnails over a :class:`ReviewSession`, and the
thumbnails themselves, decoded lazily in the thread pool and kept in a bounded cache.

One list with header rows (not one view per class): one scroll bar, one selection and keyboard navigation across
the classes, and Qt lays out rows, never a widget per image. The headers are always there (an empty class is still a
drop target), so regrouping never changes the row count: it is a sort that keeps the selection.

The rows are a :class:`QStandardItemModel` (rows, flags and sizes held in C++), not a Python list model: Qt's layout
of 3000 rows then never calls into Python. With a Python model one layout made some 8500 such calls (``rowCount``,
``sizeHint``), each waiting for the GIL while another thread ran Python: a second per regrouping next to a busy
thread, against 7 ms alone. Only the painting of the rows on screen runs Python (the delegate).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, QModelIndex, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QPixmap, QStandardItem, QStandardItemModel

from allgui.core.classes import CLASS_NAMES
from allgui.core.review_session import ReviewItem, ReviewSession
from allgui.ui.review_tasks import ThumbnailQueue, thumbnail_task
from allgui.ui.workers import TaskRunner

UNCLASSIFIED = len(CLASS_NAMES)  # the group of images without a prediction yet (pending, or unreadable)
GROUP_NAMES = (*CLASS_NAMES, "Not classified")
HEADER, THUMB = 0, 1
MIME = "application/x-allgui-review-rows"
THUMB_SIZE = 112  # half of the 224 px smear crops: JPEG draft decoding gives it without a resize
PAD = 4
CELL = QSize(THUMB_SIZE + 3 * PAD, THUMB_SIZE + 2 * PAD + 34)  # the thumbnail, then two lines of text
HEADER_HEIGHT = 30
CACHE_LIMIT = 1000  # thumbnails kept (about 50 MB); the rest are decoded again when scrolled back into view
SLOT = "thumbnails"
POSITION_ROLE = Qt.ItemDataRole.UserRole + 1  # the row's place in the gallery: what the model sorts by
THUMB_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled


@dataclass(frozen=True, slots=True)
class Entry:
    kind: int  # HEADER or THUMB
    key: int  # the group of a header, the session row of a thumbnail


@dataclass(slots=True)
class GroupCounts:
    total: int = 0
    to_review: int = 0  # flagged by the model and not yet labelled
    confirmed: int = 0
    changed: int = 0


def shown_group(item: ReviewItem) -> int:
    """The class an image is shown under: the technician's label once given, else the prediction."""
    if item.label is not None:
        return item.label
    return UNCLASSIFIED if item.predicted is None else item.predicted


def changed_by_person(item: ReviewItem) -> bool:
    return item.label is not None and item.label != item.predicted


def badge_text(item: ReviewItem) -> str:
    if item.error:
        return "unreadable"
    if not item.needs_review or not item.review_reasons:
        return "review" if item.needs_review else ""
    more = len(item.review_reasons) - 1
    return item.review_reasons[0].short + (f" +{more}" if more else "")


def _order(item: ReviewItem, row: int) -> tuple[bool, float, int]:
    # Needs review first, then the least confident: the images most likely wrong are seen first.
    return (not item.needs_review, -1.0 if item.confidence is None else item.confidence, row)


class GalleryModel(QStandardItemModel):
    """Headers and thumbnails in gallery order; ``entries`` mirrors the rows on the Python side (kind and key per
    row), so that painting and the keys never need to ask the C++ rows."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(POSITION_ROLE)
        self.session = ReviewSession()
        self.entries: list[Entry] = []
        self.counts: list[GroupCounts] = []
        self._positions: dict[Entry, int] = {}
        self.header_width = 600

    def set_session(self, session: ReviewSession) -> None:
        self.clear()
        self.session = session
        self.entries, self.counts = self._arrange()
        self._positions = {entry: position for position, entry in enumerate(self.entries)}
        rows = []
        for position, entry in enumerate(self.entries):
            row = QStandardItem()
            row.setData(position, POSITION_ROLE)
            if entry.kind == HEADER:
                row.setFlags(Qt.ItemFlag.NoItemFlags)  # not selectable, and skipped by the arrow keys
                row.setSizeHint(QSize(self.header_width, HEADER_HEIGHT))
                row.setText(self.header_text(entry.key))
            else:
                row.setFlags(THUMB_FLAGS)
                row.setSizeHint(CELL)
                row.setText(session.items[entry.key].path.name)
            rows.append(row)
        if rows:
            self.invisibleRootItem().appendRows(rows)

    def refresh(self) -> None:
        """Regroup and reorder after new predictions or labels, keeping the selection and the current image."""
        entries, self.counts = self._arrange()
        if entries != self.entries:
            positions = {entry: position for position, entry in enumerate(entries)}
            self.blockSignals(True)  # the sort below tells the views once
            for old, entry in enumerate(self.entries):
                if positions[entry] != old:
                    self.item(old).setData(positions[entry], POSITION_ROLE)
            self.blockSignals(False)
            self.sort(0)  # in C++, with the persistent indexes (the selection) following their rows
            self.entries, self._positions = entries, positions
        for group in range(len(GROUP_NAMES)):
            self.item(self.header_position(group)).setText(self.header_text(group))
        if self.entries:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.entries) - 1, 0))  # marks and captions

    def set_header_width(self, width: int) -> None:
        """Headers as wide as the view: the icon-mode flow then puts each on a line of its own."""
        if width != self.header_width:
            self.header_width = width
            for group in range(len(GROUP_NAMES) if self.entries else 0):
                self.item(self.header_position(group)).setSizeHint(QSize(width, HEADER_HEIGHT))

    def _arrange(self) -> tuple[list[Entry], list[GroupCounts]]:
        groups: list[list[int]] = [[] for _ in GROUP_NAMES]
        counts = [GroupCounts() for _ in GROUP_NAMES]
        items = self.session.items
        for row, item in enumerate(items):
            group = shown_group(item)
            groups[group].append(row)
            count = counts[group]
            count.total += 1
            if item.label is None:
                count.to_review += item.needs_review
            elif item.label == item.predicted:
                count.confirmed += 1
            else:
                count.changed += 1
        entries = []
        for group, rows in enumerate(groups):
            entries.append(Entry(HEADER, group))
            rows.sort(key=lambda r: _order(items[r], r))
            entries += [Entry(THUMB, row) for row in rows]
        return entries, counts

    # ---- lookups for the view ----------------------------------------------------------------------------------
    def position_of_row(self, row: int) -> int:
        return self._positions[Entry(THUMB, row)]

    def header_position(self, group: int) -> int:
        return self._positions[Entry(HEADER, group)]

    def group_at(self, position: int) -> int:
        """The group a header or thumbnail belongs to."""
        entry = self.entries[position]
        return entry.key if entry.kind == HEADER else shown_group(self.session.items[entry.key])

    def group_rows(self, group: int) -> list[int]:
        start = self.header_position(group) + 1
        return [e.key for e in self.entries[start : start + self.counts[group].total]]

    def header_text(self, group: int) -> str:
        count = self.counts[group]
        key = f"  (key {group + 1})" if group < UNCLASSIFIED else ""
        parts = [f"{GROUP_NAMES[group]}{key}", f"{count.total} image(s)"]
        if count.to_review:
            parts.append(f"{count.to_review} to review")
        if count.confirmed:
            parts.append(f"{count.confirmed} confirmed")
        if count.changed:
            parts.append(f"{count.changed} changed by you")
        return "  ·  ".join(parts)

    def tooltip(self, position: int) -> str:
        entry = self.entries[position]
        if entry.kind == HEADER:
            return ""
        item = self.session.items[entry.key]
        return "\n".join([str(item.path), *item_lines(item)])

    # ---- dragging (called by Qt when a drag starts, not per row) ----------------------------------------------
    def mimeTypes(self) -> list[str]:
        return [MIME]

    def mimeData(self, indexes: list[QModelIndex]) -> QMimeData:
        rows = [self.entries[i.row()].key for i in indexes if self.entries[i.row()].kind == THUMB]
        mime = QMimeData()
        mime.setData(MIME, ",".join(map(str, rows)).encode("ascii"))
        return mime

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction  # a drop relabels; nothing is removed from the model


class Thumbnails(QObject):
    """Thumbnails by path: a cached one, or None (the view paints a placeholder) while it is made in the pool.

    Requests go to a bounded newest-first queue, so the images on screen now come first after fast scrolling; the
    ones dropped from it are asked again when they are painted again.
    """

    ready = Signal()  # new thumbnails arrived: repaint

    def __init__(self, runner: TaskRunner, size: int = THUMB_SIZE, limit: int = CACHE_LIMIT, parent=None) -> None:
        super().__init__(parent)
        self.runner, self.size, self.limit = runner, size, limit
        self.queue = ThumbnailQueue()
        self.cache: OrderedDict[Path, QPixmap] = OrderedDict()
        self.failed: set[Path] = set()
        self._requested: set[Path] = set()
        self._start_timer = QTimer(self)
        self._start_timer.setSingleShot(True)
        self._start_timer.timeout.connect(self._start)

    def clear(self) -> None:
        self.runner.cancel(SLOT, notify=False)
        self.queue.clear()
        self.cache.clear()
        self.failed.clear()
        self._requested.clear()

    def get(self, path: Path) -> QPixmap | None:
        pixmap = self.cache.get(path)
        if pixmap is not None:
            self.cache.move_to_end(path)
            return pixmap
        if path not in self.failed and path not in self._requested:
            self._requested.add(path)
            self._requested.difference_update(self.queue.push(path))
            if not self._start_timer.isActive():
                self._start_timer.start(0)  # not from inside the paint that asked: starting a task emits signals
        return None

    def _start(self) -> None:
        if not len(self.queue) or self.runner.is_running(SLOT):
            return
        try:
            self.runner.start(
                SLOT,
                thumbnail_task,
                self.queue,
                self.size,
                on_partial=self._arrived,
                on_error=lambda _message: self._requested.clear(),
                on_finished=self._start,  # asked for after the worker found the queue empty
                background=True,
            )
        except RuntimeError:  # the window is closing
            self.queue.clear()

    def _arrived(self, results: list[tuple[Path, Any]]) -> None:
        for path, image in results:
            self._requested.discard(path)
            if image is None:
                self.failed.add(path)
                continue
            self.cache[path] = QPixmap.fromImage(image)
            self.cache.move_to_end(path)
        while len(self.cache) > self.limit:
            self.cache.popitem(last=False)
        self.ready.emit()


def item_lines(item: ReviewItem) -> list[str]:
    """What the tooltip and the large view say of an image below its name (plain text)."""
    lines = []
    if item.predicted is not None:
        lines.append(f"AI: {CLASS_NAMES[item.predicted]}, confidence {item.confidence:.2f}")
    if item.error:
        lines.append(item.error)
    lines += [f"⚑ needs review: {reason.text}" for reason in item.review_reasons if not item.error]
    if item.label is not None:
        lines.append(f"Your label: {CLASS_NAMES[item.label]} ({item.status})")
    return lines
