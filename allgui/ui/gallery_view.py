"""The gallery's view: a QListView in icon mode whose delegate paints headers and thumbnails (no widget per image),
each thumbnail drawn once per state and then copied, and the technician's keys, clicks and drags on it."""

from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import QEvent, QItemSelection, QItemSelectionModel, QModelIndex, QRect, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QDragMoveEvent,
    QDropEvent,
    QFont,
    QHelpEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolTip,
)

from allgui.core.classes import CLASS_NAMES
from allgui.core.review_session import ReviewItem
from allgui.ui.charts import CLASS_COLORS
from allgui.ui.gallery_model import (
    CELL,
    HEADER,
    MIME,
    PAD,
    THUMB_SIZE,
    UNCLASSIFIED,
    GalleryModel,
    Thumbnails,
    badge_text,
    changed_by_person,
    shown_group,
)

SPACING = 4
CARD_LIMIT = 400  # drawn thumbnails kept: four screens or more (about 30 MB)
CHANGED_COLOR = QColor("#D55E00")  # vermilion: a person changed the class (not a class colour)
CONFIRMED_COLOR = QColor("#1b7f3b")
UNSURE_COLOR = QColor("#6b6b6b")
BADGE_COLOR = QColor("#ffe08a")
CLASS_KEYS = {Qt.Key.Key_1: 0, Qt.Key.Key_2: 1, Qt.Key.Key_3: 2, Qt.Key.Key_4: 3}
CLEAR_KEYS = (Qt.Key.Key_Backspace, Qt.Key.Key_Delete)
CONFIRM_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
OWN_KEYS = (*CLASS_KEYS, *CLEAR_KEYS, *CONFIRM_KEYS, Qt.Key.Key_Space)
# What the keys above do, for Help → Keyboard shortcuts (the view reads them in keyPressEvent, not as QShortcuts).
KEY_HELP = (
    ("1 – 4", "Move the selected thumbnails to Benign, Early Pre-B, Pre-B or Pro-B (Review tab, gallery)"),
    ("Return", "Confirm the class shown for the selected thumbnails (Review tab, gallery)"),
    ("Backspace, Del", "Clear the labels of the selected thumbnails (Review tab, gallery)"),
    ("Space", "Show the current thumbnail large, with its probabilities (Review tab, gallery)"),
    ("Arrows, Shift+arrows, Ctrl+click", "Move, extend the selection, add to it (Review tab, gallery)"),
)


