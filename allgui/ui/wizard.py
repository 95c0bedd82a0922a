"""Retraining wizard: folder and mapping, data check, model options, training with live curves, evaluation, save.

Nothing touches the model store until the last page's Finish: cancelling or closing the wizard keeps the active
model as it was.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWizard,
    QWizardPage,
)

from allgui import DISCLAIMER
from allgui.core.classes import CLASS_NAMES, class_index
from allgui.core.datacheck import DataCheckReport, check_dataset
from allgui.core.estimates import EpochCost, estimate_text, recorded_epoch_cost, training_phases
from allgui.core.experiments import active_overlap_note, compare_to_active
from allgui.core.models import registry
from allgui.core.models.manifest import model_id_problem
from allgui.core.models.store import ModelLoadError, ModelStore
from allgui.core.paths import corrections_dir
from allgui.core.progress import Phase, ProgressState, clock_text
from allgui.core.settings import Settings
from allgui.core.training_run import TrainingRequest, TrainingResult, run_training, save_result
from allgui.ui.charts import CurvePlot
from allgui.ui.model_controller import ModelController
from allgui.ui.workers import Task, TaskRunner, reset_progress, show_fraction, show_progress

EPOCH_LINE = re.compile(r"epoch (\d+)/\d+: loss ([\d.]+), acc ([\d.]+), val loss ([\d.]+), val acc ([\d.]+)")


# ---- work done in the thread pool ----------------------------------------------------------------------------------
def check_task(task: Task, root: Path, mapping: dict[str, str], threshold: int) -> DataCheckReport:
    return check_dataset(root, mapping, threshold, progress=task.progress, cancel=task.cancel)


def train_task(
    task: Task, request: TrainingRequest, store: ModelStore, phases: tuple[Phase, ...] | None = None
) -> TrainingResult:
    """The core's training run (:func:`run_training`): one progress model over checking the images, reading the
    training images, training, calibrating, and evaluating new and active model on the held-out images."""
    return run_training(request, store=store, phases=phases, on_state=task.report, cancel=task.cancel, log=task.log)


# ---- pages ---------------------------------------------------------------------------------------------------------
class FolderPage(QWizardPage):
    def __init__(self, wizard: RetrainingWizard) -> None:
        super().__init__()
        self.setTitle("1. Labelled images")
        self.setSubTitle("A folder with one sub-folder per class. Check which class each sub-folder holds.")
        self.owner = wizard
        self.folder_edit = QLineEdit()
        self.folder_edit.textChanged.connect(self._refresh)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.corrections_button = QPushButton("Use my corrected images")
        self.corrections_button.setToolTip(
            "Export the images you confirmed or corrected in the Review tab and use them"
        )
        self.corrections_button.clicked.connect(self._use_corrections)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        row.addWidget(self.corrections_button)
        self.mapping_table = QTableWidget(0, 3)
        self.mapping_table.setHorizontalHeaderLabels(["Sub-folder", "Class", "Images (top level)"])
        self.mapping_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.mapping_table, 1)
        layout.addWidget(self.note)
        self.combos: dict[str, QComboBox] = {}

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Labelled folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def _use_corrections(self) -> None:
        review = getattr(self.owner.parent(), "review", None)
        if review is None or not review.session.labelled():
            self.note.setText("No image has a confirmed or corrected label in the Review tab yet.")
            return
        target = corrections_dir() / datetime.now().strftime("%Y%m%d-%H%M%S")
        review.session.export_labelled(target)
        self.folder_edit.setText(str(target))

    def _refresh(self) -> None:
        self.mapping_table.setRowCount(0)
        self.combos.clear()
        text = self.folder_edit.text().strip()
        root = Path(text)
        if not text or not root.is_dir():  # Path("") is ".": an empty field must not list the current directory
            self.note.setText("Choose a folder first." if not text else f"Not a folder: {text}")
            self.completeChanged.emit()
            return
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for folder in folders:
            row = self.mapping_table.rowCount()
            self.mapping_table.insertRow(row)
            self.mapping_table.setItem(row, 0, QTableWidgetItem(folder.name))
            combo = QComboBox()
            combo.addItem("(choose a class)", "")
            for name in CLASS_NAMES:
                combo.addItem(name, name)
            guess = class_index(folder.name)
            combo.setCurrentIndex(0 if guess is None else guess + 1)
            combo.currentIndexChanged.connect(self.completeChanged)
            self.mapping_table.setCellWidget(row, 1, combo)
            try:
                count = sum(1 for p in folder.iterdir() if p.is_file())
            except OSError:
                count = 0
            self.mapping_table.setItem(row, 2, QTableWidgetItem(str(count)))
            self.combos[folder.name] = combo
        self.note.setText(
            "" if folders else "This folder has no sub-folders; expected e.g. Benign/, Early/, Pre/, Pro/."
        )
        self.completeChanged.emit()

    def mapping(self) -> dict[str, str]:
        return {name: combo.currentData() for name, combo in self.combos.items()}

    def isComplete(self) -> bool:
        mapping = self.mapping()
        return bool(mapping) and all(mapping.values()) and len(set(mapping.values())) >= 2

    def validatePage(self) -> bool:
        self.owner.root = Path(self.folder_edit.text().strip())
        self.owner.mapping = self.mapping()
        self.owner.settings.last_data_dir = str(self.owner.root)
        return True


class DataCheckPage(QWizardPage):
    done = Signal()

    def __init__(self, wizard: RetrainingWizard) -> None:
        super().__init__()
        self.setTitle("2. Data check")
        self.setSubTitle("Counts per class, unreadable files, duplicates inside and across classes, imbalance.")
        self.owner = wizard
        self.report: DataCheckReport | None = None
        self.progress = QProgressBar()
        self.advice = QLabel("")
        self.advice.setWordWrap(True)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))  # the report is a table
        layout = QVBoxLayout(self)
        layout.addWidget(self.progress)
        layout.addWidget(self.advice)
        layout.addWidget(self.text, 1)

    def initializePage(self) -> None:
        self.report = None
        self.text.setPlainText("Checking…")
        self.advice.setText("")
        self.progress.setRange(0, 0)
        self.owner.runner.start(
            "wizard",
            check_task,
            self.owner.root,
            self.owner.mapping,
            self.owner.settings.duplicate_threshold,
            on_progress=self._progress,
            on_result=self._checked,
            on_error=self._failed,
        )
        self.completeChanged.emit()

    def _progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            show_progress(self.progress, done, total)

    def _checked(self, report: DataCheckReport) -> None:
        self.report = report
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.text.setPlainText(report.to_text())
        advice = report.advice()
        self.advice.setText("Advice:\n• " + "\n• ".join(advice) if advice else "No problems found.")
        self.completeChanged.emit()
        self.done.emit()

    def _failed(self, message: str) -> None:
        self.progress.setRange(0, 1)
        self.text.setPlainText(f"The data check failed: {message}")
        self.advice.setText("Go back and choose another folder or fix the mapping.")

    def isComplete(self) -> bool:
        return self.report is not None and sum(1 for c in self.report.counts.values() if c >= 2) >= 2

    def cleanupPage(self) -> None:
        self.owner.runner.cancel("wizard")


class ModelPage(QWizardPage):
    def __init__(self, wizard: RetrainingWizard) -> None:
        super().__init__()
        self.setTitle("3. Model")
        self.setSubTitle(
            "The kind of model and its main options; the defaults suit the smear images (an SE-CNN trains with the "
            "shipped default model's recipe)."
        )
        self.owner = wizard
        self.kind_combo = QComboBox()
        for kind in registry.kinds(offered_only=True):
            self.kind_combo.addItem(registry.kind_info(kind).title, kind)
        self.kind_combo.currentIndexChanged.connect(self._kind_changed)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 500)
        self.epochs.setValue(30)
        self.image_size = QSpinBox()
        self.image_size.setRange(16, 512)
        self.image_size.setSingleStep(16)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.test_fraction = QDoubleSpinBox()
        self.test_fraction.setRange(0.05, 0.5)
        self.test_fraction.setSingleStep(0.05)
        self.test_fraction.setValue(0.15)
        form = QFormLayout(self)
        form.addRow("Model kind:", self.kind_combo)
        form.addRow("Epochs (SE-CNN):", self.epochs)
        form.addRow("Image size (pixels):", self.image_size)
        form.addRow("Device (SE-CNN):", self.device)
        form.addRow("Held-out part (last captures per class):", self.test_fraction)
        self.estimate = QLabel("")
        self.estimate.setWordWrap(True)
        form.addRow("Time:", self.estimate)
        self.cost: EpochCost | None = None
        for box in (self.epochs, self.image_size):
            box.valueChanged.connect(self._update_estimate)
        self.test_fraction.valueChanged.connect(self._update_estimate)
        self.device.currentIndexChanged.connect(self._update_estimate)
        self._kind_changed()

    def initializePage(self) -> None:
        self._recost()

    def images(self) -> int:
        """Readable images of the checked folder (0 before the data check)."""
        report = self.owner.check_page.report
        return sum(report.counts.values()) if report is not None else 0

    def train_images(self) -> int:
        return self.images() - round(self.images() * self.test_fraction.value())

    def _recost(self) -> None:
        """The recorded per-image cost of this kind; models trained on this computer (the user's, newest first)
        say more about it than the shipped ones."""
        models = sorted(self.owner.models.store.list(), key=lambda m: (m.source == "user", m.created), reverse=True)
        self.cost = recorded_epoch_cost([m.manifest for m in models], self.kind_combo.currentData())
        self._update_estimate()

    def _update_estimate(self) -> None:
        kind = self.kind_combo.currentData()
        epochs, size, device = self.epochs.value(), self.image_size.value(), self.device.currentText()
        around = sum(p.weight for p in self.phases(2) if p.name != "training")
        if reason := registry.cannot_train(kind):
            self.estimate.setText(f"⚠ {reason[0].upper()}{reason[1:]}.")
            return
        self.estimate.setText(estimate_text(kind, self.train_images(), epochs, size, self.cost, device, around))

    def phases(self, compared_models: int) -> tuple[Phase, ...]:
        """The training's phases, weighted by the same estimate (or rough costs without one)."""
        return training_phases(
            self.kind_combo.currentData(),
            max(1, self.images()),
            self.test_fraction.value(),
            self.epochs.value(),
            self.image_size.value(),
            self.cost,
            compared_models,
        )

    def _kind_changed(self) -> None:
        info = registry.kind_info(self.kind_combo.currentData())
        self.epochs.setEnabled("epochs" in info.settings)
        self.device.setEnabled("device" in info.settings)
        self.image_size.setValue(info.default_image_size)
        self._recost()
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return registry.cannot_train(self.kind_combo.currentData()) is None

    def options(self) -> dict[str, Any]:
        """The kind's training options (an SE-CNN: the shipped default model's recipe) with the settings chosen
        here, each where the kind keeps it; the settings the kind does not take are left out."""
        settings = {
            "epochs": self.epochs.value(),
            "image_size": self.image_size.value(),
            "device": self.device.currentText(),
        }
        return registry.training_options(self.kind_combo.currentData(), settings)

    def validatePage(self) -> bool:
        self.owner.kind = self.kind_combo.currentData()
        self.owner.options = self.options()
        self.owner.test_fraction = self.test_fraction.value()
        self.owner.phases = self.phases(2 if self.owner.models.store.active_id() else 1)
        return True


class TrainPage(QWizardPage):
    progress_shown = Signal(object)  # each ProgressState the page showed

    def __init__(self, wizard: RetrainingWizard) -> None:
        super().__init__()
        self.setTitle("4. Training")
        self.setSubTitle("Cancel stops the training; the active model stays as it is.")
        self.owner = wizard
        self.result: TrainingResult | None = None
        self.running = False
        self.progress = QProgressBar()
        self.time_label = QLabel("")
        self.cancel_button = QPushButton("Cancel training")
        self.cancel_button.clicked.connect(self.cancel)
        self.loss_plot = CurvePlot("Loss")
        self.accuracy_plot = CurvePlot("Accuracy")
        self.accuracy_plot.setYRange(0, 1.05, padding=0)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumHeight(140)
        top = QHBoxLayout()
        top.addWidget(self.progress, 1)
        top.addWidget(self.time_label)
        top.addWidget(self.cancel_button)
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.accuracy_plot)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(plots, 1)
        layout.addWidget(self.log_view)

    def initializePage(self) -> None:
        self.result = None
        self.running = True
        self.loss_plot.clear_curves()
        self.accuracy_plot.clear_curves()
        self.log_view.clear()
        self.time_label.setText("")
        self.progress.setFormat("%p%")
        show_progress(self.progress, 0, 0)
        self.cancel_button.setEnabled(True)
        owner = self.owner
        owner.runner.start(
            "wizard",
            train_task,
            owner.training_request(),
            owner.models.store,
            owner.phases,
            on_log=self._log,
            on_state=self._progress,
            on_result=self._trained,
            on_error=self._failed,
            on_cancelled=self._cancelled,
        )
        self.completeChanged.emit()

    def _log(self, line: str) -> None:
        self.log_view.appendPlainText(line)
        match = EPOCH_LINE.search(line)
        if match:
            epoch = int(match.group(1))
            loss, acc, val_loss, val_acc = (float(match.group(i)) for i in range(2, 6))
            self.loss_plot.add_point("training", epoch, loss)
            self.loss_plot.add_point("validation", epoch, val_loss)
            self.accuracy_plot.add_point("training", epoch, acc)
            self.accuracy_plot.add_point("validation", epoch, val_acc)

    def _progress(self, state: ProgressState) -> None:
        """The bar covers the whole task; the time left is the current phase's, from its measured rate."""
        if not self.running:
            return
        if state.fraction == 0 and state.total == 0 and not state.finished:
            show_progress(self.progress, 0, 0)  # nothing counted yet: busy
        else:
            show_fraction(self.progress, state.fraction, finished=state.finished)
        head = f"{state.phase} ({state.number} of {state.phases})"
        self.progress.setFormat(f"%p% · {head}: {state.message}"[:100] if state.message else f"%p% · {head}")
        if state.seconds_left is not None:
            self.time_label.setText(f"about {clock_text(state.seconds_left)} left in {state.phase}")
        elif state.total and state.done < state.total:
            self.time_label.setText(f"{state.phase}: measuring the rate…")
        else:  # a step without a count: no honest time left to give
            self.time_label.setText(f"{state.phase}: no time left known for this step")
        self.progress_shown.emit(state)

    def _trained(self, result: TrainingResult) -> None:
        self.running = False
        self.result = result
        self.owner.result = result
        self.cancel_button.setEnabled(False)
        show_progress(self.progress, 1, 1)
        self.progress.setFormat("%p% · trained and evaluated")
        self.time_label.setText(f"trained in {result.fit_seconds:.0f} s")
        history = result.summary.get("history")
        if history and not self.loss_plot.curves:
            for record in history:
                self._log(
                    f"epoch {record['epoch']}/0: loss {record['train_loss']}, acc {record['train_acc']}, "
                    f"val loss {record['val_loss']}, val acc {record['val_acc']}"
                )
        self.completeChanged.emit()

    def _failed(self, message: str) -> None:
        self.running = False
        self.cancel_button.setEnabled(False)
        reset_progress(self.progress, "failed")
        self.log_view.appendPlainText(f"error: {message}")
        self.time_label.setText("failed; the active model is unchanged")

    def _cancelled(self) -> None:
        if not self.running:
            return
        self.running = False
        self.cancel_button.setEnabled(False)
        reset_progress(self.progress, "cancelled")
        self.time_label.setText("cancelled; the active model is unchanged")
        self.log_view.appendPlainText("cancelled by the user; nothing was saved")

    def cancel(self) -> None:
        if self.running:
            self.owner.runner.cancel("wizard")  # calls _cancelled at once

    def cleanupPage(self) -> None:
        self.cancel()

    def isComplete(self) -> bool:
        return self.result is not None


