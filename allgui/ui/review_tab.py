"""Point-and-click review: image list, the selected image with probabilities, attention, duplicates and labels.

This module wires the tab (its layout, the list and its filters, opening images, predictions and labels); the
gallery mode (every image as a thumbnail under its class) is :mod:`allgui.ui.gallery`, the detail panels are in
:mod:`allgui.ui.review_detail`, the attention shown for the selected image in
:mod:`allgui.ui.review_attention`, and the work in the thread pool in :mod:`allgui.ui.review_tasks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from allgui.core.attention import ClassAverage
from allgui.core.classes import CLASS_NAMES
from allgui.core.imageio import ImageReadError, read_rgb
from allgui.core.label_conflicts import conflicting_groups
from allgui.core.models.base import Attention
from allgui.core.paths import user_data_dir
from allgui.core.result import ResultRow
from allgui.core.review_session import ReviewSession, autosave_path
from allgui.core.scan import ScanResult
from allgui.core.settings import Settings
from allgui.ui.attention_view import AttentionPanel
from allgui.ui.charts import ClassBarChart
from allgui.ui.drift_warning import DriftWarning
from allgui.ui.gallery import GalleryPage
from allgui.ui.image_view import ImagePanel
from allgui.ui.model_controller import ModelController
from allgui.ui.review_attention import AttentionController
from allgui.ui.review_detail import DuplicatesBox, LabelBox
from allgui.ui.review_table import WIDTHS, ReviewFilter, ReviewTableModel
from allgui.ui.review_tasks import AVERAGES_MESSAGE, hash_task, predict_task, scan_task
from allgui.ui.workers import TaskRunner

__all__ = ["AVERAGES_MESSAGE", "ReviewTab"]  # AVERAGES_MESSAGE: the status-bar text the tests look for


class ReviewTab(QWidget):
    details_shown = Signal(int)  # session row whose probabilities (and attention, where the model has it) are shown
    predictions_done = Signal()
    duplicates_done = Signal()
    session_opened = Signal(object)  # ReviewSession
    message = Signal(str)
    error = Signal(str)

    def __init__(self, runner: TaskRunner, models: ModelController, settings: Settings, parent=None) -> None:
        super().__init__(parent)
        self.runner, self.models, self.settings = runner, models, settings
        self.session = ReviewSession()
        self.folder: Path | None = None
        self.current_row: int | None = None
        self.attention = AttentionController(self)
        # Predictions wait for the duplicate hashing of a newly opened folder: run together, their ~8 threads
        # starved the GUI thread of the GIL (event-loop stalls of 300-700 ms); one after the other, neither does.
        self._predict_after_hash = False
        self._build()
        models.loaded.connect(self._model_loaded)
        if models.classifier is not None:
            self.attention.warm()

    @property
    def attention_cache(self) -> dict[tuple[str, int], Attention | None]:
        return self.attention.cache

    @property
    def class_averages(self) -> dict[int, ClassAverage]:
        return self.attention.class_averages

    @property
    def predicting(self) -> bool:
        """Whether predictions are running (the screenshot script waits for them)."""
        return self.runner.is_running("predict")

    # ---- layout -------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.table_model = ReviewTableModel(self)
        self.proxy = ReviewFilter(self)
        self.proxy.setSourceModel(self.table_model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        # No sort column until the technician picks one: the folder's natural (capture) order comes first.
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        # Fixed widths: fitting columns to their contents re-reads every row on each update (seconds at 3000 rows).
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column, width in enumerate(WIDTHS):
            self.table.setColumnWidth(column, width)
        self.table.setWordWrap(False)  # else a name is cut at a hyphen, and the capture number is lost
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)

        self.class_filter = QComboBox()
        self.class_filter.addItems(["All classes", *CLASS_NAMES])
        self.review_filter = QComboBox()
        self.review_filter.addItems(["All images", "Needs review", "No review needed", "Labelled by you"])
        self.duplicates_filter = QCheckBox("Duplicates only")
        for widget in (self.class_filter, self.review_filter):
            widget.currentIndexChanged.connect(self._apply_filters)
        self.duplicates_filter.toggled.connect(self._apply_filters)
        self.count_label = QLabel("No images loaded")
        self.drift_label = DriftWarning()
        filters = QHBoxLayout()
        filters.addWidget(self.class_filter)
        filters.addWidget(self.review_filter)
        filters.addWidget(self.duplicates_filter)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(filters)
        left_layout.addWidget(self.table, 1)
        left_layout.addWidget(self.count_label)
        left_layout.addWidget(self.drift_label)
        # Wide enough for the image, class, confidence, reason and label columns (at 1280x720 and up).
        scrollbar = self.table.verticalScrollBar().sizeHint().width()
        left.setMinimumWidth(sum(WIDTHS[:5]) + scrollbar + 2 * self.table.frameWidth())

        self.image_panel = ImagePanel()
        self.duplicates_box = DuplicatesBox()
        self.duplicates_box.chosen.connect(self.select_row)
        self.duplicates_layout = self.duplicates_box.strip_layout
        self.group_button = self.duplicates_box.group_button
        self.group_button.toggled.connect(self._apply_filters)
        self.label_box = LabelBox(self)
        self.label_box.labelled.connect(self.label_current)
        self.label_box.confirmed.connect(self.confirm_current)
        middle = QWidget()
        middle_layout = QVBoxLayout(middle)
        middle_layout.setContentsMargins(0, 0, 0, 0)
        middle_layout.addWidget(self.image_panel, 1)
        middle_layout.addWidget(self.duplicates_box)
        middle_layout.addWidget(self.label_box)

        self.probability_chart = ClassBarChart("Class probabilities", "probability")
        self.probability_chart.setMinimumHeight(170)
        self.attention_panel = AttentionPanel()
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.probability_chart)
        right.addWidget(self.attention_panel)
        right.setSizes([220, 480])

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(middle)
        self.splitter.addWidget(right)
        self.splitter.setSizes([560, 420, 330])

        self.gallery = GalleryPage(self.runner)
        self.gallery.labels_chosen.connect(self.set_labels)
        self.gallery.current_changed.connect(self._gallery_current)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.splitter)
        self.pages.addWidget(self.gallery)
        layout = QVBoxLayout(self)
        layout.addLayout(self._mode_switch())
        layout.addWidget(self.pages, 1)
        self.set_view_mode(self.settings.review_view)

    def _mode_switch(self) -> QHBoxLayout:
        """List | Gallery: one image at a time with its details, or every image as a thumbnail under its class."""
        self.mode_buttons = QButtonGroup(self)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(QLabel("View:"))
        tips = (
            "One image at a time: the list, the image with its probabilities, attention and near-duplicates",
            "Every image as a thumbnail under its class, the doubtful ones first: verify a whole run",
        )
        for number, (name, tip) in enumerate(zip(("List", "Gallery"), tips, strict=True)):
            button = QToolButton()
            button.setText(name)
            button.setToolTip(tip)
            button.setCheckable(True)
            button.setChecked(number == 0)
            self.mode_buttons.addButton(button, number)
            bar.addWidget(button)
        self.mode_buttons.idClicked.connect(lambda number: self.set_view_mode(("list", "gallery")[number]))
        bar.addStretch(1)
        return bar

    @property
    def view_mode(self) -> str:
        return "gallery" if self.pages.currentWidget() is self.gallery else "list"

    def set_view_mode(self, mode: str) -> None:
        """Show the list (``"list"``) or the gallery (``"gallery"``), on the same current image."""
        gallery = mode == "gallery"
        self.settings.review_view = "gallery" if gallery else "list"  # the next start opens the same view
        self.mode_buttons.button(int(gallery)).setChecked(True)
        if gallery == (self.view_mode == "gallery"):
            return
        self.pages.setCurrentWidget(self.gallery if gallery else self.splitter)
        if gallery:
            self.gallery.select_row(self.current_row)
            self.gallery.view.setFocus()
        elif self.current_row is not None:
            self.select_row(self.current_row)  # shows its details, which the gallery did not keep up to date
            self.table.setFocus()

    def _gallery_current(self, row: int) -> None:
        self.current_row = row  # the label box's shortcuts, and the list when shown again, follow the gallery

    # ---- opening images -----------------------------------------------------------------------------------------
    def open_paths(self, paths: Sequence[str | Path]) -> bool:
        """Replace the list with ``paths`` (scanned in the background); False when the technician kept the list."""
        paths = [Path(p) for p in paths]
        if not self.may_replace(paths):
            self.message.emit("Kept the current list and its labels")
            return False
        folder = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
        replaced = self._describe_list()
        self.message.emit(f"Scanning {len(paths)} item(s)…")
        self.runner.start(
            "scan",
            scan_task,
            paths,
            on_result=lambda r: self._scanned(r, folder, replaced),
            on_error=self.error.emit,
        )
        return True

    def _describe_list(self) -> str:
        if not len(self.session):
            return ""
        where = f" of {self.folder}" if self.folder is not None else ""
        labelled = len(self.session.labelled())
        return f"{len(self.session)} image(s){where}" + (f", {labelled} labelled by you" if labelled else "")

    def may_replace(self, paths: Sequence[Path]) -> bool:
        """Ask before a new list replaces one holding the technician's labels; True without labels to lose."""
        labelled = len(self.session.labelled())
        if not labelled:
            return True
        if self.folder is not None:
            kept = f"They are saved for {self.folder} and come back when you open that folder again."
        else:
            kept = "They are not saved: choose Cancel, then File → Save review (Ctrl+S) to keep them."
        new = str(paths[0]) if len(paths) == 1 else f"{len(paths)} items"
        answer = QMessageBox.question(
            self,
            "Replace the image list?",
            f"The list holds {labelled} image(s) you labelled. Opening {new} replaces it.\n\n{kept}",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _scanned(self, result: ScanResult, folder: Path | None, replaced: str = "") -> None:
        self.runner.cancel("hash")
        self.runner.cancel("predict")
        self.runner.cancel("averages")
        session = ReviewSession(result.files, folder)
        session.duplicate_threshold = self.settings.duplicate_threshold
        self.folder = folder
        self.set_session(session)
        problems = "" if not result.problems else f"; {len(result.problems)} path(s) could not be read"
        replacing = f"; it replaced the list of {replaced}" if replaced else ""
        self.message.emit(f"Loaded {len(result.files)} image(s){problems}{replacing}")
        if not result.files:
            return
        self._predict_after_hash = True
        self.refresh_duplicates()

    def refresh_duplicates(self) -> None:
        """Hash the loaded images and group them at the current duplicate threshold (in the background)."""
        if not len(self.session):
            return
        self.session.duplicate_threshold = self.settings.duplicate_threshold
        self.runner.start(
            "hash",
            hash_task,
            [item.path for item in self.session.items],
            self.settings.duplicate_threshold,
            on_result=self._hashed,
            on_error=self._hash_failed,
            on_cancelled=self._hash_cancelled,
        )

    def _hash_failed(self, message: str) -> None:
        self.error.emit(message)
        self._start_pending_predictions()

    def _hash_cancelled(self) -> None:
        self._predict_after_hash = False  # the technician stopped the work; predictions stay theirs to restart

    def _start_pending_predictions(self) -> None:
        if self._predict_after_hash:
            self._predict_after_hash = False
            self.start_predictions()

    def set_session(self, session: ReviewSession) -> None:
        self.session = session
        self.attention.clear()
        self.current_row = None
        self.table_model.set_session(session)
        self.gallery.set_session(session)
        self._update_count()
        self.session_opened.emit(session)
        if len(session):
            self.select_row(0)
            if self.view_mode == "gallery":
                self.gallery.select_row(0)

    def _hashed(self, result: tuple[list, list]) -> None:
        records, groups = result
        self.session.set_duplicates(records, groups)
        self._restore_autosave()
        self.table_model.rows_changed()
        self.gallery.refresh()
        grouped = sum(len(g.members) for g in groups)
        self.message.emit(f"Near-duplicates (look the same): {len(groups)} group(s) holding {grouped} image(s)")
        self._check_label_conflicts()  # restored labels, or the new grouping, may disagree
        self._update_count()
        if self.current_row is not None:
            self._show_duplicates(self.current_row)
        self.duplicates_done.emit()
        self._start_pending_predictions()

    def _restore_autosave(self) -> None:
        if self.folder is None:
            return
        path = autosave_path(user_data_dir(), self.folder)
        if path.is_file():
            try:
                restored = self.session.restore_labels(ReviewSession.load(path))
            except (OSError, ValueError, KeyError) as error:
                self.error.emit(f"Earlier labels in {path} could not be read: {error}")
                return
            if restored:
                self.message.emit(f"Restored {restored} label(s) you gave these images earlier")

    # ---- predictions --------------------------------------------------------------------------------------------
    def _model_loaded(self, loaded: Any) -> None:
        self.attention.clear()
        self.attention.warm()
        if len(self.session) and not self._predict_after_hash:  # else they start once the hashing is done
            self.start_predictions()

    def start_predictions(self) -> None:
        loaded = self.models.current
        if loaded is None or not len(self.session):
            return
        self.session.model_id = loaded.id
        self.runner.cancel("averages")
        self.runner.start(
            "predict",
            predict_task,
            loaded,
            [item.path for item in self.session.items],
            on_partial=self._predicted,
            on_result=self._predictions_finished,
            on_error=self._predict_failed,
            on_cancelled=self._predictions_cancelled,
        )

    def _predicted(self, results: list[tuple[int, ResultRow]]) -> None:
        rows = []
        for index, row in results:
            if row.error or row.probabilities is None:
                self.session.set_error(index, row.error or "not classified")
            else:
                self.session.set_prediction(index, row.probabilities, row.needs_review, row.reasons or ())
            rows.append(index)
        self.table_model.rows_changed(rows)
        self.gallery.refresh()
        if self.current_row in rows and self.view_mode == "list":
            self.show_row(self.current_row)
        self._update_count()

    def _predictions_cancelled(self) -> None:
        self.message.emit("Classification cancelled; the images classified so far keep their results")

    def _predict_failed(self, message: str) -> None:
        self.error.emit(f"Classification failed: {message}")

    def _predictions_finished(self, total: int) -> None:
        counts = self.session.counts()
        flagged = sum(item.needs_review for item in self.session.items)
        self.message.emit(
            f"Classified {total} image(s): "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f"; {flagged} to review"
        )
        self._apply_filters()
        self.gallery.refresh()
        self.predictions_done.emit()
        self.attention.start_averages()

    # ---- selection and detail views -----------------------------------------------------------------------------
    def select_row(self, row: int) -> None:
        """Select session row ``row`` in the table (if the filters show it) and show its details."""
        source = self.table_model.index(row, 0)
        index = self.proxy.mapFromSource(source)
        if index.isValid():
            flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
            self.table.selectionModel().setCurrentIndex(index, flags)
            self.table.scrollTo(index)
        else:
            self.show_row(row)

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        if current.isValid():
            self.show_row(self.proxy.mapToSource(current).row())

    def show_row(self, row: int) -> None:
        self.current_row = row
        item = self.session.items[row]
        try:
            array = np.asarray(read_rgb(item.path))
            width, height = array.shape[1], array.shape[0]
            caption = f"{item.path.name}  ({width}×{height})"
        except ImageReadError as error:
            array, caption = None, f"{item.path.name}: {error.reason}"
        if item.predicted is not None:
            caption += f" — {CLASS_NAMES[item.predicted]}, confidence {item.confidence:.2f}"
            if item.needs_review:
                caption += " — needs review: " + "; ".join(reason.text for reason in item.review_reasons)
        elif item.error:
            caption += f" — {item.error}"
        self.image_panel.set_image(array, caption)
        self.probability_chart.set_values(item.probabilities)
        self._show_label(row)
        self._show_duplicates(row)
        self.attention.show(row)

    def _show_duplicates(self, row: int) -> None:
        self.duplicates_box.show_group(self.session, row, self.table_model.conflicts)

    def _show_label(self, row: int) -> None:
        item = self.session.items[row]
        self.label_box.show_item(item, item.duplicate_group in self.table_model.conflicts)

    # ---- labels -------------------------------------------------------------------------------------------------
    def confirm_current(self) -> None:
        if self.current_row is not None and self.session.items[self.current_row].predicted is not None:
            self.label_current(self.session.items[self.current_row].predicted)

    def label_current(self, label: int | None) -> None:
        if self.current_row is not None:
            self.set_labels({self.current_row: label})

    def set_labels(self, labels: Mapping[int, int | None]) -> None:
        """Record the technician's labels (session row -> class, None clears) from the list or the gallery."""
        if not labels:
            return
        self.session.reviewer = self.settings.reviewer  # as Preferences names them now
        for row, label in labels.items():
            self.session.set_label(row, label)
        self.table_model.rows_changed(list(labels))
        row = self.current_row
        group = None if row is None else self.session.items[row].duplicate_group
        before = self.table_model.conflicts.get(group) if group is not None else None
        self._check_label_conflicts()
        if row is not None:
            self._show_label(row)
            if group is not None and self.table_model.conflicts.get(group) != before:
                self._show_duplicates(row)  # its title says whether the group's labels differ
        if self.view_mode == "gallery":
            self.gallery.refresh_now()  # at once: the gallery goes on with the next image after regrouping
        else:
            self.gallery.refresh()
        self._update_count()
        self.autosave()

    def _check_label_conflicts(self) -> None:
        """Mark the duplicate groups whose images got different labels, and say so when one appears or changes."""
        conflicts = conflicting_groups((item.duplicate_group, item.label) for item in self.session.items)
        new = {group: labels for group, labels in conflicts.items() if self.table_model.conflicts.get(group) != labels}
        if conflicts != self.table_model.conflicts:
            self.table_model.set_conflicts(conflicts)
        if new:
            described = "; ".join(
                f"group {group + 1}: " + ", ".join(CLASS_NAMES[label] for label in labels)
                for group, labels in new.items()
            )
            self.message.emit(
                f"⚠ Images that look the same got different labels ({described}): check them again "
                "(Duplicates only, or List only this group)"
            )

    def autosave(self) -> Path | None:
        """Keep the technician's labels beside the results so that nothing is lost between runs."""
        if self.folder is None or not self.session.labelled():
            return None
        try:
            return self.session.save(autosave_path(user_data_dir(), self.folder))
        except OSError as error:
            self.error.emit(f"Labels could not be saved: {error}")
            return None

    # ---- filters ------------------------------------------------------------------------------------------------
    def _apply_filters(self) -> None:
        class_index = self.class_filter.currentIndex() - 1
        review = ("all", "flagged", "unflagged", "labelled")[self.review_filter.currentIndex()]
        group = None
        if self.group_button.isChecked() and self.current_row is not None:
            group = self.session.items[self.current_row].duplicate_group
        self.proxy.set_filters(
            None if class_index < 0 else class_index, review, self.duplicates_filter.isChecked(), group
        )
        self._update_count()

    def _update_count(self) -> None:
        total = len(self.session)
        done = sum(item.predicted is not None or item.error is not None for item in self.session.items)
        shown = self.proxy.rowCount()
        groups = len({i.duplicate_group for i in self.session.items if i.duplicate_group is not None})
        conflicts = len(self.table_model.conflicts)
        differing = f" · ⚠ {conflicts} with different labels" if conflicts else ""
        self.count_label.setText(
            f"{shown} of {total} shown · {done} classified · {groups} near-duplicate group(s){differing}"
            if total
            else "No images"
        )
        self.drift_label.update_from(self.session.rows())

    # ---- export -------------------------------------------------------------------------------------------------
    def has_results(self) -> bool:
        return any(item.predicted is not None or item.error for item in self.session.items)

    def export(self, path: Path) -> Path:
        return self.session.export(path)
