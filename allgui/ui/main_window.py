"""The main window: menus, toolbar with the model selector, status bar with progress and Cancel, and the tabs.

The window shell is light (no pyqtgraph, torch or scikit-learn) so that it shows at once; :meth:`build_tabs` adds
the tabs and starts loading the model in the background after the window is on screen.
"""

from __future__ import annotations

import gc
import logging
import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from allgui import DISCLAIMER, __version__
from allgui.core.models.base import ReviewPolicy
from allgui.core.models.store import ModelStore
from allgui.core.settings import Settings, load_settings, save_settings
from allgui.ui.model_controller import ModelController
from allgui.ui.workers import TaskRunner, show_progress

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    tabs_ready = Signal()
    report_written = Signal(object)  # the Path of a case report, once written

    def __init__(
        self, store: ModelStore | None = None, settings_dir: Path | None = None, build_now: bool = True
    ) -> None:
        super().__init__()
        self.settings_dir = settings_dir
        self.settings: Settings = load_settings(settings_dir)
        self.runner = TaskRunner(self)
        self.models = ModelController(self.runner, store, self)
        self.models.engine = self.settings.engine
        self.errors: list[str] = []  # every error shown, newest last (tests and the log read it)
        self.review = self.batch = self.training = None
        self.wizard = None
        self._closing = False
        self._message = "Ready"  # the last message (not progress): shown again when the work it was hidden by ends
        self._progress_slot: str | None = None  # the task whose progress the status bar shows
        self._device_warnings: list[str] = []
        self._device_note = ""
        self.setWindowTitle(f"AllGUI {__version__} — {DISCLAIMER}")
        self.setAcceptDrops(True)
        self.resize(1400, 860)

        self.tabs = QTabWidget()
        self.disclaimer = QLabel(DISCLAIMER)
        self.disclaimer.setObjectName("disclaimer")
        self.disclaimer.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.disclaimer.setStyleSheet("QLabel#disclaimer { color: #7a4b00; background: #fff4d6; padding: 3px; }")
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.disclaimer)
        self.setCentralWidget(central)
        self.loading_label = QLabel("Loading…")
        self.loading_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.tabs.addTab(self.loading_label, "Review")

        self._build_actions()
        self._build_status_bar()
        self._restore_layout()
        self.runner.busy_changed.connect(self._busy_changed)
        self.runner.progress.connect(self._progress)
        self.models.listed.connect(self._fill_models)
        self.models.loaded.connect(self._model_loaded)
        self.models.failed.connect(lambda m: self.show_error(f"The model could not be loaded: {m}"))
        self.models.notice.connect(self._device_notice)
        self.models.device_note.connect(self._device_note_changed)
        self.models.devices_known.connect(lambda: self._fill_models(self.models.models))
        if build_now:
            self.build_tabs()

    # ---- actions, menus, toolbar --------------------------------------------------------------------------------
    def _action(self, text: str, slot: Any, shortcut: QKeySequence | str | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip or text.replace("…", "").replace("&", ""))
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        self.open_images_action = self._action("Open &images…", self.choose_images, QKeySequence.StandardKey.Open)
        self.open_folder_action = self._action("Open &folder…", self.choose_folder, "Ctrl+Shift+O")
        self.export_action = self._action(
            "&Export results…",
            lambda: self.export_results(),
            "Ctrl+E",
            "Export the current tab's results as CSV or JSON",
        )
        self.export_report_action = self._action(
            "Export re&port…",
            lambda: self.export_report(),
            tip="A case report of the current tab's images (Review or Batch), as PDF or HTML",
        )
        self.save_review_action = self._action(
            "&Save review…", lambda: self.save_review(), QKeySequence.StandardKey.Save
        )
        self.export_labelled_action = self._action("Export &labelled images…", lambda: self.export_labelled())
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        # A lambda: a bound method would receive triggered's ``checked`` as its folder (the field read "False").
        self.wizard_action = self._action(
            "&Retraining wizard…", lambda: self.open_wizard(), "Ctrl+R", "Train a new model on a labelled folder"
        )
        self.refresh_action = self._action("Re&fresh model list", self.models.refresh)
        self.cancel_action = self._action("&Cancel running work", lambda: self.runner.cancel(), "Esc")
        self.preferences_action = self._action("&Preferences…", lambda: self.edit_preferences(), "Ctrl+,")

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_images_action)
        file_menu.addAction(self.open_folder_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._fill_recent()
        file_menu.addSeparator()
        file_menu.addAction(self.save_review_action)
        file_menu.addAction(self.export_action)
        file_menu.addAction(self.export_report_action)
        file_menu.addAction(self.export_labelled_action)
        file_menu.addSeparator()
        file_menu.addAction(self.preferences_action)
        file_menu.addAction(self.quit_action)
        model_menu = menu.addMenu("&Model")
        model_menu.addAction(self.wizard_action)
        model_menu.addAction(self.refresh_action)
        model_menu.addAction(self.cancel_action)
        self.user_guide_action = self._action(
            "&User guide", lambda: self.show_user_guide(), QKeySequence.StandardKey.HelpContents
        )
        self.model_card_action = self._action(
            "&Model card", lambda: self.show_model_card(), tip="What the active model was trained on and how well"
        )
        self.shortcuts_action = self._action("&Keyboard shortcuts", lambda: self.show_shortcuts())
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.user_guide_action)
        help_menu.addAction(self.model_card_action)
        help_menu.addAction(self.shortcuts_action)
        help_menu.addSeparator()
        help_menu.addAction(self._action("&About AllGUI", self.about))

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        toolbar.addAction(self.open_images_action)
        toolbar.addAction(self.open_folder_action)
        toolbar.addAction(self.export_action)
        toolbar.addSeparator()
        toolbar.addWidget(QLabel(" Model: "))
        self.model_combo = QComboBox()
        self.model_combo.setMinimumWidth(420)
        self.model_combo.setToolTip("Every model in the store, with the device it runs on")
        self.model_combo.activated.connect(self._model_chosen)
        toolbar.addWidget(self.model_combo)
        toolbar.addAction(self.wizard_action)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status_label = QLabel("Ready")
        self.device_label = QLabel("")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(260)
        self.progress_bar.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop whatever is running (Esc)")
        self.cancel_button.clicked.connect(lambda: self.runner.cancel())
        self.cancel_button.setVisible(False)
        bar.addWidget(self.status_label, 1)
        bar.addPermanentWidget(self.device_label)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)

    def _restore_layout(self) -> None:
        for value, method in (
            (self.settings.window_geometry, self.restoreGeometry),
            (self.settings.window_state, self.restoreState),
        ):
            if value:
                try:
                    method(QByteArray.fromHex(value.encode("ascii")))
                except (ValueError, UnicodeEncodeError):
                    log.warning("stored window layout ignored")

    # ---- tabs ---------------------------------------------------------------------------------------------------
    def build_tabs(self) -> None:
        """Create the tabs (pyqtgraph is imported here, after the window shows) and start loading the model."""
        if self.review is not None:
            return
        from allgui.ui.batch_tab import BatchTab
        from allgui.ui.review_tab import ReviewTab
        from allgui.ui.training_tab import TrainingTab

        self.review = ReviewTab(self.runner, self.models, self.settings)
        self.batch = BatchTab(self.runner, self.models, self.settings)
        self.training = TrainingTab(self.runner, self.settings)
        self.tabs.removeTab(0)
        self.loading_label.deleteLater()
        self.tabs.addTab(self.review, "Review")
        self.tabs.addTab(self.batch, "Batch")
        self.tabs.addTab(self.training, "Training")
        self.tabs.setCurrentIndex(min(max(self.settings.current_tab, 0), self.tabs.count() - 1))
        if self.settings.splitter_state:
            self.review.splitter.restoreState(QByteArray.fromHex(self.settings.splitter_state.encode("ascii")))
        self.batch.report_requested.connect(lambda: self.export_report(self.batch))
        for tab in (self.review, self.batch, self.training):
            tab.message.connect(self.show_message)
            tab.error.connect(self.show_error)
        self.models.refresh()
        if not self.models.models:
            self.show_message("No model yet: train one with Model → Retraining wizard, or import one (allgui models)")
        else:
            chosen = self.settings.model_id if any(m.id == self.settings.model_id for m in self.models.models) else None
            self.models.load(chosen)
        self.models.probe_devices()
        self.training.load_experiments()
        gc.freeze()  # the shell, the tabs and pyqtgraph; model_controller._load freezes the model and torch
        self.tabs_ready.emit()

    # ---- models -------------------------------------------------------------------------------------------------
    def _fill_models(self, models: list) -> None:
        current = self.models.current.id if self.models.current else self.settings.model_id
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for info in models:
            self.model_combo.addItem(self.models.describe(info), info.id)
        index = self.model_combo.findData(current)
        if index >= 0:
            self.model_combo.setCurrentIndex(index)
        self.model_combo.blockSignals(False)

    def _model_chosen(self, index: int) -> None:
        model_id = self.model_combo.itemData(index)
        if model_id and (self.models.current is None or self.models.current.id != model_id):
            self.show_message(f"Loading {model_id}…")
            self.models.load(model_id)

    def _apply_review_threshold(self) -> None:
        """A technician's own threshold replaces the model's while the app runs; without one, the model's own (its
        manifest's, as loading set it) comes back."""
        loaded = self.models.current
        if loaded is None:
            return
        value = self.settings.review_threshold
        own = ReviewPolicy.from_dict(loaded.manifest.get("review")).min_confidence
        loaded.classifier.review.min_confidence = own if value is None else value

    def edit_preferences(self, dialog: Any = None) -> None:
        from allgui.ui.preferences import PreferencesDialog

        dialog = dialog or PreferencesDialog(self.settings, self)
        if dialog.exec() != dialog.DialogCode.Accepted:
            return
        duplicates_changed, review_changed, engine_changed = dialog.apply()
        self.store_settings()
        self.models.engine = self.settings.engine
        if engine_changed and self.models.current is not None:
            self.models.load(self.models.current.id)  # loaded again with the new engine, off the GUI thread
        if review_changed:
            self._apply_review_threshold()
            if self.review is not None and len(self.review.session):
                self.review.start_predictions()
        if duplicates_changed and self.review is not None:
            self.review.refresh_duplicates()

    def _model_loaded(self, loaded: Any) -> None:
        self._apply_review_threshold()  # before the tabs, connected later, classify with it
        self.settings.model_id = loaded.id
        self._fill_models(self.models.models)
        classifier = loaded.classifier
        self.show_message(
            f"Model {loaded.title} ({loaded.id}) ready on {classifier.device_name} ({classifier.engine_name})"
        )

    def _device_notice(self, text: str) -> None:
        """A real warning (a GPU that failed, a choice that cannot be saved): marked, and kept in the tooltip."""
        if text not in self._device_warnings:
            self._device_warnings.append(text)
        self._show_device()
        self.show_message(text)

    def _device_note_changed(self, text: str) -> None:
        """Where the model runs (the CPU on a PC without a GPU): said once, plainly, beside the status."""
        self._device_note = text
        self._show_device()

    def _show_device(self) -> None:
        if self._device_warnings:
            self.device_label.setText(f"⚠ {self._device_warnings[-1]}")
            self.device_label.setStyleSheet("color: #a04000;")
        else:
            self.device_label.setText(self._device_note)
            self.device_label.setStyleSheet("")
        lines = list(self._device_warnings)
        if self._device_note:
            title = self.models.current.title if self.models.current else "The model"
            lines.append(f"{title}: {self._device_note}. (CUDA: the NVIDIA GPU interface that torch uses.)")
        self.device_label.setToolTip("\n".join(lines))

    # ---- opening ------------------------------------------------------------------------------------------------
    def choose_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self,
            "Open images",
            self.settings.last_open_dir,
            "Images (*.jpg *.jpeg *.png *.tif *.tiff *.bmp);;All files (*)",
        )
        if files:
            self.settings.last_open_dir = str(Path(files[0]).parent)
            self.open_paths(files)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder", self.settings.last_open_dir)
        if folder:
            self.open_paths([folder])

    def open_paths(self, paths: list[str | Path]) -> bool:
        """Open images or a folder in the Review tab; False when the technician kept the current list."""
        if self.review is None:
            self.build_tabs()
        paths = [Path(p) for p in paths]
        self.tabs.setCurrentWidget(self.review)
        if not self.review.open_paths(paths):
            return False
        if len(paths) == 1 and paths[0].is_dir():
            self.settings.add_recent(paths[0])
            self.settings.last_open_dir = str(paths[0])
            self._fill_recent()
        return True

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for folder in self.settings.recent_folders:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _=False, f=folder: self.open_paths([f]))
        self.recent_menu.setEnabled(bool(self.settings.recent_folders))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # ---- exports ------------------------------------------------------------------------------------------------
    def _save_name(self, title: str, default: str, filters: str) -> Path | None:
        start = str(Path(self.settings.last_export_dir or Path.home()) / default)
        name, _ = QFileDialog.getSaveFileName(self, title, start, filters)
        if not name:
            return None
        self.settings.last_export_dir = str(Path(name).parent)
        return Path(name)

    def export_results(self, path: Path | None = None) -> Path | None:
        """Export the current tab's results (review or batch) as CSV or JSON, chosen by the file name."""
        tab = self.tabs.currentWidget()
        if tab is self.training:
            return self.training.save_results()
        source = self.batch if tab is self.batch else self.review
        if source is None or not source.has_results():
            self.show_error("There are no results to export yet.")
            return None
        path = path or self._save_name("Export results", "allgui-results.csv", "CSV (*.csv);;JSON (*.json)")
        if path is None:
            return None
        try:
            written = source.export(path)
        except (OSError, ValueError) as error:
            self.show_error(f"Export failed: {error}")
            return None
        self.show_message(f"Results written to {written}")
        return written

    def _report_rows(self, tab: Any) -> tuple[list[Any], str, str]:
        """The tab's rows, the folder's name and where the rows come from."""
        from allgui.core import report

        if tab is self.batch:
            cases, folder = list(tab.table_model.rows), tab.table_model.root
        else:
            cases, folder = tab.session.rows(), tab.session.folder
        source = f"the {'Batch' if tab is self.batch else 'Review'} tab" + (f" ({folder})" if folder else "")
        return cases, Path(folder).name if folder else report.default_case_name(cases, "case"), source

    def export_report(self, tab: Any = None, path: Path | None = None, case: str | None = None) -> bool:
        """Write a case report of the Review or Batch tab's images (the current tab unless given) off the GUI thread,
        as PDF or HTML by the file name; False when nothing was started."""
        from allgui.ui.report_pdf import REPORT_SUFFIXES, report_task

        tab = self.tabs.currentWidget() if tab is None else tab
        if tab is None or tab not in (self.review, self.batch):
            self.show_error("A case report is made of the Review or the Batch tab's images: open one of them first.")
            return False
        if not tab.has_results():
            self.show_error("There are no results to report yet.")
            return False
        rows, folder_name, source = self._report_rows(tab)
        if case is None:
            case, accepted = QInputDialog.getText(self, "Export report", "Case name:", text=folder_name)
            if not accepted:
                return False
        stem = re.sub(r"[^\w.-]+", "-", case.strip())[:80] or "case"  # a file name from any case name
        default = f"{stem}-report.pdf"
        path = path or self._save_name("Export report", default, "PDF (*.pdf);;HTML, self-contained (*.html)")
        if path is None:
            return False
        if path.suffix.lower() not in REPORT_SUFFIXES:
            path = path.with_name(f"{path.name}.pdf")

        def written(result: Path) -> None:
            self.show_message(f"Report written to {result}")
            self.report_written.emit(result)

        self.runner.start(
            "report",
            report_task,
            rows,
            path,
            case,
            self.settings.reviewer,
            self.models.store,
            source,
            on_result=written,
            on_error=lambda message: self.show_error(f"The report could not be written: {message}"),
            on_cancelled=lambda: self.show_message("Report cancelled"),
        )
        self.show_message(f"Writing the report of {len(rows)} images…")
        return True

    def save_review(self, path: Path | None = None) -> Path | None:
        if self.review is None or not len(self.review.session):
            self.show_error("No images are loaded.")
            return None
        path = path or self._save_name("Save review", "allgui-review.json", "AllGUI review (*.json)")
        if path is None:
            return None
        try:
            self.review.session.save(path)
        except OSError as error:
            self.show_error(f"The review could not be saved: {error}")
            return None
        self.show_message(f"Review saved to {path}")
        return path

    def export_labelled(self, folder: Path | None = None) -> Path | None:
        if self.review is None or not self.review.session.labelled():
            self.show_error("No image has a confirmed or corrected label yet.")
            return None
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(
                self, "Export labelled images into", self.settings.last_export_dir
            )
            if not chosen:
                return None
            folder = Path(chosen)
        try:
            counts = self.review.session.export_labelled(folder)
        except (OSError, ValueError) as error:
            self.show_error(f"Export failed: {error}")
            return None
        self.show_message(f"Exported {sum(counts.values())} labelled image(s) to {folder}")
        return folder

    # ---- wizard -------------------------------------------------------------------------------------------------
    def open_wizard(self, folder: Path | None = None) -> Any:
        from allgui.ui.wizard import RetrainingWizard

        if self.wizard is not None and self.wizard.isVisible():
            self.wizard.raise_()
            return self.wizard
        self.wizard = RetrainingWizard(self.runner, self.models, self.settings, self)
        if folder is not None:
            self.wizard.set_folder(folder)
        self.wizard.show()
        return self.wizard

    # ---- help ---------------------------------------------------------------------------------------------------
    def _show_document(self, title: str, markdown: str) -> Any:
        from allgui.ui.help import DocumentViewer

        viewer = DocumentViewer(title, markdown, self)
        viewer.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        viewer.show()
        return viewer

    def show_user_guide(self) -> Any:
        from allgui.ui.help import user_guide_markdown

        return self._show_document("User guide — AllGUI", user_guide_markdown())

    def show_model_card(self) -> Any:
        from allgui.ui.help import model_card_markdown

        return self._show_document("Model card — AllGUI", model_card_markdown(self.models.current))

    def show_shortcuts(self) -> Any:
        from allgui.ui.help import shortcut_rows, shortcuts_markdown

        return self._show_document("Keyboard shortcuts — AllGUI", shortcuts_markdown(shortcut_rows(self)))

    # ---- status -------------------------------------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        self._message = text
        self._progress_slot = None
        self.status_label.setText(text)

    def show_error(self, text: str) -> None:
        """A readable error that never blocks the window (work in other tabs carries on)."""
        log.error(text)
        self.errors.append(text)
        self.show_message(f"Error: {text}")
        if self._closing:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "AllGUI", text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _busy_changed(self, busy: bool) -> None:
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if not busy:
            self.progress_bar.reset()
        # Every task's end passes here: a progress line must not outlive its task ("attention: ..." for ever).
        if self._progress_slot is not None and not self.runner.is_running(self._progress_slot):
            self._progress_slot = None
            self.status_label.setText(self._message)

    def _progress(self, slot: str, done: int, total: int, message: str) -> None:
        show_progress(self.progress_bar, done, total)
        if message:
            self._progress_slot = slot
            self.status_label.setText(message)

    def about(self) -> None:
        QMessageBox.about(
            self,
            "About AllGUI",
            f"AllGUI {__version__}\n\nReview of peripheral blood smear images for B-ALL subtypes "
            f"(Benign, Early Pre-B, Pre-B, Pro-B).\n\n{DISCLAIMER}\n\n"
            "Help → User guide explains the app; Help → Model card describes the active model.",
        )

    # ---- shutdown -----------------------------------------------------------------------------------------------
    def store_settings(self) -> None:
        self.settings.window_geometry = bytes(self.saveGeometry().toHex()).decode("ascii")
        self.settings.window_state = bytes(self.saveState().toHex()).decode("ascii")
        if self.review is not None:
            self.settings.splitter_state = bytes(self.review.splitter.saveState().toHex()).decode("ascii")
            self.settings.current_tab = self.tabs.currentIndex()
        try:
            save_settings(self.settings, self.settings_dir)
        except OSError as error:
            log.warning("preferences not saved: %s", error)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Cancel every worker and wait for it, so that no thread outlives the window."""
        self._closing = True
        self.store_settings()
        if self.wizard is not None:
            self.wizard.close()
        # A cancelled step (a training batch, a model load) may take seconds to return: the window goes at once,
        # after the runner has stopped taking tasks (the events processed here could otherwise start new ones).
        self.runner.close()
        self.hide()
        QApplication.processEvents()
        if not self.runner.shutdown(15000):
            log.warning("some work did not stop within 15 s")
        QApplication.processEvents()
        event.accept()
