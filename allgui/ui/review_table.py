"""The review list: a table model over a :class:`ReviewSession` and a proxy that sorts and filters it."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor, QFont

from allgui.core.classes import CLASS_NAMES
from allgui.core.review_session import ReviewItem, ReviewSession
from allgui.ui.charts import CLASS_COLORS

COLUMNS = ("Image", "Predicted", "Confidence", "Reason", "Label", "Duplicate", "Error")
# Widths that show the image, class, confidence, reason and label in the list's share of a 1280x720 window.
WIDTHS = (140, 82, 78, 120, 96, 70, 200)


SORT_ROLE = Qt.ItemDataRole.UserRole + 1

Index = QModelIndex | QPersistentModelIndex


class ReviewTableModel(QAbstractTableModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.session = ReviewSession()
        # Duplicate groups whose images the technician labelled differently: group -> the labels given.
        self.conflicts: dict[int, tuple[int, ...]] = {}

    def set_session(self, session: ReviewSession) -> None:
        self.beginResetModel()
        self.session = session
        self.conflicts = {}
        self.endResetModel()

    def set_conflicts(self, conflicts: dict[int, tuple[int, ...]]) -> None:
        self.conflicts = dict(conflicts)
        self.rows_changed()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.session)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def item(self, row: int) -> ReviewItem:
        return self.session.items[row]

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        item = self.session.items[index.row()]
        column = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            text = self._text(item, column)
            if column == "Duplicate" and item.duplicate_group in self.conflicts:
                text += " ⚠ labels differ"
            return text
        if role == SORT_ROLE:
            return self._sort_value(item, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == "Reason" and item.review_reasons:
                return "; ".join(reason.text for reason in item.review_reasons)
            if column in ("Image", "Error"):
                return item.error or str(item.path)
            if column == "Duplicate" and item.duplicate_group is not None:
                return self._duplicate_tip(item.duplicate_group)
            if column == "Label" and item.label is not None:
                by = f" by {item.reviewed_by}" if item.reviewed_by else ""
                ai = (
                    f" (AI: {CLASS_NAMES[item.predicted]})"
                    if item.status == "corrected" and item.predicted is not None
                    else ""
                )
                return f"{CLASS_NAMES[item.label]}: {item.status}{by}{ai}"
        if role == Qt.ItemDataRole.ForegroundRole and column == "Predicted" and item.predicted is not None:
            # A call that needs review is not shown in the confident class colour.
            return QBrush(QColor("#777777" if item.needs_review else QColor(CLASS_COLORS[item.predicted]).darker(140)))
        if role == Qt.ItemDataRole.FontRole and column in ("Predicted", "Confidence") and item.needs_review:
            font = QFont()
            font.setItalic(True)
            return font
        if role == Qt.ItemDataRole.BackgroundRole:
            if item.error:
                return QBrush(QColor("#fde2e1"))
            if column == "Duplicate" and item.duplicate_group in self.conflicts:
                return QBrush(QColor("#ffe9a8"))
        return None

    def _duplicate_tip(self, group: int) -> str:
        tip = (
            f"Near-duplicate group {group + 1}: images that look the same or are the same file "
            "(experts: perceptual-hash (pHash) distance within the Preferences limit, or equal SHA-256)"
        )
        labels = self.conflicts.get(group)
        if labels:
            names = ", ".join(CLASS_NAMES[label] for label in labels)
            tip += f"\n⚠ You gave its images different labels ({names}): images that look the same should get one."
        return tip

    @staticmethod
    def _text(item: ReviewItem, column: str) -> str:
        if column == "Image":
            return item.path.name
        if column == "Predicted":
            return "" if item.predicted is None else CLASS_NAMES[item.predicted]
        if column == "Confidence":
            return "" if item.confidence is None else f"{item.confidence:.2f}"
        if column == "Reason":  # why a person must look, in a few words (the whole reasons in the tooltip)
            return "⚑ " + ", ".join(reason.short for reason in item.review_reasons) if item.needs_review else ""
        if column == "Duplicate":
            return "" if item.duplicate_group is None else f"dup {item.duplicate_group + 1}"
        if column == "Label":  # as the gallery marks it: ✓ confirmed, ✎ corrected (the words in the tooltip)
            return (
                "" if item.label is None else f"{'✓' if item.status == 'confirmed' else '✎'} {CLASS_NAMES[item.label]}"
            )
        return item.error or ""

    @staticmethod
    def _sort_value(item: ReviewItem, column: str) -> Any:
        if column == "Confidence":
            return -1.0 if item.confidence is None else item.confidence
        if column == "Predicted":
            return -1 if item.predicted is None else item.predicted
        if column == "Reason":
            return int(item.needs_review)
        if column == "Duplicate":
            return -1 if item.duplicate_group is None else item.duplicate_group
        if column == "Label":
            return -1 if item.label is None else item.label
        return ReviewTableModel._text(item, column).lower()

    def rows_changed(self, rows: list[int] | None = None) -> None:
        """Tell the views that some (or all) rows got new results."""
        if not len(self.session):
            return
        first, last = (0, len(self.session) - 1) if not rows else (min(rows), max(rows))
        self.dataChanged.emit(self.index(first, 0), self.index(last, len(COLUMNS) - 1))


class ReviewFilter(QSortFilterProxyModel):
    """Filter by predicted class, by review flag and by duplicate group membership."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.class_index: int | None = None
        self.review: str = "all"  # all | flagged | unflagged | labelled
        self.duplicates_only = False
        self.group: int | None = None

    def set_filters(
        self,
        class_index: int | None = None,
        review: str = "all",
        duplicates_only: bool = False,
        group: int | None = None,
    ) -> None:
        self.beginFilterChange()
        self.class_index, self.review, self.duplicates_only, self.group = class_index, review, duplicates_only, group
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        item: ReviewItem = self.sourceModel().item(source_row)  # type: ignore[attr-defined]
        if self.class_index is not None and item.predicted != self.class_index:
            return False
        if self.review == "flagged" and not item.needs_review:
            return False
        if self.review == "unflagged" and item.needs_review:
            return False
        if self.review == "labelled" and item.label is None:
            return False
        if self.duplicates_only and item.duplicate_group is None:
            return False
        return self.group is None or item.duplicate_group == self.group