class EvaluationPage(QWizardPage):
    def __init__(self, wizard: RetrainingWizard) -> None:
        super().__init__()
        self.setTitle("5. Evaluation and saving")
        self.setSubTitle("Both models on the same held-out images (the last captures of each class).")
        self.owner = wizard
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Measure", "New model", "Active model"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.name_edit = QLineEdit()
        self.name_edit.textChanged.connect(self.completeChanged)
        self.activate_box = QCheckBox("Make it the active model")
        self.note = QLabel(DISCLAIMER)
        self.note.setWordWrap(True)
        self.compared = QLabel("")
        self.compared.setWordWrap(True)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.verdict.setStyleSheet("font-weight: bold;")
        self.overlap = QLabel("")
        self.overlap.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Save as (model id):", self.name_edit)
        form.addRow("", self.activate_box)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.compared)
        layout.addWidget(self.verdict)
        layout.addWidget(self.overlap)
        layout.addLayout(form)
        layout.addWidget(self.note)

    def initializePage(self) -> None:
        result = self.owner.result
        if result is None:
            return
        compared = result.compared
        new, old = result.metrics, compared.metrics if compared is not None else None
        rows = [("Held-out images", "n", "{:.0f}", 1)]
        rows += [
            (label, key, "{:.1f}", 100)
            for label, key in (
                ("Accuracy %", "accuracy"),
                ("F1 weighted %", "f1_weighted"),
                ("F1 macro %", "f1_macro"),
                ("Recall macro %", "recall_macro"),
            )
        ]
        self.table.setRowCount(len(rows) + len(CLASS_NAMES))
        for r, (label, key, fmt, scale) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(label))
            self.table.setItem(r, 1, QTableWidgetItem(fmt.format(new.get(key, 0) * scale)))
            self.table.setItem(r, 2, QTableWidgetItem("—" if old is None else fmt.format(old.get(key, 0) * scale)))
        for c, name in enumerate(CLASS_NAMES):
            r = len(rows) + c
            self.table.setItem(r, 0, QTableWidgetItem(f"Recall {name} %"))
            self.table.setItem(r, 1, QTableWidgetItem(f"{100 * new.get('per_class_recall', {}).get(name, 0):.1f}"))
            old_value = "—" if old is None else f"{100 * old['per_class_recall'][name]:.1f}"
            self.table.setItem(r, 2, QTableWidgetItem(old_value))
        self.compared.setText(f"Active model: {compared.title}" if compared else "No active model to compare.")
        self.verdict.setText(compare_to_active(new, old).text if new else "")
        if compared is not None:
            training = result.record.training
            self.overlap.setText(
                active_overlap_note(
                    compared.training,
                    "The active model",
                    training.data_root or "",
                    result.request.held_out_fraction,
                )
            )
        else:
            self.overlap.setText("")
        self.name_edit.setText(f"{self.owner.kind}-{datetime.now().strftime('%Y%m%d-%H%M')}")

    def isComplete(self) -> bool:
        name = self.name_edit.text().strip()
        return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}", name))

    def validatePage(self) -> bool:
        return self.owner.save_model(self.name_edit.text().strip(), self.activate_box.isChecked())


