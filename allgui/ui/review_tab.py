"""Point-and-click review: image list, the selected image with probabilities, attention, duplicates and labels."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from allgui.core.classes import CLASS_NAMES
from allgui.core.duplicates import find_groups
from allgui.core.hashing import hash_images
from allgui.core.imageio import ImageReadError, read_rgb
from allgui.core.label_conflicts import conflicting_groups
from allgui.core.models.base import Attention, Classifier
from allgui.core.paths import user_data_dir
from allgui.core.progress import check
from allgui.core.review_session import ReviewSession, autosave_path
from allgui.core.scan import ScanResult, scan_images
from allgui.core.settings import Settings
from allgui.ui.attention_view import AttentionPanel, block_differences
from allgui.ui.charts import ClassBarChart
from allgui.ui.drift_warning import DriftWarning
from allgui.ui.image_view import ImagePanel
from allgui.ui.model_controller import ModelController
from allgui.ui.review_table import ReviewFilter, ReviewTableModel
from allgui.ui.workers import Task, TaskRunner

BATCH = 32
HASH_WORKERS = 2  # 4 hashed no faster next to the GUI thread, and starved it of the GIL at the start
HASH_DELAY_S = 0.05
AVERAGE_SAMPLE = 24  # images per class behind the class-average excitation
PREFETCH_OFFSETS = (1, 2, -1)  # rows whose attention is computed ahead, relative to the selected one
WARM_SIZE = 64  # pixels of the image whose attention builds the attention plot's items ahead of the first click
AVERAGES_MESSAGE = "comparing attention with typical images of each class"
DUPLICATES_TIP = (
    "Images that look the same (near-duplicates: the same field photographed twice, a re-saved copy) or are the same "
    "file. Experts: grouped by 64-bit perceptual hash (pHash); near-duplicates differ in at most the number of bits "
    "set in Preferences (the Hamming distance), identical files have the same SHA-256."
)


# ---- work done in the thread pool (plain core calls) ----------------------------------------------------------------
def scan_task(task: Task, paths: Sequence[Path]) -> ScanResult:
    return scan_images(paths, task.progress, task.cancel)


def hash_task(task: Task, paths: Sequence[Path], threshold: int) -> tuple[list, list]:
    # Let the GUI thread paint the new list and image first: the hashing threads would slow that paint (GIL).
    time.sleep(HASH_DELAY_S)
    check(task.cancel)
    records = hash_images(
        paths,
        progress=lambda d, t, m: task.progress(d, t, f"duplicates: {m}"),
        cancel=task.cancel,
        workers=HASH_WORKERS,
    )
    return records, find_groups(records, threshold)


def batch_predict(classifier: Classifier) -> Any:
    """The SE-CNN's fast batched path (allgui.core.inference; same predictions, to bfloat16 rounding where the CPU
    uses it) where it applies, else ``predict``."""
    if "allgui.core.models.secnn" in sys.modules:  # only then can the classifier be an SE-CNN; spares torch otherwise
        from allgui.core.inference import fast_path

        fast = fast_path(classifier)
        if fast is not None:
            return fast.predict
    return classifier.predict


def predict_task(task: Task, classifier: Classifier, paths: Sequence[Path]) -> int:
    """Predict in batches; each image becomes ``(index, prediction, None)`` or ``(index, None, error)``."""
    total = len(paths)
    predict = batch_predict(classifier)
    for start in range(0, total, BATCH):
        check(task.cancel)
        images, indices = [], []
        for index in range(start, min(start + BATCH, total)):
            try:
                images.append(classifier.read(paths[index]))
                indices.append(index)
            except ImageReadError as error:
                task.partial((index, None, error.reason))
        if images:
            for index, prediction in zip(indices, predict(images), strict=True):
                task.partial((index, prediction, None))
        done = min(start + BATCH, total)
        task.progress(done, total, f"classified {done} of {total} images")
    return total


def attention_task(task: Task, classifier: Classifier, path: Path, key: Any) -> tuple[Any, Attention | None]:
    return key, classifier.attention(classifier.read(path))


def prefetch_task(task: Task, classifier: Classifier, wanted: list[tuple[Any, Path]], cache: dict) -> int:
    """Fill the attention cache for images the technician is likely to open next (plain dict writes are atomic)."""
    for key, path in wanted:
        check(task.cancel)
        if key not in cache:
            try:
                cache[key] = classifier.attention(classifier.read(path))
            except ImageReadError:
                continue
    return len(wanted)


def warm_attention_task(task: Task, classifier: Classifier) -> Attention | None:
    """The model's attention for a plain grey image: only its block layout matters (see ReviewTab._warm_attention)."""
    return classifier.attention(Image.new("RGB", (WARM_SIZE, WARM_SIZE), (200, 190, 210)))


