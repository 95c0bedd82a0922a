"""The Review tab's gallery on real images with the shipped SE-CNN: grouping and order, labels by key into the one
session (the list and the exports see them), thumbnails made off the GUI thread, and 2767 images without a widget
per image."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from allgui.core.classes import CLASS_NAMES
from allgui.core.classify import classify_paths
from allgui.core.review_session import ReviewSession
from allgui.core.scan import scan_images
from allgui.ui import review_tasks
from allgui.ui.gallery_model import CACHE_LIMIT, GROUP_NAMES, HEADER, UNCLASSIFIED, badge_text, shown_group
from allgui.ui.gallery_view import GalleryDelegate
from allgui.ui.review_table import COLUMNS

from .helpers import close_window, open_window

PRE_B = CLASS_NAMES.index("Pre-B")


def _open_gallery(qtbot, store, folder: Path):
    window = open_window(qtbot, store, "test-secnn")
    window.resize(1500, 900)
    # A strict review threshold, as a technician may set in Preferences: some images get flagged in 21.
    window.models.current.classifier.review.min_confidence = 0.999
    review = window.review
    with qtbot.waitSignals([review.predictions_done, review.duplicates_done], timeout=120000):
        window.open_paths([folder])
    review.set_view_mode("gallery")
    qtbot.waitUntil(lambda: review.gallery.view.isVisible(), timeout=5000)
    return window, review, review.gallery


def _groups(model) -> dict[int, list[int]]:
    """Session rows under each header, in gallery order."""
    groups: dict[int, list[int]] = {}
    current = None
    for entry in model.entries:
        if entry.kind == HEADER:
            current = groups.setdefault(entry.key, [])
        else:
            current.append(entry.key)
    return groups


@pytest.mark.usefixtures("data_dir")  # real images: generated ones are all unlike the training images
def test_gallery_groups_by_class_doubtful_first(qtbot, store, image_folder: Path, monkeypatch) -> None:
    threads: list[threading.Thread] = []
    made = review_tasks.thumbnail

    def recording(path, size):  # noqa: ANN001, ANN202
        threads.append(threading.current_thread())
        return made(path, size)

    monkeypatch.setattr(review_tasks, "thumbnail", recording)
    window, review, gallery = _open_gallery(qtbot, store, image_folder)
    session, model = review.session, gallery.model
    assert review.view_mode == "gallery" and review.pages.currentWidget() is gallery

    groups = _groups(model)
    assert list(groups) == list(range(len(GROUP_NAMES)))  # every class has its header, even an empty one
    assert sorted(row for rows in groups.values() for row in rows) == list(range(len(session)))
    flagged = [item for item in session.items if item.needs_review]
    assert flagged and len(flagged) < len(session)  # both kinds on the page
    for group, rows in groups.items():
        items = [session.items[row] for row in rows]
        assert all(shown_group(item) == group for item in items)
        if group < UNCLASSIFIED:
            assert all(item.predicted == group for item in items)
        keys = [(not item.needs_review, item.confidence) for item in items]
        assert keys == sorted(keys), f"{GROUP_NAMES[group]}: needs review first, then the least confident"
        assert f"{len(rows)} image(s)" in model.header_text(group)
    assert not groups[UNCLASSIFIED] and gallery.view.isRowHidden(model.header_position(UNCLASSIFIED))

    # Doubt shows: a short reason badge, and not the confident caption of an image the model is sure of.
    doubtful = next(i for i, item in enumerate(session.items) if item.needs_review)
    sure = next((i for i, item in enumerate(session.items) if not item.needs_review), None)
    assert 0 < len(badge_text(session.items[doubtful])) <= 20
    text, _colour, style = GalleryDelegate._status(session.items[doubtful], shown_group(session.items[doubtful]))
    assert style == "italic" and "to review" in text
    if sure is not None:
        assert badge_text(session.items[sure]) == ""
        assert GalleryDelegate._status(session.items[sure], session.items[sure].predicted)[2] == "bold"

    # Thumbnails of the images on screen are made in the pool, never on the GUI thread, and cached by path.
    qtbot.waitUntil(lambda: len(gallery.thumbnails.cache) > 0, timeout=30000)
    bar = gallery.view.verticalScrollBar()
    bar.setValue(bar.maximum())  # the rest come into view
    qtbot.waitUntil(lambda: len(gallery.thumbnails.cache) == len(session), timeout=30000)
    assert threads and threading.main_thread() not in threads
    assert {item.path for item in session.items} == set(gallery.thumbnails.cache)
    close_window(qtbot, window)


@pytest.mark.usefixtures("data_dir")
def test_keys_reclassify_confirm_and_select(qtbot, store, image_folder: Path) -> None:
    window, review, gallery = _open_gallery(qtbot, store, image_folder)
    session, model, view = review.session, gallery.model, gallery.view
    view.setFocus()
    qtbot.waitUntil(view.hasFocus, timeout=5000)

    # "3" on a selected image of another class moves it to Pre-B, as the technician's label, marked as changed.
    row = next(r for r in _groups(model)[0] + _groups(model)[1] + _groups(model)[3])
    view.select_row(row)
    successor = view._successor([row])
    qtbot.keyClick(view, Qt.Key.Key_3)
    item = session.items[row]
    assert item.label == PRE_B and item.status == "corrected" and item.predicted != PRE_B
    assert row in _groups(model)[PRE_B] and model.group_at(model.position_of_row(row)) == PRE_B
    assert "1 changed by you" in model.header_text(PRE_B)
    assert [i for i, it in enumerate(session.items) if it.label is not None] == [row]  # not also by the tab's keys
    # The same label the list and the exports see.
    assert review.table_model.index(row, COLUMNS.index("Label")).data() == "✎ Pre-B"
    exported = session.rows()[row]
    assert exported.reviewed_label == "Pre-B" != exported.predicted and exported.reviewed_at == item.reviewed_at
    # The gallery goes on with the next image where the moved one was.
    assert view.current_row() == successor and view.selected_rows() == [successor]

    # Enter confirms the selected image as shown (its prediction), and goes on.
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert session.items[successor].label == session.items[successor].predicted
    assert session.items[successor].status == "confirmed"
    assert view.current_row() not in (row, successor)

    # Shift+arrow extends the selection; "4" moves both to Pro-B; Backspace gives one back to the model's class.
    largest = max((g for g in range(UNCLASSIFIED) if g != PRE_B), key=lambda g: len(_groups(model)[g]))
    view.select_row(_groups(model)[largest][0])  # first after its header: the start of a line
    qtbot.keyClick(view, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    pair = view.selected_rows()
    assert pair == _groups(model)[largest][:2]
    qtbot.keyClick(view, Qt.Key.Key_4)
    assert all(session.items[r].label == 3 and r in _groups(model)[3] for r in pair)
    view.select_row(pair[0])
    qtbot.keyClick(view, Qt.Key.Key_Backspace)
    assert session.items[pair[0]].label is None
    assert pair[0] in _groups(model)[session.items[pair[0]].predicted]

    # Ctrl+click adds to the selection; a click on a class header selects the whole class.
    view.select_row(row)
    other = _groups(model)[PRE_B][-1]
    view.scrollTo(model.index(model.position_of_row(other), 0))
    qtbot.mouseClick(
        view.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ControlModifier,
        view.visualRect(model.index(model.position_of_row(other), 0)).center(),
    )
    assert set(view.selected_rows()) == {row, other}
    header = model.index(model.header_position(PRE_B), 0)
    view.scrollTo(header)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(header).center())
    assert view.selected_rows() == _groups(model)[PRE_B]

    # Home and End go to the first and the last image, never to a header.
    images = [e.key for e in model.entries if e.kind != HEADER]
    qtbot.keyClick(view, Qt.Key.Key_End)
    assert view.current_row() == images[-1]
    qtbot.keyClick(view, Qt.Key.Key_Home)
    assert view.current_row() == images[0]

    # A drag onto a class header moves the dragged images to that class.
    dragged = next(r for g in (0, 2, 3) for r in _groups(model)[g] if r != row)
    mime = model.mimeData([model.index(model.position_of_row(dragged), 0)])
    header = model.index(model.header_position(1), 0)
    view.scrollTo(header)
    drop = QDropEvent(
        QPointF(view.visualRect(header).center()),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    drop.source = lambda: view  # what a drag started in the gallery carries (set by QDrag, not by this constructor)
    view.dropEvent(drop)
    assert drop.isAccepted() and session.items[dragged].label == 1 and dragged in _groups(model)[1]

    # Space shows the current image large with its probabilities; Space again hides it.
    view.select_row(row)
    qtbot.keyClick(view, Qt.Key.Key_Space)
    assert gallery.preview.isVisible() and gallery.preview.row == row
    assert np.allclose(gallery.preview.chart.values, session.items[row].probabilities)
    assert "Pre-B" in gallery.preview.caption.text()
    qtbot.keyClick(view, Qt.Key.Key_Space)
    assert not gallery.preview.isVisible()

    # Back in the list, the same image is selected with the label given in the gallery.
    review.set_view_mode("list")
    assert review.current_row == row and "Pre-B (corrected)" in review.label_box.status.text()
    close_window(qtbot, window)


def test_2767_images_without_a_widget_per_image(qtbot, store, data_dir: Path) -> None:
    window = open_window(qtbot, store, "test-secnn")
    review = window.review
    files = scan_images([data_dir]).files
    assert len(files) >= 2700
    # One classify_paths run, as the tab's own prediction task does, without the tab's duplicate pass (minutes).
    started = time.monotonic()
    rows = classify_paths(files, window.models.current, group_duplicates=False)
    session = ReviewSession(files, data_dir)
    for index, result in enumerate(rows):
        session.set_prediction(index, result.probabilities, result.needs_review, result.reasons)
    classified = time.monotonic() - started
    review.set_view_mode("gallery")
    gallery, view = review.gallery, review.gallery.view
    qtbot.wait(200)
    widgets = len(QApplication.allWidgets())
    in_view = len(view.findChildren(object))

    review.set_session(session)
    model = gallery.model
    assert model.rowCount() == len(files) + len(GROUP_NAMES)
    qtbot.waitUntil(
        lambda: len(gallery.thumbnails.cache) > 20 and not window.runner.is_running("thumbnails"), timeout=30000
    )
    assert len(gallery.thumbnails.cache) < 400  # only what was on screen: made lazily
    bar = view.verticalScrollBar()
    for fraction in (0.25, 0.5, 0.75, 1.0):  # scrolled through: thumbnails made as they come into view
        bar.setValue(int(bar.maximum() * fraction))
        qtbot.wait(50)
    qtbot.waitUntil(lambda: not window.runner.is_running("thumbnails"), timeout=30000)
    last = model.entries[-1] if model.entries[-1].kind != HEADER else model.entries[-2]
    assert session.items[last.key].path in gallery.thumbnails.cache
    assert len(gallery.thumbnails.cache) <= CACHE_LIMIT
    # No widget per image: the same widgets as with an empty gallery (a tooltip or two may come and go).
    assert len(QApplication.allWidgets()) - widgets <= 5
    assert len(view.findChildren(object)) - in_view <= 5
    assert classified < 90
    close_window(qtbot, window)