class RetrainingWizard(QWizard):
    saved = Signal(str)  # model id

    def __init__(self, runner: TaskRunner, models: ModelController, settings: Settings, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Retraining wizard — AllGUI")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.resize(900, 680)
        self.runner, self.models, self.settings = runner, models, settings
        self.root: Path | None = None
        self.mapping: dict[str, str] = {}
        self.kind = "secnn"
        self.options: dict[str, Any] = {}
        self.test_fraction = 0.15
        self.phases: tuple[Phase, ...] | None = None
        self.result: TrainingResult | None = None
        self.saved_id: str | None = None
        self.folder_page = FolderPage(self)
        self.check_page = DataCheckPage(self)
        self.model_page = ModelPage(self)
        self.train_page = TrainPage(self)
        self.evaluation_page = EvaluationPage(self)
        for page in (self.folder_page, self.check_page, self.model_page, self.train_page, self.evaluation_page):
            self.addPage(page)
        self.rejected.connect(lambda: self.runner.cancel("wizard"))

    def set_folder(self, folder: str | Path) -> None:
        self.folder_page.folder_edit.setText(str(folder))

    def training_request(self) -> TrainingRequest:
        """The training run the pages chose: this folder and mapping, kind and options, held-out part, and the
        active model scored on the same held-out images."""
        if self.root is None:
            raise ValueError("no folder chosen")
        return TrainingRequest(
            self.kind,
            self.root,
            self.options,
            self.mapping,
            held_out_fraction=self.test_fraction,
            duplicate_threshold=self.settings.duplicate_threshold,
            compare_with=self.models.store.active_id(),
        )

    def save_model(self, model_id: str, activate: bool) -> bool:
        if self.result is None:
            return False
        store = self.models.store
        if problem := model_id_problem(model_id):
            self.evaluation_page.note.setText(f"Choose another name: {problem}.")
            return False
        if any(m.id == model_id for m in store.list()):
            self.evaluation_page.note.setText(f"A model called {model_id} already exists; choose another name.")
            return False
        try:
            save_result(self.result, model_id, store=store, title=f"{registry.kind_info(self.kind).title} — {model_id}")
        except (OSError, ValueError, RuntimeError, TypeError, ModelLoadError) as error:
            self.evaluation_page.note.setText(f"The model could not be saved: {error}")
            return False
        self.saved_id = model_id
        self.models.refresh()
        if activate:
            self.models.load(model_id)
        self.saved.emit(model_id)
        return True

    def closeEvent(self, event: Any) -> None:
        self.runner.cancel("wizard")
        super().closeEvent(event)

    def done(self, result: int) -> None:
        self.runner.cancel("wizard")
        super().done(result)