def class_average_task(task: Task, classifier: Classifier, by_class: dict[int, list[Path]]) -> tuple[dict, dict]:
    """Per predicted class, over a sample of its loaded images: the mean SE excitation per block, with the number of
    images, and how far those images usually lie from that mean (per block, the median of their differences).

    The usual distance is what makes one image's distance readable: without it a bar has no scale.
    """
    averages: dict[int, tuple[list[np.ndarray], int]] = {}
    typical: dict[int, list[float]] = {}
    total = sum(len(paths) for paths in by_class.values())
    done = 0
    for class_index, paths in by_class.items():
        images: list[list[np.ndarray]] = []
        for path in paths:
            check(task.cancel)
            done += 1
            try:
                attention = classifier.attention(classifier.read(path))
            except ImageReadError:
                continue
            if attention is None:
                return {}, {}
            images.append([np.asarray(e, dtype=np.float64) for e in attention.excitations])
            task.progress(done, total, AVERAGES_MESSAGE)
        if images:
            means = [np.mean([image[block] for image in images], axis=0) for block in range(len(images[0]))]
            averages[class_index] = (means, len(images))
            distances = np.array([block_differences(image, means) for image in images])
            typical[class_index] = np.median(distances, axis=0).tolist()
    return averages, typical


def has_attention(classifier: Classifier | None) -> bool:
    return classifier is not None and type(classifier).attention is not Classifier.attention


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
        self.attention_cache: dict[tuple[str, int], Attention | None] = {}
        self.class_averages: dict[int, tuple[list[np.ndarray], int]] = {}
        self.class_typical: dict[int, list[float]] = {}  # per class and block, the usual distance from the average
        self.current_row: int | None = None
        self.predicting = False
        # Predictions wait for the duplicate hashing of a newly opened folder: run together, their ~8 threads
        # starved the GUI thread of the GIL (event-loop stalls of 300-700 ms); one after the other, neither does.
        self._predict_after_hash = False
        self._build()
        models.loaded.connect(self._model_loaded)
        if models.classifier is not None:
            self._warm_attention()

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
        for column, width in enumerate((195, 85, 72, 72, 85, 140, 200)):
            self.table.setColumnWidth(column, width)
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

        self.image_panel = ImagePanel()
        self.duplicates_box = QGroupBox("Near-duplicates of this image (look the same)")
        self.duplicates_box.setToolTip(DUPLICATES_TIP)
        self.duplicates_layout = QHBoxLayout()
        strip = QWidget()
        strip.setLayout(self.duplicates_layout)
        scroll = QScrollArea()
        scroll.setWidget(strip)
        scroll.setWidgetResizable(True)
        scroll.setFixedHeight(170)
        self.group_button = QPushButton("List only this group")
        self.group_button.setCheckable(True)
        self.group_button.setToolTip("Filter the list to this image's duplicate group")
        self.group_button.toggled.connect(self._apply_filters)
        box_layout = QVBoxLayout(self.duplicates_box)
        box_layout.addWidget(self.group_button)
        box_layout.addWidget(scroll)
        self.duplicates_box.setVisible(False)
        middle = QWidget()
        middle_layout = QVBoxLayout(middle)
        middle_layout.setContentsMargins(0, 0, 0, 0)
        middle_layout.addWidget(self.image_panel, 1)
        middle_layout.addWidget(self.duplicates_box)
        middle_layout.addWidget(self._label_box())

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
        self.splitter.setSizes([470, 520, 430])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

    def _label_box(self) -> QGroupBox:
        box = QGroupBox("Technician's label")
        grid = QGridLayout(box)
        self.label_status = QLabel("Select an image.")
        self.confirm_button = QPushButton("Confirm prediction (Enter)")
        self.confirm_button.clicked.connect(self.confirm_current)
        grid.addWidget(self.label_status, 0, 0, 1, 3)
        grid.addWidget(self.confirm_button, 0, 3, 1, 2)
        self.class_buttons = []
        for index, name in enumerate(CLASS_NAMES):
            button = QPushButton(f"{name} ({index + 1})")
            button.setToolTip(f"Set the label to {name}")
            button.clicked.connect(lambda _=False, i=index: self.label_current(i))
            grid.addWidget(button, 1, index)
            self.class_buttons.append(button)
            shortcut = QShortcut(QKeySequence(str(index + 1)), self)
            shortcut.setWhatsThis(f"Label the selected image {name} (Review tab)")  # Help → Keyboard shortcuts
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda i=index: self.label_current(i))
        clear = QPushButton("Clear")
        clear.clicked.connect(lambda: self.label_current(None))
        grid.addWidget(clear, 1, 4)
        for key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setWhatsThis("Confirm the prediction of the selected image (Review tab)")
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(self.confirm_current)
        self._enable_labels(False)
        return box

    def _enable_labels(self, enabled: bool) -> None:
        for button in [self.confirm_button, *self.class_buttons]:
            button.setEnabled(enabled)

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
        self.attention_cache.clear()
        self.class_averages.clear()
        self.class_typical.clear()
        self.current_row = None
        self.table_model.set_session(session)
        self._update_count()
        self.session_opened.emit(session)
        if len(session):
            self.select_row(0)

    def _hashed(self, result: tuple[list, list]) -> None:
        records, groups = result
        self.session.set_duplicates(records, groups)
        self._restore_autosave()
        self.table_model.rows_changed()
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
        self.attention_cache.clear()
        self.class_averages.clear()
        self.class_typical.clear()
        self._warm_attention()
        if len(self.session) and not self._predict_after_hash:  # else they start once the hashing is done
            self.start_predictions()

    def _warm_attention(self) -> None:
        """Build the attention plot for the model's blocks while the window is idle.

        The first display of a model's attention creates a pyqtgraph item per SE block on the GUI thread (150-250 ms);
        done on the first click it froze the window just as a folder's hashing and predictions started.
        """
        classifier = self.models.classifier
        if has_attention(classifier):
            self.runner.start(
                "warm", warm_attention_task, classifier, on_result=self._attention_warmed, background=True
            )

    def _attention_warmed(self, attention: Attention | None) -> None:
        panel = self.attention_panel
        if attention is None or panel.attention is not None:  # no attention, or a real one is already drawn
            return
        text = panel.message.text()
        panel.set_attention(attention, None, None)
        panel.show_message(text)  # back to what it said: nothing was selected in the meantime

    def start_predictions(self) -> None:
        classifier = self.models.classifier
        if classifier is None or not len(self.session):
            return
        self.session.model_id = self.models.current.id if self.models.current else None
        self.predicting = True
        self.runner.cancel("averages")
        self.runner.start(
            "predict",
            predict_task,
            classifier,
            [item.path for item in self.session.items],
            on_partial=self._predicted,
            on_result=self._predictions_finished,
            on_error=self._predict_failed,
            on_cancelled=self._predictions_cancelled,
        )

    def _predicted(self, results: list[tuple[int, Any, str | None]]) -> None:
        rows = []
        for index, prediction, error in results:
            if error is not None:
                self.session.set_error(index, error)
            else:
                self.session.set_prediction(
                    index, prediction.probabilities, prediction.needs_review, prediction.review_reasons
                )
            rows.append(index)
        self.table_model.rows_changed(rows)
        if self.current_row in rows:
            self.show_row(self.current_row)
        self._update_count()

    def _predictions_cancelled(self) -> None:
        self.predicting = False
        self.message.emit("Classification cancelled; the images classified so far keep their results")

    def _predict_failed(self, message: str) -> None:
        self.predicting = False
        self.error.emit(f"Classification failed: {message}")

    def _predictions_finished(self, total: int) -> None:
        self.predicting = False
        counts = self.session.counts()
        flagged = sum(item.needs_review for item in self.session.items)
        self.message.emit(
            f"Classified {total} image(s): "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f"; {flagged} to review"
        )
        self._apply_filters()
        self.predictions_done.emit()
        classifier = self.models.classifier
        if has_attention(classifier):
            by_class: dict[int, list[Path]] = {}
            for item in self.session.items:
                if item.predicted is not None and len(by_class.setdefault(item.predicted, [])) < AVERAGE_SAMPLE:
                    by_class[item.predicted].append(item.path)
            self.runner.start("averages", class_average_task, classifier, by_class, on_result=self._averages_ready)

    def _averages_ready(self, result: tuple[dict, dict]) -> None:
        self.class_averages, self.class_typical = result
        if self.current_row is not None:
            self._show_attention(self.current_row)

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
                caption += " — needs review: " + "; ".join(item.review_reasons)
        elif item.error:
            caption += f" — {item.error}"
        self.image_panel.set_image(array, caption)
        self.probability_chart.set_values(item.probabilities)
        self._show_label(row)
        self._show_duplicates(row)
        self._show_attention(row)

    def _show_attention(self, row: int) -> None:
        classifier = self.models.classifier
        item = self.session.items[row]
        if classifier is None:
            self.attention_panel.show_message("No model is loaded yet.")
            self.details_shown.emit(row)
            return
        if not has_attention(classifier):
            self.attention_panel.show_not_se(self.models.current.title if self.models.current else "this model")
            self.image_panel.set_heatmap(None)
            if item.probabilities is not None or item.error:
                self.details_shown.emit(row)
            return
        if item.error:
            self.attention_panel.show_message(f"No attention: {item.error}")
            self.details_shown.emit(row)
            return
        key = (self.models.current.id if self.models.current else "", row)
        if key in self.attention_cache:
            self._display_attention(row, self.attention_cache[key])
            self._prefetch(row)
            return
        self.runner.cancel("prefetch", notify=False)  # the clicked image first
        self.runner.start(
            "attention",
            attention_task,
            classifier,
            item.path,
            key,
            on_result=self._attention_ready,
            on_error=lambda m: self.attention_panel.show_message(f"Attention failed: {m}"),
        )

    def _attention_ready(self, result: tuple[Any, Attention | None]) -> None:
        key, attention = result
        self.attention_cache[key] = attention
        if key[1] == self.current_row:
            self._display_attention(key[1], attention)
            self._prefetch(key[1])

    def _prefetch(self, row: int) -> None:
        """Compute attention for the rows shown just below (and above) this one, where a technician goes next."""
        classifier = self.models.classifier
        model_id = self.models.current.id if self.models.current else ""
        view_row = self.proxy.mapFromSource(self.table_model.index(row, 0)).row()
        wanted = []
        for offset in PREFETCH_OFFSETS:
            index = self.proxy.index(view_row + offset, 0)
            if view_row >= 0 and index.isValid():
                other = self.proxy.mapToSource(index).row()
                item = self.session.items[other]
                if (model_id, other) not in self.attention_cache and item.error is None:
                    wanted.append(((model_id, other), item.path))
        if wanted and classifier is not None:
            self.runner.start("prefetch", prefetch_task, classifier, wanted, self.attention_cache)

    def _display_attention(self, row: int, attention: Attention | None) -> None:
        item = self.session.items[row]
        if attention is None:
            self.attention_panel.show_message("This model gave no attention for the image.")
            self.image_panel.set_heatmap(None)
        else:
            average, count = (
                self.class_averages.get(item.predicted, (None, 0)) if item.predicted is not None else (None, 0)
            )
            name = CLASS_NAMES[item.predicted] if item.predicted is not None else ""
            typical = self.class_typical.get(item.predicted) if item.predicted is not None else None
            self.attention_panel.set_attention(attention, average, item.predicted, count, name, typical)
            self.image_panel.set_heatmap(attention.heatmap)
        if item.probabilities is not None:
            self.details_shown.emit(row)

    def _show_duplicates(self, row: int) -> None:
        while self.duplicates_layout.count():
            widget = self.duplicates_layout.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        others = self.session.duplicates_of(row)
        self.duplicates_box.setVisible(bool(others))
        if not others:
            if self.group_button.isChecked():
                self.group_button.setChecked(False)
            return
        group = self.session.items[row].duplicate_group
        title = f"Near-duplicate group {group + 1}: {len(others) + 1} images that look the same"
        labels = self.table_model.conflicts.get(group)
        if labels:
            title += " — ⚠ your labels differ: " + ", ".join(CLASS_NAMES[label] for label in labels)
        self.duplicates_box.setTitle(title)
        for other, distance in [(row, 0), *others]:
            self.duplicates_layout.addWidget(self._thumbnail(other, distance, other == row))
        self.duplicates_layout.addStretch(1)

    def _thumbnail(self, row: int, distance: int | None, selected: bool) -> QToolButton:
        item = self.session.items[row]
        button = QToolButton()
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        with contextlib.suppress(ImageReadError):
            button.setIcon(to_pixmap(np.asarray(read_rgb(item.path)), 112))
        button.setIconSize(QSize(112, 112))
        exact = item.sha256 is not None and item.sha256 == self.session.items[self.current_row or 0].sha256
        label = "this image" if selected else ("identical file" if exact else "near-duplicate (looks the same)")
        button.setText(f"{item.path.name[:34]}\n{label}")
        expert = "" if selected or distance is None else f"\npHash distance {distance} of 64 bits"
        button.setToolTip(f"{item.path}{expert}")
        button.clicked.connect(lambda _=False, r=row: self.select_row(r))
        return button

    def _show_label(self, row: int) -> None:
        item = self.session.items[row]
        self._enable_labels(item.predicted is not None or item.error is None)
        self.confirm_button.setEnabled(item.predicted is not None)
        text = "Not reviewed yet." if item.label is None else f"Your label: {CLASS_NAMES[item.label]} ({item.status})"
        if item.duplicate_group in self.table_model.conflicts:
            text += " — ⚠ images of its near-duplicate group have other labels"
        self.label_status.setText(text)

    # ---- labels -------------------------------------------------------------------------------------------------
    def confirm_current(self) -> None:
        if self.current_row is not None and self.session.items[self.current_row].predicted is not None:
            self.label_current(self.session.items[self.current_row].predicted)

    def label_current(self, label: int | None) -> None:
        if self.current_row is None:
            return
        row = self.current_row
        self.session.set_label(row, label)
        self.table_model.rows_changed([row])
        group = self.session.items[row].duplicate_group
        before = self.table_model.conflicts.get(group) if group is not None else None
        self._check_label_conflicts()
        self._show_label(row)
        if group is not None and self.table_model.conflicts.get(group) != before:
            self._show_duplicates(row)  # its title says whether the group's labels differ
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
        self.drift_label.update_from(
            [{"review_reasons": i.review_reasons} for i in self.session.items if i.predicted is not None]
        )

    # ---- export -------------------------------------------------------------------------------------------------
    def has_results(self) -> bool:
        return any(item.predicted is not None or item.error for item in self.session.items)

    def export(self, path: Path) -> Path:
        return self.session.export(path)
