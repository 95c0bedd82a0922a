"""The batch tab's first-hour edges: an empty folder field, a bar that equals done/total, a cancel count that agrees
with what the journal kept and the resume takes over."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from allgui.core import classify
from allgui.core.dataset import LabelledDataset
from allgui.ui.batch_tab import journal_for

from .conftest import spread
from .helpers import close_window, open_window


@pytest.fixture
def hundred(data_dir: Path, tmp_path: Path) -> Path:
    """100 real images (a little over three batches of 32), copied outside the project."""
    folder = tmp_path / "hundred"
    folder.mkdir()
    for path in spread(LabelledDataset.from_folder(data_dir), 25, offset=7).paths:
        shutil.copy(path, folder / path.name)
    return folder


def _journalled(journal: Path) -> int:
    lines = journal.read_bytes().split(b"\n")[1:-1]
    return len({classify.path_key(json.loads(raw)["path"]) for raw in lines})


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_folder_field_runs_nothing(qtbot, store, text: str, monkeypatch, tmp_path: Path) -> None:
    """``Path("")`` is ``"."``: an empty field once classified the working directory (1001 icons of a venv)."""
    (tmp_path / "icon.png").write_bytes(b"\x89PNG not really")
    monkeypatch.chdir(tmp_path)  # the directory an empty field used to classify
    window = open_window(qtbot, store, "test-svm")
    batch = window.batch
    errors: list[str] = []
    batch.error.connect(errors.append)
    batch.folder_edit.setText(text)
    assert not batch.start()
    assert errors and errors[-1].startswith("Choose a folder first")
    assert not window.runner.is_running("batch")
    assert batch.run_button.isEnabled() and batch.table_model.rows == []
    close_window(qtbot, window)


def test_bar_equals_done_of_total_and_cancel_counts_the_kept_rows(qtbot, store, hundred: Path) -> None:
    window = open_window(qtbot, store, "test-svm")
    batch = window.batch
    classifier = window.models.current.classifier
    predict = classifier.predict
    calls: list[int] = []
    third_started, release = threading.Event(), threading.Event()

    def paced(images):
        calls.append(len(images))
        if len(calls) == 1:
            time.sleep(0.6)  # the bar shows 32 images...
        elif len(calls) == 2:
            time.sleep(0.1)  # ...and 64 arrive before its half-second repaint interval is over
        elif len(calls) == 3:
            third_started.set()
            release.wait(30)  # a batch still in hand when Cancel is pressed
        return predict(images)

    classifier.predict = paced
    journal = journal_for(hundred, window.models.current)
    messages: list[str] = []
    batch.message.connect(messages.append)
    try:
        assert batch.start(hundred)
        qtbot.waitUntil(third_started.is_set, timeout=60000)
        qtbot.waitUntil(lambda: batch.rate_label.text().startswith("64/100"), timeout=10000)
        # The last value of a burst is shown once the interval is over, not dropped (it read 3% at 288 of 2767).
        qtbot.waitUntil(lambda: batch.progress.value() == 64, timeout=5000)
        with qtbot.waitSignal(batch.finished, timeout=30000) as blocker:
            batch.cancel()
            assert batch.rate_label.text().startswith("cancelling")
            assert not batch.run_button.isEnabled()  # the journal is still being written
            release.set()
    finally:
        release.set()
    kept = blocker.args[0]
    assert kept == _journalled(journal) == len(batch.table_model.rows)
    assert kept == 96  # the batch in hand when Cancel was pressed was finished and kept: it counts
    assert batch.rate_label.text() == f"cancelled after {kept} of 100 images"
    assert any(f"Batch cancelled after {kept} of 100 images" in m for m in messages)
    qtbot.waitUntil(lambda: batch.progress.value() == kept, timeout=5000)  # kept of 100 images, in percent
    assert window.runner.wait(30000)
    del classifier.__dict__["predict"]

    # The resume takes over exactly the rows the cancel message counted.
    with qtbot.waitSignal(batch.finished, timeout=60000) as again:
        assert batch.start(hundred)
    assert again.args == [100]
    assert any(f"Resumed {kept} finished rows" in m for m in messages)
    assert batch.progress.value() == 100
    close_window(qtbot, window)
