"""The bad-input corpus through the GUI batch tab: one error row per bad file, one prediction per good file, the
run completes, the export holds every row, and the window stays usable for the next batch."""

from __future__ import annotations

from pathlib import Path

from allgui.core import classify
from allgui.core.classes import CLASS_NAMES
from tests.badcorpus import make_corpus

from .helpers import close_window, open_window


def test_batch_tab_on_the_bad_input_corpus(qtbot, store, image_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    entries = make_corpus(folder)
    window = open_window(qtbot, store, "test-svm")
    batch = window.batch
    window.tabs.setCurrentWidget(batch)
    with qtbot.waitSignal(batch.finished, timeout=180000) as blocker:
        assert batch.start(folder)
    assert not batch.cancelled
    rows = batch.table_model.rows
    assert blocker.args == [len(rows)] == [len(entries)]
    paths = [r.path for r in rows]
    assert len(paths) == len(set(paths)), "a file has two rows"
    by_path = {r.path: r for r in rows}
    for entry in entries:
        row = by_path[str(entry.path)]
        if entry.good:
            assert not row.error and row.predicted in CLASS_NAMES, (entry.kind, row.error)
        else:
            assert not row.predicted and row.probabilities is None, entry.kind
            assert any(word in row.error.lower() for word in entry.reason_words), (entry.kind, row.error)
    assert sum(batch.summary.values) == sum(e.good for e in entries)

    exported = window.export_results(tmp_path / "out.csv")
    exported_text = exported.read_bytes().decode("utf-8", errors="surrogateescape")
    assert sorted(r["path"] for r in classify.parse_rows(exported_text)) == sorted(paths)

    # Still usable: a normal batch afterwards runs to the end.
    with qtbot.waitSignal(batch.finished, timeout=120000) as again:
        assert batch.start(image_folder)
    assert again.args == [21] and not batch.cancelled
    close_window(qtbot, window)
