"""Review tab edges: replacing a list that holds the technician's labels, and images that look the same but were
labelled differently."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from allgui.core.label_conflicts import conflicting_groups
from allgui.ui.review_table import COLUMNS

from .helpers import close_window, open_window

DUPLICATE = COLUMNS.index("Duplicate")


def _open(qtbot, window, folder: Path) -> None:
    with qtbot.waitSignals([window.review.predictions_done, window.review.duplicates_done], timeout=120000):
        window.open_paths([folder])


class _Answer:
    """Stands in for QMessageBox.question: records each question and gives one answer."""

    def __init__(self, answer: QMessageBox.StandardButton) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def __call__(self, parent, title, text, *args):
        self.asked.append(text)
        return self.answer


def test_conflicting_groups_is_pure_and_ignores_unlabelled_and_ungrouped() -> None:
    pairs = [(0, 1), (0, 1), (1, 0), (1, 2), (1, None), (None, 3), (2, None), (3, 2), (None, 0)]
    assert conflicting_groups(pairs) == {1: (0, 2)}
    assert conflicting_groups([(4, 3), (4, 1), (4, 3), (0, 0)]) == {4: (1, 3)}
    assert conflicting_groups([]) == {}


def test_opening_a_folder_asks_before_replacing_labelled_images(
    qtbot, store, image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for path in sorted(image_folder.iterdir())[:4]:
        shutil.copy(path, other / path.name)
    window = open_window(qtbot, store, "test-svm")
    review = window.review
    _open(qtbot, window, image_folder)
    review.select_row(3)
    review.label_current(2)
    session = review.session

    # Cancel keeps the list, its labels and the recent-folder list as they were.
    cancel = _Answer(QMessageBox.StandardButton.Cancel)
    monkeypatch.setattr(QMessageBox, "question", cancel)
    assert not window.open_paths([other])
    assert len(cancel.asked) == 1 and "1 image(s) you labelled" in cancel.asked[0]
    assert "come back when you open that folder again" in cancel.asked[0]  # a folder's labels are autosaved
    assert review.session is session and session.items[3].label == 2
    assert [a.text() for a in window.recent_menu.actions()] == [str(image_folder)]
    assert not window.runner.is_running("scan")

    # Yes replaces it, and the status bar says what went.
    monkeypatch.setattr(QMessageBox, "question", _Answer(QMessageBox.StandardButton.Yes))
    messages: list[str] = []
    review.message.connect(messages.append)
    _open(qtbot, window, other)
    assert len(review.session) == 4
    assert any(f"replaced the list of 21 image(s) of {image_folder}, 1 labelled by you" in m for m in messages)
    close_window(qtbot, window)


def test_images_opened_one_by_one_warn_that_their_labels_are_unsaved(
    qtbot, store, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window(qtbot, store, "test-svm")
    review = window.review
    files = sorted(image_folder.iterdir())[:3]
    with qtbot.waitSignals([review.predictions_done, review.duplicates_done], timeout=120000):
        window.open_paths(files)
    review.select_row(0)
    review.confirm_current()
    cancel = _Answer(QMessageBox.StandardButton.Cancel)
    monkeypatch.setattr(QMessageBox, "question", cancel)
    assert not window.open_paths([image_folder])
    assert "not saved" in cancel.asked[0] and "Save review" in cancel.asked[0]
    close_window(qtbot, window)


def test_replacing_a_list_without_labels_asks_nothing_and_says_so(
    qtbot, store, image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(sorted(image_folder.iterdir())[0], other / "one.jpg")
    never = _Answer(QMessageBox.StandardButton.Cancel)
    monkeypatch.setattr(QMessageBox, "question", never)
    window = open_window(qtbot, store, "test-svm")
    _open(qtbot, window, image_folder)
    messages: list[str] = []
    window.review.message.connect(messages.append)
    _open(qtbot, window, other)
    assert never.asked == []
    assert any(
        m.startswith("Loaded 1 image(s)") and f"replaced the list of 21 image(s) of {image_folder}" in m
        for m in messages
    ), messages
    close_window(qtbot, window)


@pytest.fixture
def resaved_folder(image_folder: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The real images plus a near-duplicate made the usual way: one picture saved again as JPEG."""
    folder = tmp_path / "pairs"
    shutil.copytree(image_folder, folder)
    original = next(p for p in sorted(folder.iterdir()) if not p.stem.endswith("-copy"))
    resaved = folder / f"{original.stem}-resaved.jpg"
    Image.open(original).convert("RGB").save(resaved, quality=70)
    return folder, original, resaved


def _pair(qtbot, window, resaved_folder: tuple[Path, Path, Path]) -> tuple[int, int, int]:
    folder, original, resaved = resaved_folder
    _open(qtbot, window, folder)
    session = window.review.session
    first, second = session.index_of(original), session.index_of(resaved)
    group = session.items[first].duplicate_group
    assert group is not None and session.items[second].duplicate_group == group
    assert session.items[first].sha256 != session.items[second].sha256
    return first, second, group


def test_near_duplicates_are_worded_as_looking_the_same(qtbot, store, resaved_folder) -> None:
    window = open_window(qtbot, store, "test-svm")
    review = window.review
    first, second, group = _pair(qtbot, window, resaved_folder)
    review.select_row(first)
    assert "look the same" in review.duplicates_box.title() and "pHash" not in review.duplicates_box.title()
    assert "pHash" in review.duplicates_box.toolTip()
    thumbnails = [review.duplicates_layout.itemAt(i).widget() for i in range(review.duplicates_layout.count() - 1)]
    near = next(t for t in thumbnails if t.toolTip().startswith(str(resaved_folder[2])))
    assert near.text().endswith("near-duplicate (looks the same)")
    assert "pHash distance" in near.toolTip()
    assert "pHash" in review.table_model.index(second, DUPLICATE).data(Qt.ItemDataRole.ToolTipRole)
    close_window(qtbot, window)


def test_different_labels_in_one_duplicate_group_are_marked(qtbot, store, resaved_folder) -> None:
    """Labelling a near-duplicate unlike its original is marked in the list and said in the status bar."""
    window = open_window(qtbot, store, "test-svm")
    review = window.review
    first, second, group = _pair(qtbot, window, resaved_folder)
    review.select_row(first)
    review.label_current(0)
    review.select_row(second)
    review.label_current(0)
    assert "labels differ" not in review.table_model.index(second, DUPLICATE).data()
    review.label_current(3)
    cell = review.table_model.index(second, DUPLICATE)
    assert "labels differ" in cell.data()
    assert "labels differ" in review.table_model.index(first, DUPLICATE).data()
    assert cell.data(Qt.ItemDataRole.BackgroundRole) is not None
    assert "Benign, Pro-B" in cell.data(Qt.ItemDataRole.ToolTipRole)
    assert "different labels" in window.status_label.text() and f"group {group + 1}" in window.status_label.text()
    assert "with different labels" in review.count_label.text()
    assert "labels of these images differ" in review.duplicates_box.warning.text()

    # Agreeing again takes the mark away.
    review.label_current(0)
    assert "labels differ" not in review.table_model.index(second, DUPLICATE).data()
    assert review.table_model.index(second, DUPLICATE).data(Qt.ItemDataRole.BackgroundRole) is None
    assert "different labels" not in review.count_label.text()
    close_window(qtbot, window)
