"""The review tab on real images with real small models: table, probabilities, attention, duplicates, labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from allgui.core.classes import CLASS_NAMES
from allgui.core.review_session import ReviewSession, autosave_path
from allgui.ui.attention_view import NOT_SE_TEXT
from allgui.ui.review_table import COLUMNS

from .helpers import close_window, open_window


def _open(qtbot, window, folder: Path) -> None:
    with qtbot.waitSignals([window.review.predictions_done, window.review.duplicates_done], timeout=120000):
        window.open_paths([folder])


def test_review_with_the_se_cnn(qtbot, store, image_folder: Path, isolated_home: Path) -> None:
    window = open_window(qtbot, store, "test-secnn")
    review = window.review
    _open(qtbot, window, image_folder)
    session = review.session
    assert len(session) == 21
    assert review.table_model.rowCount() == 21
    assert all(item.predicted is not None and item.error is None for item in session.items)
    for item in session.items:
        assert np.isclose(sum(item.probabilities), 1.0)

    # The copy and its original form a duplicate group, with a badge in the table.
    copy_row = next(i for i, item in enumerate(session.items) if item.path.stem.endswith("-copy"))
    group = session.items[copy_row].duplicate_group
    assert group is not None
    badge = review.table_model.index(copy_row, COLUMNS.index("Duplicate")).data()
    assert badge == f"dup {group + 1}"

    # Selecting an image shows its probabilities, its attention per SE block, the heat map and its duplicates.
    with qtbot.waitSignal(review.details_shown, timeout=30000, check_params_cb=lambda row: row == copy_row):
        review.select_row(copy_row)
    assert np.allclose(review.probability_chart.values, session.items[copy_row].probabilities)
    attention = review.attention_panel.attention
    assert attention is not None
    panel = review.attention_panel
    assert len(panel.bars) == len(attention.excitations) == len(attention.block_names) >= 3
    for block, values in enumerate(attention.excitations):
        assert np.allclose(panel.shown[block], values)
        assert np.allclose(panel.bars[block].yData - panel._offset(block), values)
    assert review.image_panel.overlay.image is not None
    # The heat map (here at the model's half-scale decode, 112 px) is stretched over the whole 224 px image.
    overlay, image = review.image_panel.overlay, review.image_panel.image
    assert overlay.mapRectToParent(overlay.boundingRect()) == image.mapRectToParent(image.boundingRect())
    assert review.duplicates_box.isVisibleTo(review)
    captions = [review.duplicates_layout.itemAt(i).widget().text() for i in range(review.duplicates_layout.count() - 1)]
    assert captions[0].endswith("this image") and any("identical file" in c for c in captions[1:])

    # The rows below are prepared in the background, so moving on to the next image shows it at once.
    model_id = window.models.current.id
    following = review.proxy.mapToSource(
        review.proxy.index(review.proxy.mapFromSource(review.table_model.index(copy_row, 0)).row() + 1, 0)
    ).row()
    qtbot.waitUntil(lambda: (model_id, following) in review.attention_cache, timeout=30000)
    shown: list[int] = []
    review.details_shown.connect(shown.append)
    review.select_row(following)
    assert shown == [following]  # emitted before select_row returned: no worker was needed
    review.details_shown.disconnect(shown.append)

    # Class averages arrive in the background and are drawn beside the image's own excitation.
    qtbot.waitUntil(lambda: bool(review.class_averages), timeout=60000)
    predicted = session.items[copy_row].predicted
    review.select_row(copy_row)
    average, count = review.class_averages[predicted]
    assert count == sum(item.predicted == predicted for item in session.items)
    assert np.allclose(review.attention_panel.shown_averages[0], average[0])
    x, y = review.attention_panel.averages[0].getData()
    assert np.allclose(y - review.attention_panel._offset(0), average[0])

    # The technician corrects one image and confirms another; the labels are saved beside the results.
    review.label_current((predicted + 1) % 4)
    other = (copy_row + 5) % len(session)
    review.select_row(other)
    review.confirm_current()
    assert session.items[copy_row].status == "corrected" and session.items[other].status == "confirmed"
    saved = ReviewSession.load(autosave_path(isolated_home, image_folder))
    assert saved.items[copy_row].label == (predicted + 1) % 4
    assert (
        review.table_model.index(other, COLUMNS.index("Label")).data()
        == f"✓ {CLASS_NAMES[session.items[other].predicted]}"
    )

    exported = window.export_labelled(isolated_home / "corrected")
    assert sum(1 for _ in exported.rglob("*.jpg")) == 2
    # The wizard can start from the corrected images.
    wizard = window.open_wizard()
    wizard.folder_page.corrections_button.click()
    corrected = Path(wizard.folder_page.folder_edit.text())
    assert corrected.parent == isolated_home / "corrections"
    assert sorted(p.name for p in corrected.rglob("*.jpg")) == sorted(
        session.items[i].path.name for i in (copy_row, other)
    )
    assert set(wizard.folder_page.combos) == {p.name for p in corrected.iterdir() if p.is_dir()}
    wizard.reject()
    csv_path = window.export_results(isolated_home / "review.csv")
    assert csv_path.read_text(encoding="utf-8").startswith("# For research and laboratory review; not a diagnosis.")
    close_window(qtbot, window)


def test_review_filters_and_a_classical_model(qtbot, store, image_folder: Path) -> None:
    window = open_window(qtbot, store, "test-svm")
    review = window.review
    _open(qtbot, window, image_folder)
    session = review.session
    with qtbot.waitSignal(review.details_shown, timeout=30000):
        review.select_row(1)
    assert review.attention_panel.message.text() == NOT_SE_TEXT.format(title=window.models.current.title)
    assert not review.image_panel.heat_box.isEnabled()

    for class_index in range(4):
        review.class_filter.setCurrentIndex(class_index + 1)
        expected = sum(item.predicted == class_index for item in session.items)
        assert review.proxy.rowCount() == expected
    review.class_filter.setCurrentIndex(0)
    review.review_filter.setCurrentIndex(1)
    assert review.proxy.rowCount() == sum(item.needs_review for item in session.items)
    review.review_filter.setCurrentIndex(0)
    review.duplicates_filter.setChecked(True)
    assert review.proxy.rowCount() == sum(item.duplicate_group is not None for item in session.items) >= 2
    review.duplicates_filter.setChecked(False)
    grouped_row = next(i for i, item in enumerate(session.items) if item.duplicate_group is not None)
    review.select_row(grouped_row)
    review.group_button.setChecked(True)
    group = session.items[grouped_row].duplicate_group
    assert review.proxy.rowCount() == sum(item.duplicate_group == group for item in session.items) >= 2
    review.group_button.setChecked(False)
    assert review.proxy.rowCount() == len(session)

    # Rows start in the folder's natural (capture) order; sorting by confidence orders them by the session's numbers.
    unsorted = [review.proxy.mapToSource(review.proxy.index(r, 0)).row() for r in range(review.proxy.rowCount())]
    assert unsorted == list(range(len(session)))
    review.table.sortByColumn(2, Qt.SortOrder.AscendingOrder)
    shown = [review.proxy.mapToSource(review.proxy.index(r, 0)).row() for r in range(review.proxy.rowCount())]
    confidences = [session.items[r].confidence for r in shown]
    assert confidences == sorted(confidences)
    close_window(qtbot, window)


def test_review_warns_when_the_images_are_unlike_the_training_images(
    qtbot, store, image_folder: Path, tmp_path: Path, data_dir: Path
) -> None:
    """Real images with a 10% brightness change in the colour channels (another lamp or white balance): the tab
    says the whole set is unreliable; for the same images unchanged it says nothing."""
    from PIL import Image

    relit = tmp_path / "relit"
    relit.mkdir()
    for path in image_folder.iterdir():
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) * np.array([0.9, 1.05, 1.1])
        Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)).save(relit / path.name, quality=95)
    window = open_window(qtbot, store, "test-secnn")
    review = window.review
    _open(qtbot, window, image_folder)
    assert not review.drift_label.isVisibleTo(review)
    _open(qtbot, window, relit)
    assert sum(item.predicted is not None for item in review.session.items) >= 20  # the warning's minimum
    assert review.drift_label.isVisibleTo(review), [i.review_reasons for i in review.session.items]
    assert "unreliable" in review.drift_label.text()
    close_window(qtbot, window)


def test_flagged_rows_say_why_and_are_not_shown_as_confident(qtbot, store, image_folder: Path) -> None:
    """The Reason column names why a person must look; a flagged call is grey and italic, an unflagged one in its
    class colour; the heat map, which recolours the stain, is off until asked for and then has a legend."""
    from PySide6.QtCore import Qt

    window = open_window(qtbot, store, "test-secnn")
    review = window.review
    _open(qtbot, window, image_folder)
    model = review.table_model
    reason, predicted = COLUMNS.index("Reason"), COLUMNS.index("Predicted")
    items = review.session.items
    flagged = [row for row, item in enumerate(items) if item.needs_review and item.predicted is not None]
    confident = [row for row, item in enumerate(items) if not item.needs_review and item.predicted is not None]
    assert flagged and confident, "the test images must give both kinds of call"
    for row in flagged:
        text = model.data(model.index(row, reason))
        assert text.startswith("⚑ ") and len(text) > 2 and text != "⚑ review"
        assert model.data(model.index(row, predicted), Qt.ItemDataRole.ForegroundRole).color().name() == "#777777"
        assert model.data(model.index(row, predicted), Qt.ItemDataRole.FontRole).italic()
    for row in confident:
        assert model.data(model.index(row, reason)) == ""
        assert model.data(model.index(row, predicted), Qt.ItemDataRole.ForegroundRole).color().name() != "#777777"
    panel = review.image_panel
    assert not panel.heat_box.isChecked() and panel.legend.isHidden()
    panel.heat_box.setChecked(True)
    assert not panel.legend.isHidden()
    close_window(qtbot, window)
