"""What a technician sees at 1280x720: the Review list shows image, class, confidence, reason and label without
scrolling, the Batch table has readable headers (the export keeps its column names) with class, confidence and
reason in view, and the List/Gallery choice is kept for the next start."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from allgui.core.export import COLUMNS as EXPORT_COLUMNS
from allgui.ui.batch_tab import TABLE_COLUMNS
from allgui.ui.review_table import COLUMNS

from .helpers import close_window, open_window

PADDING = 8  # the cell's margins in the styles Qt ships


def _needed(table, column: int, rows: range) -> int:
    """The widest text of ``column`` (header included) in the table's font, with the cell margins."""
    model, metrics = table.model(), table.fontMetrics()
    texts = [model.headerData(column, Qt.Orientation.Horizontal)] + [model.index(r, column).data() for r in rows]
    return max(metrics.horizontalAdvance(text or "") for text in texts) + PADDING


def test_review_columns_show_class_confidence_reason_and_label_at_1280x720(qtbot, store, image_folder: Path) -> None:
    window = open_window(qtbot, store, "test-secnn")
    window.resize(1280, 720)
    review = window.review
    with qtbot.waitSignals([review.predictions_done, review.duplicates_done], timeout=120000):
        window.open_paths([image_folder])
    session = review.session
    flagged = next(i for i, item in enumerate(session.items) if len(item.review_reasons) == 1)
    review.set_labels({0: session.items[0].predicted, 1: (session.items[1].predicted + 1) % 4})
    qtbot.wait(50)  # the layout settles at the new size
    assert window.width() == 1280  # nothing in the tab needs more (a long title, a row of buttons)
    table = review.table
    shown = [COLUMNS.index(name) for name in ("Image", "Predicted", "Confidence", "Reason", "Label")]
    assert shown == list(range(5))  # the first five, left to right
    assert sum(table.columnWidth(c) for c in shown) <= table.viewport().width()
    rows = range(table.model().rowCount())
    for column in shown[1:]:  # every class, confidence, single reason and label text fits its column
        assert _needed(table, column, rows) <= table.columnWidth(column), COLUMNS[column]
    assert table.model().index(0, shown[4]).data().startswith("✓")
    assert table.model().index(1, shown[4]).data().startswith("✎")
    reason = review.table_model.index(flagged, shown[3])
    assert reason.data().startswith("⚑") and reason.data(Qt.ItemDataRole.ToolTipRole)  # the whole reason on hover
    close_window(qtbot, window)


def test_batch_headers_are_readable_and_the_export_keeps_its_names(qtbot, store, image_folder: Path) -> None:
    window = open_window(qtbot, store, "test-secnn")
    window.resize(1280, 720)
    batch = window.batch
    window.tabs.setCurrentWidget(batch)
    with qtbot.waitSignal(batch.finished, timeout=120000):
        assert batch.start(image_folder)
    qtbot.wait(50)
    assert window.width() == 1280
    table, model = batch.table, batch.table_model
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers[:4] == ["Image", "Predicted", "Confidence", "Reason"]
    assert not any("_" in header for header in headers)  # no snake_case names in the table
    for column, (_, exported, _) in enumerate(TABLE_COLUMNS):
        assert exported in EXPORT_COLUMNS
        assert exported in model.headerData(column, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert sum(table.columnWidth(c) for c in range(4)) <= table.viewport().width()
    rows = range(model.rowCount())
    for column in (1, 2):
        assert _needed(table, column, rows) <= table.columnWidth(column), headers[column]
    close_window(qtbot, window)


def test_the_list_or_gallery_choice_is_kept(qtbot, store) -> None:
    window = open_window(qtbot, store, "test-secnn")
    assert window.review.view_mode == "list"
    window.review.mode_buttons.button(1).click()
    assert window.review.view_mode == "gallery"
    close_window(qtbot, window)
    again = open_window(qtbot, store, "test-secnn")
    assert again.review.view_mode == "gallery" and again.review.mode_buttons.button(1).isChecked()
    close_window(qtbot, again)
