"""Export report…: the File menu action and the Batch tab's button write the case report of the tab's rows (PDF or
HTML, off the GUI thread), with the reviewer from Preferences; the Review tab's report carries the person's labels."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog

from allgui import DISCLAIMER
from allgui.ui.preferences import PreferencesDialog

from .helpers import Accepting, close_window, open_window


def _answer_dialogs(monkeypatch, case: str, path: Path) -> None:
    """The case-name and file dialogs answered as a technician would."""
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *args, **kwargs: (case, True)))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *args, **kwargs: (str(path), "")))


def test_export_report_of_the_batch_tab(qtbot, store, image_folder: Path, tmp_path: Path, monkeypatch) -> None:
    window = open_window(qtbot, store, "test-secnn")
    dialog = PreferencesDialog(window.settings, window)
    dialog.reviewer.setText("  T. Reviewer ")
    dialog.own_policy.setChecked(False)
    dialog.review.setValue(1.0)  # every image flagged, each with its reason
    window.edit_preferences(Accepting(dialog))
    assert window.settings.reviewer == "T. Reviewer"

    batch = window.batch
    window.tabs.setCurrentWidget(batch)
    with qtbot.waitSignal(batch.finished, timeout=120000):
        assert batch.start(image_folder)
    rows = batch.table_model.rows
    flagged = [Path(r.path).name for r in rows if r.needs_review]
    assert len(flagged) == len(rows) == 21

    pdf = tmp_path / "batch-report.pdf"
    _answer_dialogs(monkeypatch, "Case 7", pdf)
    with qtbot.waitSignal(window.report_written, timeout=60000) as written:
        window.export_report_action.trigger()
    assert written.args == [pdf] and pdf.read_bytes().startswith(b"%PDF")
    assert "Report written to" in window.status_label.text() and not window.errors
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-raw", pdf, "-"], capture_output=True, text=True, check=True).stdout
        joined = "".join(text.split())
        assert "Case 7" in text and "T. Reviewer" in text and "test-secnn" in text
        assert "".join(DISCLAIMER.split()) in joined
        assert all(name in joined for name in flagged)

    page_path = tmp_path / "batch-report.html"
    _answer_dialogs(monkeypatch, "Case 7", page_path)
    with qtbot.waitSignal(window.report_written, timeout=60000):
        batch.report_button.click()
    page = page_path.read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 21
    assert "below 1.00" in page  # the reasons the batch recorded (the export files leave them out)
    assert "the Batch tab" in page and "Duplicate groups" in page

    window.tabs.setCurrentWidget(window.training)
    assert not window.export_report(path=tmp_path / "training.pdf", case="x")
    assert "Review or the Batch tab" in window.errors[-1]
    close_window(qtbot, window)


def test_export_report_of_the_review_tab(qtbot, store, image_folder: Path, tmp_path: Path) -> None:
    window = open_window(qtbot, store, "test-svm")
    review = window.review
    with qtbot.waitSignals([review.predictions_done, review.duplicates_done], timeout=120000):
        window.open_paths([image_folder])
    session = review.session
    session.confirm(0)
    other = (session.items[1].predicted + 1) % 4
    session.set_label(1, other)
    path = tmp_path / "review.html"
    with qtbot.waitSignal(window.report_written, timeout=60000):
        assert window.export_report(path=path, case=image_folder.name)
    page = path.read_text(encoding="utf-8")
    assert f"Case report: {image_folder.name}" in page
    assert "1 of 2 labelled images." in page and session.items[1].path.name in page
    assert "Reviewer</b></td><td>not set" in page
    close_window(qtbot, window)
