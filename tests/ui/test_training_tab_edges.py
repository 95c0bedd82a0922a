"""The training tab's first-hour edges: an empty folder field, stale results, a frozen bar after a cancel, and quick
results that must read as the smoke test they are, with every row, the legend and the matrices in view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, QRect

from allgui.core import experiments

from .helpers import close_window, open_window


@pytest.fixture(scope="module")
def quick_results(data_dir: Path) -> dict[str, Any]:
    """A real quick comparison of all six experiments (about half a minute on two cores)."""
    return experiments.run_comparison(data_dir, quick=True, device="cpu")


def _ready(qtbot, store):
    window = open_window(qtbot, store, "test-svm")
    window.resize(1400, 860)  # the window's own default size
    training = window.training
    window.tabs.setCurrentWidget(training)
    qtbot.waitUntil(training.run_button.isEnabled, timeout=60000)
    return window, training


def _inside(widget, viewport) -> bool:
    corner = widget.mapTo(viewport, QPoint(0, 0))
    return viewport.rect().contains(QRect(corner, widget.size()))


@pytest.mark.parametrize("text", ["", "  "])
def test_an_empty_folder_field_trains_nothing(qtbot, store, text: str, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # Path("") is "." : the directory an empty field used to train on
    window, training = _ready(qtbot, store)
    errors: list[str] = []
    training.error.connect(errors.append)
    training.folder_edit.setText(text)
    assert not training.start()
    assert errors and errors[-1].startswith("Choose a folder first")
    assert not window.runner.is_running("training") and training.run_button.isEnabled()
    close_window(qtbot, window)


def test_quick_results_read_as_a_smoke_test_with_everything_in_view(qtbot, store, quick_results, labelled_folder):
    window, training = _ready(qtbot, store)
    assert "smoke test" in training.quick_radio.text()
    training.show_results(quick_results)
    qtbot.wait(50)
    assert training.smoke_label.isVisibleTo(training)
    assert "smoke test of the pipeline" in training.smoke_label.text() and "mean nothing" in training.smoke_label.text()
    assert "smoke test" in training.chart.title.text

    # Every one of the six rows is visible, without scrolling.
    table = training.table
    assert table.rowCount() == 6
    for row in range(6):
        assert table.viewport().rect().contains(table.visualRect(table.model().index(row, 0))), row
    # The legend sits beside the bars, not over them.
    assert not training.chart.legend.sceneBoundingRect().intersects(training.chart.plot.vb.sceneBoundingRect())
    # What the columns mean: tooltips on the headers and a short legend for the metrics and the methods.
    tips = {table.horizontalHeaderItem(c).text(): table.horizontalHeaderItem(c).toolTip() for c in range(10)}
    assert "correctly" in tips["Accuracy"] and "seconds" in tips["Fit s"] and "equally" in tips["F1 (macro)"]
    legend = training.metrics_legend.text()
    assert all(word in legend for word in ("Accuracy", "precision", "recall", "F1", "macro", "Fit s", "SMOTE", "PCA"))
    assert training.metrics_legend.isVisibleTo(training)

    # All six confusion matrices fit the tab whole, at a readable size.
    training.views.setCurrentIndex(1)
    qtbot.wait(100)
    viewport = training.matrix_scroll.viewport()
    assert training.matrix_scroll.verticalScrollBar().maximum() == 0
    assert training.matrix_scroll.horizontalScrollBar().maximum() == 0
    assert len(training.matrix_views) == 6
    for view in training.matrix_views:
        assert _inside(view, viewport), view.getPlotItem().titleLabel.text
        assert min(view.width(), view.height()) >= 150
        (x0, x1), (y0, y1) = view.getPlotItem().vb.viewRange()
        assert x0 <= 0 and x1 >= 4 and y0 <= 0 and y1 >= 4  # the whole matrix is in its view

    # A full run is not labelled a smoke test.
    full = experiments.run_comparison(labelled_folder, names=["color-baseline"], quick=False)
    training.show_results(full)
    assert not training.smoke_label.isVisibleTo(training)
    assert "smoke" not in training.chart.title.text
    close_window(qtbot, window)


def test_starting_a_run_clears_old_results_and_a_cancel_resets_the_bar(qtbot, store, quick_results, labelled_folder):
    window, training = _ready(qtbot, store)
    training.show_results(quick_results)
    assert training.table.rowCount() == 6 and training.save_button.isEnabled()
    training.full_radio.setChecked(True)
    training.set_selected(["cnn"])
    assert training.start(labelled_folder)
    # The quick table, caption, chart and matrices would pass for this run's results: all gone.
    assert training.table.rowCount() == 0 and training.results is None
    assert training.split_label.text() == "" and not training.smoke_label.isVisibleTo(training)
    assert training.chart.items == [] and training.matrix_views == []
    assert not training.save_button.isEnabled()
    qtbot.waitUntil(lambda: "cnn: epoch" in training.progress.format(), timeout=120000)
    with qtbot.waitSignal(training.finished, timeout=10000) as blocker:
        training.cancel()
    assert blocker.args == [None]
    assert training.progress.format() == "cancelled" and training.progress.value() == 0
    assert training.table.rowCount() == 0
    assert window.runner.wait(60000)
    qtbot.wait(700)  # longer than the bar's repaint interval: no late value lands after the reset
    assert training.progress.format() == "cancelled" and training.progress.value() == 0
    assert training.log_view.toPlainText().rstrip().endswith("cancelled")
    assert training.progress.maximum() == 100 and training.run_button.isEnabled()
    close_window(qtbot, window)


def test_matrix_grid_picks_the_columns_that_make_the_largest_cells() -> None:
    from allgui.ui.charts import MatrixGrid

    assert MatrixGrid.columns_for(6, 1350, 230) == 6  # a wide, low tab: one row
    assert MatrixGrid.columns_for(6, 700, 500) == 3  # a squarer one: two rows of three
    assert MatrixGrid.columns_for(1, 300, 300) == 1
