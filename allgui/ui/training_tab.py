"""The study's comparison: run the declared experiments on a labelled folder and show the runner's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from allgui import DISCLAIMER
from allgui.core.settings import Settings
from allgui.ui.charts import ConfusionMatrixView, GroupedBarChart, MatrixGrid
from allgui.ui.workers import Task, TaskRunner, reset_progress, show_progress

CHART_TITLE = "Held-out accuracy and F1"
RESULT_COLUMNS = (
    ("Experiment", None),
    ("Accuracy", "accuracy"),
    ("P (weighted)", "precision_weighted"),
    ("R (weighted)", "recall_weighted"),
    ("F1 (weighted)", "f1_weighted"),
    ("P (macro)", "precision_macro"),
    ("R (macro)", "recall_macro"),
    ("F1 (macro)", "f1_macro"),
    ("Fit s", None),
    ("Duplicates removed", None),
)
_PRECISION = "precision: of the held-out images a model called a class, the share that were that class"
_RECALL = "recall: of the held-out images of a class, the share the model found"
_WEIGHTED = "averaged over the classes by their size, as the study reports it"
_MACRO = "averaged over the four classes equally, so the small Benign class counts as much as the others"
COLUMN_TIPS = (
    "The experiment (hover over a name for what it is)",
    "Accuracy: the share of held-out images classified correctly",
    f"P (weighted): {_PRECISION}, {_WEIGHTED}",
    f"R (weighted): {_RECALL}, {_WEIGHTED}",
    f"F1 (weighted): the harmonic mean of precision and recall, {_WEIGHTED}",
    f"P (macro): {_PRECISION}, {_MACRO}",
    f"R (macro): {_RECALL}, {_MACRO}",
    f"F1 (macro): the harmonic mean of precision and recall, {_MACRO}",
    "Fit s: seconds this computer took to train the model",
    "Training images left out as near-duplicates of another training image (cnn-dedup only)",
)
METRICS_LEGEND = (
    "<b>Accuracy</b>: share of held-out images classified correctly. <b>P</b> precision: of the images called a "
    "class, the share that were it. <b>R</b> recall: of the images of a class, the share found. <b>F1</b>: their "
    "harmonic mean. <b>weighted</b>: averaged by class size (as the study reports); <b>macro</b>: the four classes "
    "count equally, so the small Benign class shows. <b>Fit s</b>: seconds to train here. <b>SMOTE</b>: synthetic "
    "minority over-sampling, new training examples for small classes made between neighbours. <b>PCA</b>: "
    "principal component analysis, each image reduced to its main directions of variation. All figures in %."
)


def load_specs(task: Task) -> list[Any]:
    """The declared experiments; imported in a worker because the runner pulls in scikit-learn (seconds)."""
    from allgui.core import experiments

    return list(experiments.EXPERIMENTS)


def comparison_task(task: Task, folder: Path, names: list[str], split: str, quick: bool, device: str) -> dict:
    from allgui.core import experiments

    return experiments.run_comparison(
        folder,
        names=names,
        split=split,
        quick=quick,
        device=device,
        command="AllGUI training tab",
        progress=task.progress,
        cancel=task.cancel,
        log=task.log,
    )


class TrainingTab(QWidget):
    message = Signal(str)
    error = Signal(str)
    finished = Signal(object)  # the results dict (None when cancelled or failed)

    def __init__(self, runner: TaskRunner, settings: Settings, parent=None) -> None:
        super().__init__(parent)
        self.runner, self.settings = runner, settings
        self.results: dict[str, Any] | None = None

        self.folder_edit = QLineEdit(settings.last_data_dir)
        self.folder_edit.setPlaceholderText("Labelled folder with Benign/, Early/, Pre/, Pro/ sub-folders")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.experiment_list = QListWidget()
        self.experiment_list.setMinimumHeight(60)
        self.experiment_list.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        self.split_combo = QComboBox()
        self.split_combo.addItem("Capture blocks (held-out later sessions)", "blocks")
        self.split_combo.addItem("Random (optimistic, as in the study)", "random")
        self.quick_radio = QRadioButton("Quick: smoke test (a few images per class, tiny models)")
        self.quick_radio.setToolTip("Checks that every experiment runs end to end; its figures mean nothing")
        self.full_radio = QRadioButton("Full")
        self.quick_radio.setChecked(True)
        self.size_group = QButtonGroup(self)
        self.size_group.addButton(self.quick_radio)
        self.size_group.addButton(self.full_radio)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.run_button = QPushButton("Run comparison")
        self.run_button.setEnabled(False)  # until the experiment list is loaded
        self.run_button.clicked.connect(lambda: self.start())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button = QPushButton("Save results folder…")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(lambda: self.save_results())

        setup = QGroupBox("Comparison")
        grid = QGridLayout(setup)
        grid.addWidget(QLabel("Data folder:"), 0, 0)
        grid.addWidget(self.folder_edit, 0, 1, 1, 3)
        grid.addWidget(browse, 0, 4)
        grid.addWidget(QLabel("Experiments:"), 1, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.experiment_list, 1, 1, 3, 1)
        grid.addWidget(QLabel("Split:"), 1, 2)
        grid.addWidget(self.split_combo, 1, 3, 1, 2)
        grid.addWidget(QLabel("Size:"), 2, 2)
        sizes = QHBoxLayout()
        sizes.addWidget(self.quick_radio)
        sizes.addWidget(self.full_radio)
        grid.addLayout(sizes, 2, 3, 1, 2)
        grid.addWidget(QLabel("Device:"), 3, 2)
        grid.addWidget(self.device_combo, 3, 3)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.save_button)
        buttons.addStretch(1)
        grid.addLayout(buttons, 4, 0, 1, 5)

        self.progress = QProgressBar()
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.table = QTableWidget(0, len(RESULT_COLUMNS))
        for column, ((name, _), tip) in enumerate(zip(RESULT_COLUMNS, COLUMN_TIPS, strict=True)):
            header = QTableWidgetItem(name)
            header.setToolTip(tip)
            self.table.setHorizontalHeaderItem(column, header)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        # As large as its contents (every row, every column: at most six experiments); the legend takes the rest.
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        self.table.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self._fit_table()
        self.split_label = QLabel("")
        self.split_label.setWordWrap(True)
        self.smoke_label = QLabel("")
        self.smoke_label.setWordWrap(True)
        self.smoke_label.setStyleSheet("background: #fff3cd; color: #664d03; padding: 4px; font-weight: bold;")
        self.smoke_label.hide()
        self.metrics_legend = QLabel(METRICS_LEGEND)
        self.metrics_legend.setWordWrap(True)
        self.metrics_legend.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.metrics_legend.setStyleSheet("color: #444;")
        self.chart = GroupedBarChart(CHART_TITLE)
        self.matrices = MatrixGrid()
        self.matrix_views: list[ConfusionMatrixView] = []
        self.matrix_scroll = QScrollArea()
        self.matrix_scroll.setWidget(self.matrices)
        self.matrix_scroll.setWidgetResizable(True)
        self.views = QTabWidget()
        self.views.addTab(self.chart, "Comparison chart")
        self.views.addTab(self.matrix_scroll, "Confusion matrices")
        self.views.addTab(self.log_view, "Log")
        table_row = QHBoxLayout()
        table_row.addWidget(self.table)
        table_row.addWidget(self.metrics_legend, 1)
        results = QWidget()
        results_layout = QVBoxLayout(results)
        results_layout.setContentsMargins(0, 0, 0, 0)
        results_layout.addWidget(self.smoke_label)
        results_layout.addWidget(self.split_label)
        results_layout.addLayout(table_row)
        self.results_panel = results

        layout = QVBoxLayout(self)
        layout.addWidget(setup)
        layout.addWidget(self.progress)
        # A plain layout, not a splitter: a splitter gave the results less than their height and hid table rows.
        layout.addWidget(self.results_panel)
        layout.addWidget(self.views, 1)

    def load_experiments(self) -> None:
        self.runner.start(
            "experiments", load_specs, on_result=self.set_experiments, on_error=self.error.emit, background=True
        )

    def set_experiments(self, specs: list[Any]) -> None:
        from allgui.core.experiments import QUICK_IMAGES_PER_CLASS  # imported already by load_specs
        from allgui.core.models.registry import cannot_train

        self.quick_radio.setText(f"Quick: smoke test ({QUICK_IMAGES_PER_CLASS} images per class, tiny models)")
        self.experiment_list.clear()
        for spec in specs:
            item = QListWidgetItem(f"{spec.name}: {spec.title}")
            item.setData(Qt.ItemDataRole.UserRole, spec.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setToolTip(spec.study_row or "not in the study: measures the colour shortcut")
            if reason := cannot_train(spec.kind):
                item.setText(f"{item.text()} — needs the full bundle")
                item.setCheckState(Qt.CheckState.Unchecked)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
                item.setToolTip(reason[0].upper() + reason[1:] + ".")
            self.experiment_list.addItem(item)
        rows = sum(self.experiment_list.sizeHintForRow(r) for r in range(self.experiment_list.count()))
        self.experiment_list.setMinimumHeight(rows + 2 * self.experiment_list.frameWidth() + 4)  # every experiment
        self.run_button.setEnabled(True)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Labelled data folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def selected(self) -> list[str]:
        return [
            self.experiment_list.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.experiment_list.count())
            if self.experiment_list.item(i).checkState() == Qt.CheckState.Checked
        ]

    def set_selected(self, names: list[str]) -> None:
        for i in range(self.experiment_list.count()):
            item = self.experiment_list.item(i)
            checked = item.data(Qt.ItemDataRole.UserRole) in names
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def start(self, folder: str | Path | None = None) -> bool:
        text = str(folder).strip() if folder is not None else self.folder_edit.text().strip()
        if not text:  # Path("") is ".": an empty field must not train on the current directory
            self.error.emit("Choose a folder first: a labelled folder with one sub-folder per class.")
            return False
        folder = Path(text)
        if not folder.is_dir():
            self.error.emit(f"Not a folder: {folder}")
            return False
        names = self.selected()
        if not names:
            self.error.emit("Choose at least one experiment.")
            return False
        self.folder_edit.setText(str(folder))
        self.settings.last_data_dir = str(folder)
        self.clear_results()  # the last run's table and caption would pass for this run's
        self.log_view.clear()
        self.views.setCurrentWidget(self.log_view)
        self.progress.setFormat("%p%")
        show_progress(self.progress, 0, 0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        split = self.split_combo.currentData()
        quick = self.quick_radio.isChecked()
        self.runner.start(
            "training",
            comparison_task,
            folder,
            names,
            split,
            quick,
            self.device_combo.currentText(),
            on_log=self.log_view.appendPlainText,
            on_progress=self._progress,
            on_result=self._done,
            on_cancelled=self._cancelled,
            on_error=self._failed,
            on_finished=self._idle,
        )
        self.message.emit(
            f"Running {len(names)} experiment(s) on {folder} ({split} split, {'quick' if quick else 'full'})…"
        )
        return True

    def cancel(self) -> None:
        self.runner.cancel("training")  # calls _cancelled and _idle at once

    def _progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            show_progress(self.progress, done, total)
        self.progress.setFormat(message[:90] if message else "%p%")

    def _done(self, results: dict[str, Any]) -> None:
        self.show_results(results)
        self.message.emit("Comparison finished")
        self.finished.emit(results)

    def _cancelled(self) -> None:
        reset_progress(self.progress, "cancelled")
        self.log_view.appendPlainText("cancelled")
        self.message.emit("Comparison cancelled")
        self.finished.emit(None)

    def _failed(self, text: str) -> None:
        reset_progress(self.progress, "failed")
        self.log_view.appendPlainText(f"error: {text}")
        self.error.emit(f"The comparison stopped: {text}")
        self.finished.emit(None)

    def _idle(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)

    def clear_results(self) -> None:
        self.results = None
        self.save_button.setEnabled(False)
        self.table.setRowCount(0)
        self._fit_table()
        self.split_label.setText("")
        self.smoke_label.hide()
        self.chart.set_title(CHART_TITLE)
        self.chart.set_data([], {})
        self.matrix_views = []
        self.matrices.set_views([])

    def _fit_table(self) -> None:
        """Make the table exactly as tall as its rows (at most the six experiments): a squeezed one hid two."""
        rows = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        header = self.table.horizontalHeader().sizeHint().height()
        bar = self.table.horizontalScrollBar()
        extra = bar.sizeHint().height() if bar.maximum() > 0 else 0
        self.table.setFixedHeight(header + rows + 2 * self.table.frameWidth() + extra)

    def show_results(self, results: dict[str, Any]) -> None:
        self.results = results
        self.save_button.setEnabled(True)
        rows = results["experiments"]
        self.split_label.setText(
            f"{results['split']['label']}. {results['split']['train_images']} training / "
            f"{results['split']['test_images']} held-out images. {DISCLAIMER}"
        )
        quick = bool(results.get("quick"))
        self.smoke_label.setVisible(quick)
        if quick:
            self.smoke_label.setText(smoke_note(results))
        self.chart.set_title(f"{CHART_TITLE}: quick smoke test, the figures mean nothing" if quick else CHART_TITLE)
        self.table.setRowCount(len(rows))
        for r, result in enumerate(rows):
            metrics = result.get("metrics", {})
            for c, (_, key) in enumerate(RESULT_COLUMNS):
                if c == 0:
                    text = result["name"]
                elif key is not None:
                    text = f"{100 * metrics[key]:.1f}" if key in metrics else "failed"
                elif c == 8:
                    text = f"{result['fit_seconds']:.1f}" if "fit_seconds" in result else ""
                else:
                    text = str(result.get("removed_by_dedup", ""))
                cell = QTableWidgetItem(text)
                cell.setToolTip(result.get("error") or result.get("title", ""))
                self.table.setItem(r, c, cell)
        self._fit_table()
        good = [r for r in rows if "metrics" in r]
        self.chart.set_data(
            [r["name"] for r in good],
            {
                "accuracy": [r["metrics"]["accuracy"] for r in good],
                "F1 weighted": [r["metrics"]["f1_weighted"] for r in good],
                "F1 macro": [r["metrics"]["f1_macro"] for r in good],
            },
        )
        self.matrix_views = []
        for result in good:
            view = ConfusionMatrixView(result["name"])
            view.set_matrix(result["metrics"]["confusion_matrix"])
            self.matrix_views.append(view)
        self.matrices.set_views(self.matrix_views)
        self.views.setCurrentWidget(self.chart)

    def save_results(self, folder: Path | None = None) -> Path | None:
        if self.results is None:
            self.error.emit("Run a comparison first.")
            return None
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(self, "Save results into", self.settings.last_export_dir)
            if not chosen:
                return None
            folder = Path(chosen)
        from allgui.core import experiments

        try:
            experiments.write_outputs(self.results, Path(folder))
        except OSError as error:
            self.error.emit(f"Results could not be saved: {error}")
            return None
        self.message.emit(f"Results saved in {folder}")
        return Path(folder)


def smoke_note(results: dict[str, Any]) -> str:
    """What a quick run is: a check that the pipeline runs, on so few images and such small models that its
    figures say nothing about the methods (an SE-CNN at chance and a colour baseline at 100% are both noise)."""
    data, split = results.get("data", {}), results.get("split", {})
    cnn = next((s.get("quick_options", {}) for s in results.get("specs", []) if s.get("kind") == "secnn"), {})
    sizes = f", SE-CNNs trained {cnn['epochs']} epochs at {cnn['image_size']} px" if cnn.get("epochs") else ""
    return (
        f"Quick run: a smoke test of the pipeline, not a comparison. {data.get('images', '?')} images "
        f"({split.get('test_images', '?')} held out){sizes} and small classical models: the figures below mean "
        "nothing about the methods. Run Full for a comparison."
    )
