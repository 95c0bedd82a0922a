"""Batch classification of a folder (recursively) in a worker, with a live table, rate, time left and a summary."""

from __future__ import annotations

import contextlib
import hashlib
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from allgui.core import classify
from allgui.core.classes import CLASS_KEYS, CLASS_NAMES
from allgui.core.models.store import LoadedModel
from allgui.core.paths import batch_journals_dir
from allgui.core.progress import Phase, ProgressModel, ProgressState, clock_text
from allgui.core.result import ResultRow
from allgui.core.scan import scan_images
from allgui.core.settings import Settings
from allgui.core.statefile import StateFileError, describe_os_error, read_state_bytes
from allgui.ui.charts import ClassBarChart
from allgui.ui.drift_warning import DriftWarning
from allgui.ui.model_controller import ModelController
from allgui.ui.workers import Task, TaskRunner, show_fraction, show_progress

Index = QModelIndex | QPersistentModelIndex
MAX_JOURNAL_BYTES = 1 << 30  # a journal of a few hundred thousand rows; anything bigger is not one of ours
SUMMARY_INTERVAL = 0.5  # seconds between updates of the per-class chart while rows arrive
# Scanning has no share of the bar: it is quick and its size unknown, so the bar is exactly classified / images.
BATCH_PHASES = (Phase("scanning", 0.0, "files"), Phase("classifying", 1.0, "images"))


def journal_for(folder: Path, loaded: LoadedModel) -> Path:
    """Where the batch of ``folder`` with ``loaded`` is journalled: one stable file per folder and model files."""
    key = hashlib.sha256(f"{classify.path_key(folder)}\n{classify.model_digest(loaded)}".encode()).hexdigest()
    return batch_journals_dir() / f"{key[:24]}.jsonl"


def journal_rows(journal: Path, loaded: LoadedModel) -> list[ResultRow]:
    """The finished rows an interrupted batch left in ``journal`` (read as classify's resume reads them: complete
    lines up to the first damaged one, the first row per file); none when it is missing or for another model."""
    try:
        data = read_state_bytes(journal, MAX_JOURNAL_BYTES)
    except StateFileError:  # a pipe, a link out, a huge file: not ours to read; the batch starts over
        return []
    if data is None:
        return []
    _, rows, _ = classify.read_journal(data, classify.model_digest(loaded))
    return list((rows or {}).values())


def batch_task(task: Task, loaded: LoadedModel, folder: Path, journal: Path | None = None) -> list[ResultRow]:
    """Scan ``folder`` recursively and classify every image; rows stream to the table as they are produced.

    With ``journal``, rows are journalled as they are produced and a journal left by an interrupted run of the
    same folder and model is resumed: its finished images are not classified again.
    """
    tracker = ProgressModel(BATCH_PHASES, task.report)
    tracker.begin("scanning", message=f"scanning {folder}…")
    scan = scan_images([folder], tracker.callback("scanning"), task.cancel)
    # The rate is measured from classify's first report, which counts the rows resumed from the journal as done.
    progress = tracker.callback("classifying")
    run = {"problems": scan.problems, "progress": progress, "cancel": task.cancel, "on_rows": task.extend}
    try:
        rows = classify.classify_paths(scan.files, loaded, journal=journal, resume=journal is not None, **run)
    except classify.JournalMismatchError:  # a damaged or foreign header: start this folder over
        rows = classify.classify_paths(scan.files, loaded, journal=journal, resume=False, **run)
    tracker.finish(f"{len(rows)} rows")
    return rows


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


# The table's columns: (header, the export's column it shows, width at 1280x720). Class, confidence and reason
# come first so that they show at that size; the header's tooltip names the exported column.
TABLE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("Image", "path", 250),
    ("Predicted", "predicted", 100),
    ("Confidence", "confidence", 80),
    ("Reason", "review_reasons", 150),
    ("Duplicate", "duplicate_group", 70),
    ("Error", "error", 160),
    *((f"P({name})", f"p_{key}", 90) for name, key in zip(CLASS_NAMES, CLASS_KEYS, strict=True)),
    ("Image SHA-256", "image_sha256", 120),
    ("Model", "model_id", 120),
)


