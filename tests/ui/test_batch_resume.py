"""Crash-safe GUI batches: the batch tab journals every batch, and a rerun of the same folder with the same model
after a kill -9 or a cancel resumes it: every image exactly once, finished images not classified again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from allgui.core import classify
from allgui.core.dataset import LabelledDataset
from allgui.ui.batch_tab import journal_for

from .conftest import spread
from .helpers import close_window, open_window

# The GUI in another process: the shown main window runs a batch, slowed per model call so the test can kill it
# between two journalled batches; it runs until killed.
DRIVER = """
import sys, time
from pathlib import Path
from PySide6.QtWidgets import QApplication
from allgui.core.models.store import ModelStore
from allgui.ui.main_window import MainWindow

home, shipped, folder = sys.argv[1:4]
app = QApplication([])
store = ModelStore(Path(home), Path(shipped))
store.activate("test-svm")
window = MainWindow(store=store)
window.show()
while window.models.current is None:
    app.processEvents()
    time.sleep(0.01)
classifier = window.models.current.classifier
predict = classifier.predict
def slow(images):
    time.sleep(0.4)
    return predict(images)
classifier.predict = slow
assert window.batch.start(Path(folder))
print("started", flush=True)
app.exec()
"""


@pytest.fixture
def batch_folder(data_dir: Path, tmp_path: Path) -> Path:
    """100 real images (more than three batches of 32) in two subfolders, and one text file named .png."""
    folder = tmp_path / "resume-batch"
    picked = spread(LabelledDataset.from_folder(data_dir), 25, offset=11)
    for number, path in enumerate(picked.paths):
        target = folder / f"day{number % 2}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    (folder / "day1" / "notes.png").write_text("not an image", encoding="utf-8")
    return folder


def _journalled(journal: Path) -> dict[str, dict]:
    """The finished rows in a journal (complete lines only), by file."""
    lines = journal.read_bytes().split(b"\n")[1:-1]
    rows: dict[str, dict] = {}
    for raw in lines:
        record = json.loads(raw)
        rows.setdefault(classify.path_key(record["path"]), record)
    return rows


def _count_predicted(window, delay: float = 0.0) -> list[int]:
    """Images the model is asked to classify (batches are counted in the worker thread)."""
    classifier = window.models.current.classifier
    predict = classifier.predict
    counted: list[int] = []
    lock = threading.Lock()

    def counting(images):
        with lock:
            counted.append(len(images))
        if delay:
            time.sleep(delay)
        return predict(images)

    classifier.predict = counting
    return counted


def _rerun_resumes(qtbot, window, folder: Path, journal: Path, finished: dict[str, dict]) -> None:
    """Run ``folder`` again: it resumes ``finished``, classifies only the rest, and removes the journal at the end."""
    batch = window.batch
    counted = _count_predicted(window)
    messages: list[str] = []
    batch.message.connect(messages.append)
    files = sorted(classify.path_key(p) for p in folder.rglob("*") if p.is_file())
    with qtbot.waitSignal(batch.finished, timeout=60000) as blocker:
        assert batch.start(folder)
    assert blocker.args == [len(files)]
    rows = batch.table_model.rows
    keys = [classify.path_key(r.path) for r in rows]
    assert sorted(keys) == files  # every file exactly once
    good = {k for k, r in zip(keys, rows, strict=True) if not r.error}
    assert sum(counted) == len(good - set(finished))  # finished images were not classified again
    by_key = dict(zip(keys, rows, strict=True))
    for key, old in finished.items():  # the kept rows are the finished ones, unchanged
        kept = by_key[key]  # a row as the table has it; ``old``, the journal's line
        assert (list(kept.probabilities) if kept.probabilities else None) == old.get("probabilities")
        assert kept.error == old["error"]
    assert any(f"Resumed {len(finished)} finished rows from an interrupted batch" in m for m in messages)
    assert any(f"({len(finished)} resumed" in m for m in messages)
    assert not journal.exists()  # finished normally: the next run starts afresh


def test_rerun_after_kill_9_resumes_the_batch(qtbot, store, ui_models: Path, isolated_home: Path, batch_folder):
    journal = journal_for(batch_folder, store.load("test-svm"))
    assert not journal.exists()
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    args = [sys.executable, "-c", DRIVER, str(isolated_home), str(ui_models), str(batch_folder)]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        # Kill as soon as one batch is journalled (the next is at least 0.4 s away).
        while not (journal.exists() and len(journal.read_bytes().split(b"\n")) > 2):
            assert process.poll() is None, process.communicate()[1].decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the batch in the other process journalled nothing"
            time.sleep(0.02)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    finished = _journalled(journal)
    total = sum(1 for p in batch_folder.rglob("*") if p.is_file())
    assert 0 < len(finished) < total

    window = open_window(qtbot, store, "test-svm")
    _rerun_resumes(qtbot, window, batch_folder, journal, finished)
    close_window(qtbot, window)


def test_cancelled_batch_is_resumed_and_a_finished_one_is_not(qtbot, store, batch_folder: Path) -> None:
    window = open_window(qtbot, store, "test-svm")
    batch = window.batch
    journal = journal_for(batch_folder, window.models.current)
    _count_predicted(window, delay=0.3)
    assert batch.start(batch_folder)
    qtbot.waitUntil(lambda: journal.exists() and len(_journalled(journal)) >= 32, timeout=60000)
    with qtbot.waitSignal(batch.finished, timeout=30000):
        window.cancel_button.click()
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30000)
    assert window.runner.wait(30000)
    finished = _journalled(journal)  # cancel keeps the journal: at least what the table showed
    total = sum(1 for p in batch_folder.rglob("*") if p.is_file())
    assert len(batch.table_model.rows) <= len(finished) < total
    window.models.current.classifier.__dict__.pop("predict")  # the model's own predict again

    _rerun_resumes(qtbot, window, batch_folder, journal, finished)

    # Completed: a third run classifies everything afresh and says nothing about resuming.
    counted = _count_predicted(window)
    messages: list[str] = []
    batch.message.connect(messages.append)
    with qtbot.waitSignal(batch.finished, timeout=60000) as blocker:
        assert batch.start(batch_folder)
    assert blocker.args == [total]
    assert sum(counted) == total - 1  # all but the text file
    assert not any("Resumed" in m or "resumed" in m for m in messages)
    close_window(qtbot, window)


@pytest.mark.filterwarnings("ignore:CUDA failed:UserWarning")  # expected here; shown in the window instead
def test_a_failing_gpu_does_not_fail_the_batch(qtbot, store, image_folder: Path, monkeypatch) -> None:
    """The SE-CNN on torch "on CUDA" fails its first forward: the batch completes on the CPU and the window says so."""
    from ..test_secnn_device import CUDA_ERRORS, _pretend_cuda

    window = open_window(qtbot, store, "test-secnn")
    classifier = window.models.current.classifier
    classifier.set_engine("torch")  # what runs a network on a GPU
    _pretend_cuda(classifier, monkeypatch, CUDA_ERRORS[1])
    window.device_label.setText("")
    with qtbot.waitSignal(window.batch.finished, timeout=60000) as blocker:
        assert window.batch.start(image_folder)
    assert blocker.args == [21]
    assert not any(r.error for r in window.batch.table_model.rows)
    assert classifier.engine.device.type == "cpu"
    assert "CUDA failed (OutOfMemoryError" in window.device_label.text()
    assert "continuing on the CPU" in window.device_label.text()
    close_window(qtbot, window)