class GalleryDelegate(QStyledItemDelegate):
    def __init__(self, model: GalleryModel, thumbnails: Thumbnails, view: QListView) -> None:
        super().__init__(view)
        self.model, self.thumbnails, self.view = model, thumbnails, view
        self.cards: OrderedDict[tuple, QPixmap] = OrderedDict()  # drawn thumbnails, by image and state

    # No sizeHint here: the sizes are in the model's rows, so that Qt's layout never calls into Python.

    def helpEvent(
        self, event: QHelpEvent, view: QAbstractItemView, option: QStyleOptionViewItem, index: QModelIndex
    ) -> bool:
        if event.type() == QEvent.Type.ToolTip and index.isValid():
            text = self.model.tooltip(index.row())
            if text:
                QToolTip.showText(event.globalPos(), text, view)
                return True
        return super().helpEvent(event, view, option, index)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        entry = self.model.entries[index.row()]
        if entry.kind == HEADER:
            painter.save()
            self._paint_header(painter, option, entry.key)
            painter.restore()
        else:
            self._paint_thumbnail(painter, option, entry.key)

    def _paint_header(self, painter: QPainter, option: QStyleOptionViewItem, group: int) -> None:
        rect = option.rect
        painter.fillRect(rect, QColor("#eceff3"))
        colour = QColor(CLASS_COLORS[group]) if group < UNCLASSIFIED else UNSURE_COLOR
        painter.fillRect(QRect(rect.x(), rect.y(), 6, rect.height()), colour)
        font = QFont(option.font)
        font.setBold(True)
        painter.setFont(font)
        # Headers are disabled rows (so the arrow keys skip them): not the disabled palette's grey text.
        painter.setPen(self.view.palette().color(QPalette.ColorGroup.Active, QPalette.ColorRole.Text))
        text_rect = rect.adjusted(14, 0, -6, 0)
        painter.drawText(
            text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, self.model.header_text(group)
        )

    def _paint_thumbnail(self, painter: QPainter, option: QStyleOptionViewItem, row: int) -> None:
        item = self.model.session.items[row]
        pixmap = self.thumbnails.get(item.path)
        failed = item.path in self.thumbnails.failed
        shown = pixmap.cacheKey() if pixmap is not None else failed
        key = (item.path, shown, item.label, item.predicted, item.needs_review, item.confidence, item.error)
        card = self.cards.get(key)
        if card is None:
            card = self.cards[key] = self._card(item, pixmap, failed, option)
            while len(self.cards) > CARD_LIMIT:
                self.cards.popitem(last=False)
        else:
            self.cards.move_to_end(key)
        if option.state & QStyle.StateFlag.State_Selected:
            highlight = QColor(option.palette.highlight().color())
            highlight.setAlpha(110)
            painter.fillRect(option.rect, highlight)
        painter.drawPixmap(option.rect.topLeft(), card)

    def _card(self, item: ReviewItem, pixmap: QPixmap | None, failed: bool, option: QStyleOptionViewItem) -> QPixmap:
        """The thumbnail with its frame, badge, mark and captions, drawn once per state: painting a screen of them
        is then a copy each (the painting runs Python, which waits for the GIL while other threads work)."""
        ratio = self.view.devicePixelRatioF()
        card = QPixmap(CELL * ratio)
        card.setDevicePixelRatio(ratio)
        card.fill(Qt.GlobalColor.transparent)
        painter = QPainter(card)
        try:
            self._draw_card(painter, item, pixmap, failed, option)
        finally:
            painter.end()
        return card

    def _draw_card(
        self, painter: QPainter, item: ReviewItem, pixmap: QPixmap | None, failed: bool, option: QStyleOptionViewItem
    ) -> None:
        image_rect = QRect((CELL.width() - THUMB_SIZE) // 2, PAD, THUMB_SIZE, THUMB_SIZE)
        if pixmap is not None:
            size = pixmap.size().scaled(image_rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(image_rect.center())
            painter.drawPixmap(target, pixmap)
        else:
            painter.fillRect(image_rect, QColor("#e4e4e4"))
            painter.setPen(UNSURE_COLOR)
            unreadable = item.error is not None or failed
            painter.drawText(image_rect, Qt.AlignmentFlag.AlignCenter, "unreadable" if unreadable else "…")

        group = shown_group(item)
        tentative = item.label is None and (item.needs_review or item.predicted is None)
        if tentative:  # the model's doubt: a thin dashed grey frame, never the confident class colour
            painter.setPen(QPen(UNSURE_COLOR, 2, Qt.PenStyle.DashLine))
        else:
            painter.setPen(QPen(QColor(CLASS_COLORS[group]) if group < UNCLASSIFIED else UNSURE_COLOR, 3))
        painter.drawRect(image_rect.adjusted(1, 1, -1, -1))

        small = QFont(option.font)
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.82))
        badge = badge_text(item) if item.label is None else ""
        if badge:
            self._badge(painter, small, image_rect, badge)
        if item.label is not None:
            self._mark(painter, small, image_rect, changed_by_person(item))

        painter.setFont(small)
        metrics = painter.fontMetrics()
        line = QRect(PAD, image_rect.bottom() + PAD, CELL.width() - 2 * PAD, metrics.height())
        painter.setPen(option.palette.text().color())
        name = metrics.elidedText(item.path.stem, Qt.TextElideMode.ElideMiddle, line.width())
        painter.drawText(line, Qt.AlignmentFlag.AlignCenter, name)
        text, colour, style = self._status(item, group)
        small.setBold(style == "bold")
        small.setItalic(style == "italic")
        painter.setFont(small)
        painter.setPen(colour)
        line.translate(0, metrics.height() + 1)
        status = painter.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, line.width())
        painter.drawText(line, Qt.AlignmentFlag.AlignCenter, status)

    @staticmethod
    def _status(item, group: int) -> tuple[str, QColor, str]:  # noqa: ANN001 - a ReviewItem
        """The second caption line: who decided the class, and how sure the model was."""
        if item.error:
            return "could not be read", UNSURE_COLOR, "italic"
        if item.predicted is None:
            return "classifying…", UNSURE_COLOR, "italic"
        if changed_by_person(item):
            return f"✎ AI: {CLASS_NAMES[item.predicted]}", CHANGED_COLOR, "bold"
        if item.label is not None:
            return f"✓ confirmed · {item.confidence:.2f}", CONFIRMED_COLOR, "bold"
        if item.needs_review:
            return f"to review · {item.confidence:.2f}", UNSURE_COLOR, "italic"
        return f"{item.confidence:.2f}", QColor(CLASS_COLORS[group]).darker(150), "bold"

    @staticmethod
    def _badge(painter: QPainter, font: QFont, image_rect: QRect, text: str) -> None:
        painter.setFont(font)
        metrics = painter.fontMetrics()
        width = min(image_rect.width() - 6, metrics.horizontalAdvance(text) + 8)
        badge = QRect(image_rect.x() + 3, image_rect.y() + 3, width, metrics.height() + 2)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(BADGE_COLOR)
        painter.drawRoundedRect(badge, 3, 3)
        painter.setPen(QColor("#3a2a00"))
        painter.drawText(
            badge, Qt.AlignmentFlag.AlignCenter, metrics.elidedText(text, Qt.TextElideMode.ElideRight, width - 4)
        )

    @staticmethod
    def _mark(painter: QPainter, font: QFont, image_rect: QRect, changed: bool) -> None:
        """A corner mark: ✎ where a person changed the class, ✓ where they confirmed it."""
        mark = QRect(image_rect.right() - 22, image_rect.y() + 3, 19, 19)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(CHANGED_COLOR if changed else CONFIRMED_COLOR)
        painter.drawEllipse(mark)
        bold = QFont(font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(QColor("white"))
        painter.drawText(mark, Qt.AlignmentFlag.AlignCenter, "✎" if changed else "✓")


class GalleryView(QListView):
    """Keys 1-4 move the selection to a class, Backspace/Delete clear its labels, Enter confirms it as shown,
    Space toggles the large preview; a click on a header selects its class; a drag onto a class moves there."""

    labels_chosen = Signal(object)  # session row -> class index, or None to clear
    preview_requested = Signal()

    def __init__(self, model: GalleryModel, thumbnails: Thumbnails, parent=None) -> None:
        super().__init__(parent)
        self.gallery = model
        self.setModel(model)
        self.delegate = GalleryDelegate(model, thumbnails, self)
        self.setItemDelegate(self.delegate)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)  # static: the row-wrapping layout, and no free item moving
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setSpacing(SPACING)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)  # the header width never flip-flops
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(CELL.height() // 3)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        thumbnails.ready.connect(self.viewport().update)

    def resizeEvent(self, event: QResizeEvent) -> None:
        self.gallery.set_header_width(self.viewport().width() - 2 * SPACING - 1)
        super().resizeEvent(event)

    # ---- selection -----------------------------------------------------------------------------------------------
    def selected_rows(self) -> list[int]:
        """Session rows of the selected thumbnails, in gallery order."""
        positions = sorted(i.row() for i in self.selectionModel().selectedIndexes())
        return [self.gallery.entries[p].key for p in positions if self.gallery.entries[p].kind != HEADER]

    def current_row(self) -> int | None:
        index = self.currentIndex()
        if not index.isValid() or self.gallery.entries[index.row()].kind == HEADER:
            return None
        return self.gallery.entries[index.row()].key

    def select_row(self, row: int) -> None:
        index = self.gallery.index(self.gallery.position_of_row(row), 0)
        self.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.scrollTo(index)

    def select_group(self, group: int, add: bool = False) -> None:
        rows = self.gallery.group_rows(group)
        if not rows:
            return
        first, last = self.gallery.position_of_row(rows[0]), self.gallery.position_of_row(rows[-1])
        flag = QItemSelectionModel.SelectionFlag
        command = flag.Select if add else flag.ClearAndSelect
        self.selectionModel().select(QItemSelection(self.gallery.index(first, 0), self.gallery.index(last, 0)), command)
        self.selectionModel().setCurrentIndex(self.gallery.index(first, 0), flag.NoUpdate)

    def _successor(self, rows: list[int]) -> int | None:
        """The image to go on with once ``rows`` are done: the first one after them that is not one of them."""
        chosen = set(rows)
        last = max(self.gallery.position_of_row(r) for r in rows)
        for entry in self.gallery.entries[last + 1 :]:
            if entry.kind != HEADER and entry.key not in chosen:
                return entry.key
        return None

    def moveCursor(self, action: QAbstractItemView.CursorAction, modifiers: Qt.KeyboardModifier) -> QModelIndex:
        index = super().moveCursor(action, modifiers)
        if not index.isValid() or self.gallery.entries[index.row()].kind != HEADER:
            return index
        # Home, End and the page keys may land on a header: take the nearest image (forward, else back).
        entries = self.gallery.entries
        backward = action in (QAbstractItemView.CursorAction.MoveEnd, QAbstractItemView.CursorAction.MovePageUp)
        forward, back = range(index.row(), len(entries)), range(index.row(), -1, -1)
        for position in [*back, *forward] if backward else [*forward, *back]:
            if entries[position].kind != HEADER and not self.isRowHidden(position):
                return self.gallery.index(position, 0)
        return self.currentIndex()

    # ---- keys --------------------------------------------------------------------------------------------------
    def event(self, event: QEvent) -> bool:
        # The Review tab's shortcuts (1-4, Enter) label one image; here the keys act on the whole selection.
        if event.type() == QEvent.Type.ShortcutOverride and self._own_key(event):  # type: ignore[arg-type]
            event.accept()
            return True
        return super().event(event)

    @staticmethod
    def _own_key(event: QKeyEvent) -> bool:
        plain = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier == Qt.KeyboardModifier.NoModifier
        return plain and event.key() in OWN_KEYS

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if not self._own_key(event):
            super().keyPressEvent(event)
            return
        key = event.key()
        if key == Qt.Key.Key_Space:
            self.preview_requested.emit()
            return
        rows = self.selected_rows()
        if not rows:
            return
        if key in CLASS_KEYS:
            self.choose(rows, CLASS_KEYS[key])  # type: ignore[index]
        elif key in CLEAR_KEYS:
            self.choose(rows, None)
        else:  # Enter: what is shown is right (the prediction, or the class a person already chose)
            shown = {r: shown_group(self.gallery.session.items[r]) for r in rows}
            self.choose_each({r: g for r, g in shown.items() if g != UNCLASSIFIED})

    def choose(self, rows: list[int], label: int | None) -> None:
        self.choose_each(dict.fromkeys(rows, label))

    def choose_each(self, labels: dict[int, int | None]) -> None:
        """Give the labels (the tab records them in the session and regroups the gallery at once), then go on with
        the next image, as the technician works down a class."""
        if not labels:
            return
        successor = self._successor(list(labels))
        self.labels_chosen.emit(labels)
        if successor is not None:
            self.select_row(successor)

    # ---- mouse and drag ----------------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:
        index = self.indexAt(event.position().toPoint())
        if index.isValid() and self.gallery.entries[index.row()].kind == HEADER:
            add = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
            self.select_group(self.gallery.entries[index.row()].key, add)
            return
        super().mousePressEvent(event)

    def drop_group(self, event: QDragMoveEvent | QDropEvent) -> int | None:
        """The class a drag would move its images to: the header or image under the pointer."""
        if event.source() is not self or not event.mimeData().hasFormat(MIME):
            return None
        index = self.indexAt(event.position().toPoint())
        if not index.isValid():
            return None
        group = self.gallery.group_at(index.row())
        return None if group == UNCLASSIFIED else group

    def dragEnterEvent(self, event: QDragMoveEvent) -> None:
        if event.source() is self and event.mimeData().hasFormat(MIME):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if self.drop_group(event) is None:
            event.ignore()
        else:
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()

    def dropEvent(self, event: QDropEvent) -> None:
        group = self.drop_group(event)
        if group is None:
            event.ignore()
            return
        data = bytes(event.mimeData().data(MIME)).decode("ascii")
        rows = [int(r) for r in data.split(",") if r]
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
        if rows:
            self.choose(rows, group)