def _cell(row: ResultRow, column: str, root: Path | None) -> str:
    if column == "path":
        return row.path if root is None else _relative(row.path, root)  # the folder is in the box above
    if column == "review_reasons":
        return "⚑ " + ", ".join(r.short for r in row.reasons or ()) if row.needs_review and not row.error else ""
    if column == "predicted":
        return row.predicted or ""
    if column == "confidence":
        return "" if row.confidence is None else f"{row.confidence:.3f}"
    if column.startswith("p_"):
        probabilities = row.probabilities
        return "" if probabilities is None else f"{probabilities[CLASS_KEYS.index(column[2:])]:.3f}"
    if column == "duplicate_group":
        return "" if row.duplicate_group is None else f"dup {row.duplicate_group}"
    return str(getattr(row, column) or "")


class RowsModel(QAbstractTableModel):
    """The rows of a batch under readable headers (:data:`TABLE_COLUMNS`); appended to while a batch runs."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: list[ResultRow] = []  # as classify returns them (what the export writes)
        self.root: Path | None = None

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(TABLE_COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        header, column, _ = TABLE_COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return header
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{column} in the exported CSV and JSON"
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        column = TABLE_COLUMNS[index.column()][1]
        if role == Qt.ItemDataRole.DisplayRole:
            return _cell(row, column, self.root)
        if role == Qt.ItemDataRole.BackgroundRole and row.error:
            return QBrush(QColor("#fde2e1"))
        if role == Qt.ItemDataRole.ForegroundRole and column == "predicted" and row.needs_review:
            return QBrush(QColor("#777777"))  # a call to check is not shown as confidently as the others
        if role == Qt.ItemDataRole.ToolTipRole:
            if column in ("path", "error"):
                return getattr(row, column)
            if column == "review_reasons" and row.reasons:
                return "; ".join(r.text for r in row.reasons)
        return None

    def append(self, rows: list[ResultRow]) -> None:
        if not rows:
            return
        first = len(self.rows)
        self.beginInsertRows(QModelIndex(), first, first + len(rows) - 1)
        self.rows.extend(rows)
        self.endInsertRows()

    def set_rows(self, rows: list[ResultRow]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def clear(self) -> None:
        self.beginResetModel()
        self.rows = []
        self.endResetModel()


class BatchTab(QWidget):
    message = Signal(str)
    error = Signal(str)
    finished = Signal(int)  # rows written (also after a cancel)
    report_requested = Signal()  # "Export report…": the main window asks for the file and writes it

    def __init__(self, runner: TaskRunner, models: ModelController, settings: Settings, parent=None) -> None:
        super().__init__(parent)
        self.runner, self.models, self.settings = runner, models, settings
        self.started_at = 0.0
        self.summary_at = 0.0
        self.model_id = ""
        self.cancelled = False
        self.journal: Path | None = None  # the running (or last interrupted) batch's journal
        self.resumed = 0  # finished rows taken over from an interrupted batch
        self.loaded: LoadedModel | None = None  # the model of the running batch
        self.run_number = 0  # which start() the running worker belongs to
        self.stopping = False  # cancelled, the worker still finishing the images in hand
        self.state: ProgressState | None = None  # the batch's last progress

        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("Folder of images (searched recursively)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.run_button = QPushButton("Run batch")
        self.run_button.clicked.connect(lambda: self.start())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        top = QHBoxLayout()
        top.addWidget(QLabel("Folder:"))
        top.addWidget(self.folder_edit, 1)
        top.addWidget(browse)
        top.addWidget(self.run_button)
        top.addWidget(self.cancel_button)

        self.progress = QProgressBar()
        self.rate_label = QLabel("")
        status = QHBoxLayout()
        status.addWidget(self.progress, 1)
        status.addWidget(self.rate_label)

        self.table_model = RowsModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setDefaultSectionSize(22)
        # Fixed row heights: rows arrive by the hundred and must not be measured one by one.
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        for number, (_, _, width) in enumerate(TABLE_COLUMNS):
            self.table.setColumnWidth(number, width)
        self.summary = ClassBarChart("Images per predicted class", "images", fixed_unit_range=False)
        self.summary_label = QLabel("")
        self.drift_label = DriftWarning()
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.summary, 1)
        right_layout.addWidget(self.summary_label)
        right_layout.addWidget(self.drift_label)
        export_csv = QPushButton("Export CSV…")
        export_csv.clicked.connect(lambda: self._export_dialog(".csv"))
        export_json = QPushButton("Export JSON…")
        export_json.clicked.connect(lambda: self._export_dialog(".json"))
        buttons = QHBoxLayout()
        buttons.addWidget(export_csv)
        buttons.addWidget(export_json)
        self.report_button = QPushButton("Export report…")
        self.report_button.setToolTip(
            "A case report of these images as PDF or HTML, with the thumbnails of those that need review"
        )
        self.report_button.clicked.connect(lambda: self.report_requested.emit())
        buttons.addWidget(self.report_button)
        right_layout.addLayout(buttons)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(right)
        splitter.setSizes([900, 380])

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(status)
        layout.addWidget(splitter, 1)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder to classify", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def start(self, folder: str | Path | None = None) -> bool:
        text = str(folder).strip() if folder is not None else self.folder_edit.text().strip()
        if not text:  # Path("") is ".": an empty field once classified the current directory
            self.error.emit("Choose a folder first: type its path or use Browse….")
            return False
        if self.stopping:
            self.error.emit("The cancelled batch is still finishing the images in hand; try again in a moment.")
            return False
        folder = Path(text)
        if not folder.is_dir():
            self.error.emit(f"Not a folder: {folder}")
            return False
        loaded = self.models.current
        if loaded is None:
            self.error.emit("No model is loaded yet; choose one in the toolbar.")
            return False
        self.folder_edit.setText(str(folder))
        self.table_model.clear()
        self.table_model.root = folder
        self.summary.set_values(None)
        self.drift_label.hide()
        self.journal = journal_for(folder, loaded)
        try:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a read-only data folder: classify all the same, without the crash journal
            self.error.emit(
                f"This batch is not journalled ({self.journal.parent}: {describe_os_error(error)}): if it is "
                "interrupted, it starts over."
            )
            self.journal = None
        # Rows an interrupted batch (cancelled, crashed, killed) finished: shown now, not classified again.
        recovered = journal_rows(self.journal, loaded) if self.journal is not None else []
        self.resumed = len(recovered)
        self.table_model.append(recovered)
        self.model_id = loaded.id
        self.loaded = loaded
        self.cancelled = False
        self.state = None
        self.run_number += 1
        number = self.run_number
        self.started_at = time.monotonic()
        self.progress.setFormat("%p%")
        show_progress(self.progress, 0, 0)
        self.rate_label.setText("scanning…")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.runner.start(
            "batch",
            batch_task,
            loaded,
            folder,
            self.journal,
            on_partial=self._rows,
            on_state=self._progress,
            on_result=self._done,
            on_cancelled=self._cancelled,
            on_error=self._failed,
            on_finished=self._finished,
            on_exit=lambda: self._stopped(number),
        )
        if self.resumed:
            self._update_summary()
            self.message.emit(
                f"Resumed {self.resumed} finished rows from an interrupted batch of {folder}; "
                f"classifying the rest with {loaded.title}…"
            )
        else:
            self.message.emit(f"Classifying {folder} with {loaded.title}…")
        return True

    def cancel(self) -> None:
        self.runner.cancel("batch")  # calls _cancelled and _finished at once

    def _rows(self, rows: list[ResultRow]) -> None:
        self.table_model.append(rows)
        now = time.monotonic()
        if now - self.summary_at >= SUMMARY_INTERVAL:  # a chart repaint per batch of rows would stall the loop
            self.summary_at = now
            self._update_summary()

    def _progress(self, state: ProgressState) -> None:
        self.state = state
        if state.finished:
            return  # _done shows the end
        if state.phase == "scanning":
            show_progress(self.progress, 0, 0)
            self.rate_label.setText(f"scanning… {state.done} images found" if state.done else "scanning…")
            return
        show_fraction(self.progress, state.fraction, finished=state.done >= state.total > 0)
        parts = [f"{state.done}/{state.total}"]
        # Measured on the images classified in this run: resumed rows cost nothing and would flatter it.
        parts.append(f"{state.rate:.0f} images/s" if state.rate is not None else "measuring the rate…")
        if state.seconds_left is not None:
            parts.append(f"{clock_text(state.seconds_left)} left")
        self.rate_label.setText(" · ".join(parts))

    def _update_summary(self) -> None:
        counts = [0] * len(CLASS_NAMES)
        errors = flagged = 0
        for row in self.table_model.rows:
            if row.error:
                errors += 1
            elif row.predicted in CLASS_NAMES:
                counts[CLASS_NAMES.index(row.predicted)] += 1
                flagged += row.needs_review
        self.summary.set_values(counts, "{:.0f}")
        self.summary_label.setText(f"{len(self.table_model.rows)} rows · {flagged} need review · {errors} unreadable")
        self.drift_label.update_from(self.table_model.rows)

    def _done(self, rows: list[ResultRow]) -> None:
        self.table_model.set_rows(rows)  # now with duplicate groups and the folders that could not be read
        self._update_summary()
        elapsed = max(time.monotonic() - self.started_at, 1e-6)
        count = len(self.table_model.rows)
        show_progress(self.progress, 1, 1)
        if self.resumed:  # the rate of this run's images only: resumed rows cost nothing
            self.rate_label.setText(
                f"{count} images ({self.resumed} resumed) in {elapsed:.1f} s "
                f"({max(0, count - self.resumed) / elapsed:.0f} images/s)"
            )
        else:
            self.rate_label.setText(f"{count} images in {elapsed:.1f} s ({count / elapsed:.0f} images/s)")
        if self.journal is not None:  # complete: the next run of this folder starts afresh
            with contextlib.suppress(OSError):
                self.journal.unlink(missing_ok=True)
        resumed = f" ({self.resumed} resumed from an interrupted batch)" if self.resumed else ""
        self.message.emit(f"Batch finished: {count} rows{resumed}")
        self._device_notice()
        self.finished.emit(count)

    def _cancelled(self) -> None:
        """Cancel pressed: the worker still finishes (and journals) the images in hand, so the count waits for it."""
        if self.cancelled:
            return
        self.cancelled = True
        self.stopping = True
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(False)
        self.rate_label.setText("cancelling: finishing the images in hand…")
        self.message.emit("Cancelling the batch…")

    def _stopped(self, number: int) -> None:
        """The worker has returned: after a cancel, count and show the rows it really finished and kept."""
        if number != self.run_number or not self.cancelled:
            return
        self.stopping = False
        if self.journal is not None and self.loaded is not None:
            self.table_model.set_rows(journal_rows(self.journal, self.loaded))  # exactly what a rerun resumes
        kept = len(self.table_model.rows)
        self._update_summary()
        total = self.state.total if self.state is not None and self.state.phase == "classifying" else 0
        if total:
            show_progress(self.progress, kept, total)
        of_total = f" of {total}" if total else ""
        self.rate_label.setText(f"cancelled after {kept}{of_total} images")
        if self.journal is not None:
            self.message.emit(
                f"Batch cancelled after {kept}{of_total} images; they are kept and can be exported, and running "
                "this folder again with this model resumes it"
            )
        else:
            self.message.emit(f"Batch cancelled after {kept}{of_total} images; they are kept and can be exported")
        self._device_notice()
        self.run_button.setEnabled(True)
        self.finished.emit(kept)

    def _failed(self, text: str) -> None:
        self._device_notice()
        self.error.emit(f"The batch stopped: {text} (the finished rows are kept; running it again resumes it)")

    def _device_notice(self) -> None:
        """Show, where the model notices are shown, that inference left a failing GPU for the CPU."""
        classifier = self.models.classifier
        if classifier is not None and classifier.device_notice:
            notice, classifier.device_notice = classifier.device_notice, None
            self.models.notice.emit(notice)

    def _finished(self) -> None:
        self.cancel_button.setEnabled(False)
        if not self.stopping:
            self.run_button.setEnabled(True)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)

    # ---- export -------------------------------------------------------------------------------------------------
    def has_results(self) -> bool:
        return bool(self.table_model.rows)

    def export(self, path: Path) -> Path:
        path = Path(path)
        rows = self.table_model.rows
        classify.write_rows(rows, path, classify.fmt_for(path))
        return path

    def _export_dialog(self, suffix: str) -> None:
        if not self.has_results():
            self.error.emit("There are no batch results to export yet.")
            return
        start = str(Path(self.settings.last_export_dir or Path.home()) / f"allgui-batch{suffix}")
        name, _ = QFileDialog.getSaveFileName(self, "Export batch results", start, f"*{suffix}")
        if name:
            self.settings.last_export_dir = str(Path(name).parent)
            try:
                self.message.emit(f"Results written to {self.export(Path(name))}")
            except OSError as error:
                self.error.emit(f"Export failed: {error}")
