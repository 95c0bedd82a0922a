"""What a technician meets in the first hour: the wizard from its menu, the Help menu, plain wording for the
attention view and the device, and status text that does not outlive its work."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PySide6.QtGui import QKeySequence

from allgui.core.classes import CLASS_NAMES
from allgui.ui.help import DocumentViewer
from allgui.ui.review_tab import AVERAGES_MESSAGE

from .helpers import close_window, open_window


def _menu_action(window, menu_text: str, action_text: str):
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == menu_text)
    return next(a for a in menu.actions() if a.text() == action_text)


def _viewer(window, before: set) -> DocumentViewer:
    (viewer,) = [v for v in window.findChildren(DocumentViewer) if v not in before and v.isVisible()]
    return viewer


def test_the_wizard_opened_from_its_menu_starts_with_an_empty_folder(qtbot, store) -> None:
    window = open_window(qtbot, store, "test-svm")
    _menu_action(window, "&Model", "&Retraining wizard…").trigger()
    wizard = window.wizard
    assert wizard is not None and wizard.isVisible()
    assert wizard.folder_page.folder_edit.text() == ""  # was "False": the action's `checked` taken as the folder
    wizard.reject()
    close_window(qtbot, window)


def test_help_menu_user_guide_model_card_and_shortcuts(qtbot, store) -> None:
    window = open_window(qtbot, store, "test-secnn")
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    help_texts = [a.text() for a in help_menu.actions()]
    assert {"&User guide", "&Model card", "&Keyboard shortcuts", "&About AllGUI"} <= set(help_texts)

    # The user guide, shipped in resources/, in a viewer inside the app.
    seen = set(window.findChildren(DocumentViewer))
    _menu_action(window, "&Help", "&User guide").trigger()
    guide = _viewer(window, seen)
    text = guide.browser.toPlainText()
    lowered = text.lower()
    assert "for research and laboratory review, not a diagnosis" in lowered
    for topic in (
        "Opening images and folders",
        "needs review",
        "Duplicates",
        "Batch",
        "Retraining wizard",
        "Where your data lives",
        "Keyboard shortcuts",
        "ALLGUI_HOME",
    ):
        assert topic in text, topic
    # Every shortcut the window really has is in the guide's table.
    for action in window.findChildren(type(window.open_images_action)):
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        if keys:
            assert re.search(rf"(?<![\w+]){re.escape(keys)}(?![\w+])", text), (keys, action.text())
    guide.close()

    # The active model's own card.
    seen = set(window.findChildren(DocumentViewer))
    _menu_action(window, "&Help", "&Model card").trigger()
    card = _viewer(window, seen).browser.toPlainText()
    assert "Model card: secnn-default" in card and "Held-out evaluation" in card

    # A model without a card: a clear note, with the manifest's summary (the SVM's held-out accuracy, 86.3%).
    window.models.load("test-svm")
    qtbot.waitUntil(lambda: window.models.current.id == "test-svm", timeout=60000)
    seen = set(window.findChildren(DocumentViewer))
    window.model_card_action.trigger()
    card = _viewer(window, seen).browser.toPlainText()
    assert "This model has no model card" in card
    assert "86.3%" in card and "test-svm" in card and "not a diagnosis" in card

    # Shortcuts: listed from the real actions and the review tab's keys, so a changed shortcut shows as it is.
    window.export_action.setShortcut(QKeySequence("Ctrl+Alt+X"))
    seen = set(window.findChildren(DocumentViewer))
    window.shortcuts_action.trigger()
    listed = _viewer(window, seen).browser.toPlainText()
    assert "Ctrl+Alt+X" in listed and "Export results" in listed
    assert "Ctrl+Shift+O" in listed and "Open folder" in listed
    assert "Retraining wizard" in listed and "Ctrl+R" in listed
    for name in CLASS_NAMES:
        assert f"Label the selected image {name}" in listed
    # And the gallery's keys, which its view reads itself.
    assert "Move the selected thumbnails to Benign, Early Pre-B, Pre-B or Pro-B" in listed
    assert "Show the current thumbnail large" in listed and "Clear the labels of the selected thumbnails" in listed
    close_window(qtbot, window)


def test_no_gpu_is_said_once_plainly_and_a_failing_gpu_is_still_a_warning(qtbot, store) -> None:
    window = open_window(qtbot, store, "test-secnn")
    qtbot.waitUntil(lambda: "CPU" in window.device_label.text(), timeout=5000)
    assert "⚠" not in window.device_label.text()
    assert "CUDA" not in window.status_label.text()  # once: beside the status, not in it as well
    assert "ready on CPU" in window.status_label.text()

    window.models.notice.emit("CUDA failed (OutOfMemoryError: out of memory); continuing on the CPU")
    assert window.device_label.text().startswith("⚠ CUDA failed")
    assert "continuing on the CPU" in window.status_label.text()
    tip = window.device_label.toolTip()
    assert "CUDA failed" in tip and "Runs on the CPU" in tip  # the plain note is not lost behind the warning
    close_window(qtbot, window)


def _open_with_averages(qtbot, window, folder: Path) -> list[str]:
    """Open ``folder`` and wait for the class averages; returns every progress line the status bar was given."""
    review = window.review
    shown_progress: list[str] = []
    window.runner.progress.connect(lambda slot, d, t, message: shown_progress.append(message))
    with qtbot.waitSignals([review.predictions_done, review.duplicates_done], timeout=120000):
        window.open_paths([folder])
    qtbot.waitUntil(lambda: bool(review.class_averages) and not window.runner.is_running("averages"), timeout=60000)
    return shown_progress


def test_a_progress_line_goes_with_the_work_it_describes(qtbot, store, image_folder: Path) -> None:
    window = open_window(qtbot, store, "test-secnn")
    shown_progress = _open_with_averages(qtbot, window, image_folder)
    assert AVERAGES_MESSAGE in shown_progress
    assert AVERAGES_MESSAGE not in window.status_label.text()
    # Back to the classification summary that the class averages' progress had covered.
    assert window.status_label.text().startswith("Classified 21 image(s)")
    close_window(qtbot, window)


def test_attention_summary_by_default_channels_behind_a_toggle(qtbot, store, image_folder: Path) -> None:
    window = open_window(qtbot, store, "test-secnn")
    review = window.review
    _open_with_averages(qtbot, window, image_folder)
    row = 2
    with qtbot.waitSignal(review.details_shown, timeout=30000, check_params_cb=lambda r: r == row):
        review.select_row(row)
    panel = review.attention_panel
    attention = panel.attention
    predicted = review.session.items[row].predicted
    assert panel.title.text() == "<b>What the network attended to</b>"
    assert "squeeze-and-excitation" in panel.title.toolTip()
    assert "SE channel excitation" not in panel.caption.text()
    assert "excitation" in panel.channels_box.toolTip()

    # One bar per block: this image's distance from its class average; ticks: how far that class's images usually are.
    assert not panel.channels_box.isChecked()
    assert panel.summary_bars.isVisible() and not any(bar.isVisible() for bar in panel.bars)
    average, count = review.class_averages[predicted]
    expected = [float(np.mean(np.abs(e - a))) for e, a in zip(attention.excitations, average, strict=True)]
    assert np.allclose(panel.summary, expected)
    assert np.allclose(panel.summary_bars.opts["width"], expected)
    members = [item.path for item in review.session.items if item.predicted == predicted]
    classifier = window.models.current.classifier
    vectors = [classifier.attention(classifier.read(path)).excitations for path in members]
    usual = np.median([[np.mean(np.abs(v - m)) for v, m in zip(image, average, strict=True)] for image in vectors], 0)
    assert np.allclose(panel.summary_typical, usual, atol=1e-4)
    assert np.allclose(panel.summary_ticks.getData()[0], usual, atol=1e-4)
    assert f"{count} loaded image(s) predicted {CLASS_NAMES[predicted]}" in panel.caption.text()

    # The toggle shows the channels themselves and back.
    panel.channels_box.setChecked(True)
    assert all(bar.isVisible() for bar in panel.bars) and not panel.summary_bars.isVisible()
    assert panel.caption.text().startswith("Channel weights (0-1) per block")
    panel.channels_box.setChecked(False)
    assert panel.summary_bars.isVisible()
    close_window(qtbot, window)


def test_manifest_summary_reads_the_wizards_and_the_clis_layouts() -> None:
    from allgui.ui.help import manifest_summary

    held_out = {"n": 48, "accuracy": 0.875, "f1_macro": 0.8612, "per_class_recall": {"Benign": 0.5}}
    wizard = {"id": "mine", "kind": "svm", "metrics": {"held_out": held_out}, "training": {"train_images": 40}}
    text = manifest_summary(wizard)
    assert "87.5% on 48 images" in text and "macro-F1 0.861" in text and "Benign 50.0%" in text
    cli = {"id": "cli", "metrics": {**held_out, "evaluated_on": "block hold-out: last 15%"}, "training": {}}
    assert "block hold-out: last 15%" in manifest_summary(cli)
    assert "not measured" in manifest_summary({"id": "cancelled", "metrics": {}})
