"""The batch tab: a recursive folder run with live rows, error rows for bad files, summary, export, cancel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PySide6.QtCore import Qt

from allgui.core import classify
from allgui.core.classes import CLASS_NAMES

from .helpers import close_window, open_window


def test_batch_fills_the_table_and_exports(qtbot, store, image_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    shutil.copytree(image_folder, folder / "day1")
    (folder / "day2").mkdir()
    (folder / "day2" / "truncated.jpg").write_bytes(
        (image_folder / next(image_folder.iterdir()).name).read_bytes()[:900]
    )
    (folder / "day2" / "notes.png").write_text("not an image", encoding="utf-8")
    window = open_window(qtbot, store, "test-svm")
    batch = window.batch
    window.tabs.setCurrentWidget(batch)
    partial_updates: list[int] = []
    batch.table_model.rowsInserted.connect(lambda *_: partial_updates.append(len(batch.table_model.rows)))
    with qtbot.waitSignal(batch.finished, timeout=120000) as blocker:
        assert batch.start(folder)
    assert blocker.args == [23]
    assert partial_updates and partial_updates[-1] == 23
    rows = batch.table_model.rows
    errors = {Path(r.path).name: r.error for r in rows if r.error}
    assert set(errors) == {"truncated.jpg", "notes.png"}
    assert all(errors.values())
    assert sum(batch.summary.values) == 21
    model = batch.table_model
    header = [model.headerData(i, Qt.Orientation.Horizontal) for i in range(model.columnCount())]
    assert header[:4] == ["Image", "Predicted", "Confidence", "Reason"] and "P(Benign)" in header
    first_good = next(i for i, r in enumerate(rows) if not r.error)
    assert model.index(first_good, 0).data() == str(Path(rows[first_good].path).relative_to(folder))
    assert model.index(first_good, 1).data() == rows[first_good].predicted
    assert model.index(first_good, 2).data() == f"{rows[first_good].confidence:.3f}"
    benign = header.index("P(Benign)")
    assert model.index(first_good, benign).data() == f"{rows[first_good].probabilities[0]:.3f}"
    predicted = [r.predicted for r in rows if not r.error]
    assert list(batch.summary.values) == [predicted.count(name) for name in CLASS_NAMES]
    groups = {r.duplicate_group for r in rows if r.duplicate_group is not None}
    assert len(groups) >= 1  # the copy and its original

    csv_path = window.export_results(tmp_path / "out.csv")
    exported_text = csv_path.read_text(encoding="utf-8")
    assert exported_text.startswith("# For research and laboratory review; not a diagnosis.\n")
    exported = classify.parse_rows(exported_text)
    assert list(exported[0]) == list(classify.COLUMNS)
    assert len(exported) == 23
    document = json.loads(window.export_results(tmp_path / "out.json").read_text(encoding="utf-8"))
    assert "not a diagnosis" in document["disclaimer"] and len(document["rows"]) == 23
    close_window(qtbot, window)


def test_cancel_a_running_batch_and_run_again(qtbot, store, data_dir: Path, image_folder: Path) -> None:
    window = open_window(qtbot, store, "test-svm")
    batch = window.batch
    assert batch.start(data_dir)
    qtbot.waitUntil(lambda: len(batch.table_model.rows) >= 32, timeout=120000)
    with qtbot.waitSignal(batch.finished, timeout=30000) as blocker:
        window.cancel_button.click()
    assert batch.cancelled
    assert 32 <= blocker.args[0] < 2767
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30000)
    assert window.runner.wait(30000)
    kept = len(batch.table_model.rows)
    assert kept == blocker.args[0]  # nothing arrives after the cancel

    # The window stays usable: a new batch runs to the end.
    with qtbot.waitSignal(batch.finished, timeout=120000) as again:
        assert batch.start(image_folder)
    assert again.args == [21] and not batch.cancelled
    close_window(qtbot, window)


def test_summary_warns_when_the_batch_is_unlike_the_training_images(qtbot, store) -> None:
    """Rows as classify_paths makes them: the warning shows once a quarter of the classified images are unlike the
    training images (another stain or lamp setting), and goes when a batch is not."""
    from allgui.core.result import ResultRow, ReviewCode, ReviewReason

    def rows(unlike: int, total: int) -> list[ResultRow]:
        return [
            ResultRow(
                path=f"/x/{i}.jpg",
                model_id="secnn-default",
                predicted=CLASS_NAMES[0],
                probabilities=(1.0, 0.0, 0.0, 0.0),
                confidence=1.0,
                needs_review=i < unlike,
                reasons=(ReviewReason.of(ReviewCode.UNLIKE_TRAINING),) if i < unlike else (),
                image_sha256="0" * 64,
            )
            for i in range(total)
        ]

    window = open_window(qtbot, store, "test-svm")
    batch = window.batch
    for unlike, shown in ((30, True), (3, False), (10, True), (9, False)):
        batch.table_model.set_rows(rows(unlike, 40))
        batch._update_summary()
        assert batch.drift_label.isVisibleTo(batch) is shown, unlike
    batch.table_model.set_rows(rows(30, 40))
    batch._update_summary()
    assert "30 of 40 images (75%)" in batch.drift_label.text() and "unreliable" in batch.drift_label.text()
    close_window(qtbot, window)
