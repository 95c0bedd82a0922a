"""Cancelling long core operations from another thread (as the GUI does) stops them promptly and leaves files
consistent; a failing CUDA device gives way to the CPU with a visible notice.

"Promptly" is asserted as work done after the cancel (images read, batches trained), never as wall-clock time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from allgui.core import hashing
from allgui.core.classify import JournalMismatchError, classify_paths, parse_rows
from allgui.core.dataset import load_labelled
from allgui.core.hashing import hash_images
from allgui.core.models import classical, features, torch_device
from allgui.core.models.classical import RFClassifier, SVMClassifier
from allgui.core.models.secnn import SECNNClassifier
from allgui.core.models.secnn import trainer as secnn_trainer
from allgui.core.models.store import ModelStore, load_model, save_model
from allgui.core.models.torch_device import DeviceWarning, choose_device
from allgui.core.progress import Cancelled, CancelToken
from tests.imagefactory import smear_like

TINY_SECNN = dict(image_size=24, width=8, blocks=2, convs_per_block=1, batch_size=8, threads=1, device="cpu")


def write_images(folder: Path, per_class: int, size: int = 32) -> tuple[list[Path], np.ndarray]:
    """Small PNGs in Benign/Early/Pre/Pro, told apart by a channel shift."""
    paths, labels = [], []
    for label, name in enumerate(["Benign", "Early", "Pre", "Pro"]):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            array = np.asarray(smear_like(1000 * label + index, size)).astype(int)
            array[..., label % 3] += 30 * (1 + label // 3)
            path = folder / name / f"img-{index:04d}.png"
            Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(path)
            paths.append(path)
            labels.append(label)
    return paths, np.array(labels)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], np.ndarray]:
    root = tmp_path_factory.mktemp("cancel-data")
    paths, labels = write_images(root, 80)
    return root, paths, labels


class CancelAfter:
    """A progress callback that lets ``trigger(done, message)`` decide when another thread cancels, and counts the
    progress reports that still arrive afterwards (the work done after the cancel)."""

    def __init__(self, trigger: Callable[[int, str], bool]) -> None:
        self.token = CancelToken()
        self.trigger = trigger
        self.reached = threading.Event()
        self.reports: list[tuple[int, int, str]] = []
        self.after_cancel: list[tuple[int, int, str]] = []

    def __call__(self, done: int, total: int, message: str) -> None:
        (self.after_cancel if self.token.cancelled else self.reports).append((done, total, message))
        if not self.reached.is_set() and self.trigger(done, message):
            self.reached.set()
            self.reached_wait.wait(10)  # hold the worker until the other thread has cancelled

    def count_after_cancel(self, monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[object]:
        """Wrap ``owner.name`` so that every call made after the cancel is recorded (its first argument)."""
        calls: list[object] = []
        real = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.token.cancelled:
                calls.append(args[0] if args else None)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
        return calls

    def run_in_thread(self, work: Callable[[CancelAfter], Any]) -> BaseException | None:
        """Run ``work(self)`` in a worker thread, cancel from this thread once triggered, return what it raised."""
        self.reached_wait = threading.Event()
        outcome: list[BaseException | None] = [None]

        def target() -> None:
            try:
                work(self)
            except BaseException as error:  # noqa: BLE001 - handed back to the test
                outcome[0] = error

        worker = threading.Thread(target=target, name="cancel-test-worker")
        worker.start()
        assert self.reached.wait(120), "the operation never reached the point where the test cancels"
        self.token.cancel()
        self.reached_wait.set()
        worker.join(120)
        assert not worker.is_alive(), "the operation did not stop after cancel"
        return outcome[0]


def test_cancel_hashing(images: tuple[Path, list[Path], np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    _, paths, _ = images
    control = CancelAfter(lambda done, message: done >= 64)
    hashed_after = control.count_after_cancel(monkeypatch, hashing, "hash_file")
    error = control.run_in_thread(lambda c: hash_images(paths, progress=c, cancel=c.token, workers=2))
    assert isinstance(error, Cancelled)
    # Hashing checks the token between chunks of 64 images: at most one chunk is hashed after the cancel.
    assert len(hashed_after) <= 64
    assert control.after_cancel == []


def test_cancel_data_loading(images: tuple[Path, list[Path], np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    root, paths, _ = images
    control = CancelAfter(lambda done, message: done >= 64)
    hashed_after = control.count_after_cancel(monkeypatch, hashing, "hash_file")
    error = control.run_in_thread(lambda c: load_labelled(root, progress=c, cancel=c.token))
    assert isinstance(error, Cancelled)
    assert len(hashed_after) <= 64
    assert max(done for done, _, _ in control.reports) < len(paths)


def test_already_cancelled_token_reads_nothing(images: tuple[Path, list[Path], np.ndarray]) -> None:
    root, paths, _ = images
    token = CancelToken()
    token.cancel()
    reports: list[int] = []
    with pytest.raises(Cancelled):
        load_labelled(root, progress=lambda done, total, message: reports.append(done), cancel=token)
    assert reports == []


def test_cancel_classical_training_while_reading(
    images: tuple[Path, list[Path], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, paths, labels = images
    model = SVMClassifier(image_size=16, pca_components=8, C=[1.0], cv_folds=2)
    control = CancelAfter(lambda done, message: message == "reading images" and done >= 32)
    read_after = control.count_after_cancel(monkeypatch, features, "read_rgb")
    fitted_after = control.count_after_cancel(monkeypatch, SVMClassifier, "fit_arrays")
    error = control.run_in_thread(lambda c: model.fit(paths, labels, progress=c, cancel=c.token))
    assert isinstance(error, Cancelled)
    # Images are read 16 at a time between checks, and nothing is fitted afterwards.
    assert len(read_after) <= 16
    assert fitted_after == [] and model.pipeline is None


def test_cancel_svm_grid_search_stops_after_one_fold(
    images: tuple[Path, list[Path], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, paths, labels = images
    fits: list[int] = []
    real_fit = classical.Pipeline.fit

    def counting_fit(self, *args, **kwargs):
        fits.append(1)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(classical.Pipeline, "fit", counting_fit)
    options = {"image_size": 16, "pca_components": 8, "C": [0.1, 1.0, 10.0], "cv_folds": 3}
    SVMClassifier(**options).fit(paths, labels)
    uncancelled = len(fits)
    assert uncancelled == 3 * 3 + 1  # every grid point on every fold, and the refit

    fits.clear()
    token = CancelToken()
    model = SVMClassifier(**options)
    # Cancel once the images are read, as a user pressing Cancel while the grid search starts.
    with pytest.raises(Cancelled):
        model.fit(
            paths,
            labels,
            progress=lambda done, total, message: message.startswith("fitting") and token.cancel(),
            cancel=token,
        )
    assert len(fits) == 1 and model.pipeline is None


def test_cancel_random_forest_stops_between_chunks_of_trees(
    images: tuple[Path, list[Path], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, paths, labels = images
    token = CancelToken()
    grown: list[int] = []
    real_fit = classical.RandomForestClassifier.fit

    def fit_then_cancel(self, *args, **kwargs):
        result = real_fit(self, *args, **kwargs)
        grown.append(len(self.estimators_))
        token.cancel()  # the user presses Cancel while the first chunk of trees grows
        return result

    monkeypatch.setattr(classical.RandomForestClassifier, "fit", fit_then_cancel)
    model = RFClassifier(image_size=16, pca_components=8, n_estimators=100)
    with pytest.raises(Cancelled):
        model.fit(paths, labels, cancel=token)
    assert grown == [20] and model.pipeline is None


def test_cancel_secnn_training_stops_within_a_batch_and_keeps_the_active_model(
    images: tuple[Path, list[Path], np.ndarray], tmp_path: Path
) -> None:
    _, paths, labels = images
    store = ModelStore(tmp_path / "home", tmp_path / "no-shipped")
    previous = SVMClassifier(image_size=16, pca_components=8, C=[1.0], cv_folds=2)
    previous.fit(paths[::4], labels[::4])
    store.save(previous, "previous")
    store.activate("previous")
    before = sorted(p.name for p in store.user_dir.iterdir())

    model = SECNNClassifier(**TINY_SECNN, epochs=50)
    control = CancelAfter(lambda done, message: "epoch 2" in message or "epoch 3" in message)

    def train(c: CancelAfter) -> None:
        model.fit(paths, labels, progress=c, cancel=c.token)
        store.save(model, "should-not-exist")  # only reached if training ignored the cancel

    error = control.run_in_thread(train)
    assert isinstance(error, Cancelled)
    # The token is checked before every batch: no batch is trained after the cancel.
    assert control.after_cancel == []
    epochs_run = len(model.fit_summary.get("history", []))
    assert 0 < epochs_run < 50
    assert sorted(p.name for p in store.user_dir.iterdir()) == before  # nothing half-saved, no temp folders
    assert store.active_id() == "previous"
    assert load_model(store.find("previous").folder).classifier.predict_proba([smear_like(1)]).shape == (1, 4)


def test_cancel_classification_keeps_finished_rows_for_resume(
    images: tuple[Path, list[Path], np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, paths, labels = images
    model = SVMClassifier(image_size=16, pca_components=8, C=[1.0], cv_folds=2)
    model.fit(paths[::4], labels[::4])
    save_model(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    reference = classify_paths(paths, loaded, batch_size=8)

    journal = tmp_path / "results.csv.journal.jsonl"
    control = CancelAfter(lambda done, message: done >= 40)
    predicted_after = control.count_after_cancel(monkeypatch, loaded.classifier, "predict")
    error = control.run_in_thread(
        lambda c: classify_paths(paths, loaded, batch_size=8, journal=journal, progress=c, cancel=c.token)
    )
    assert isinstance(error, Cancelled)
    assert predicted_after == []  # no batch is classified after the cancel
    journalled = [json.loads(line)["path"] for line in journal.read_text().splitlines()[1:]]
    assert journalled == [str(p) for p in paths[:40]]  # exactly the finished rows, each once

    predicted: list[int] = []
    real_predict = loaded.classifier.predict
    monkeypatch.setattr(loaded.classifier, "predict", lambda batch: predicted.append(len(batch)) or real_predict(batch))
    resumed = classify_paths(paths, loaded, batch_size=8, journal=journal, resume=True)
    assert sum(predicted) == len(paths) - 40  # finished images are not classified again
    assert [r.path for r in resumed] == [r.path for r in reference]
    for row, expected in zip(resumed, reference, strict=True):
        assert row.predicted == expected.predicted
        np.testing.assert_allclose(row.probabilities, expected.probabilities, atol=1e-12)


@pytest.mark.parametrize("damage", ["cut_line", "nul_tail", "garbage_line", "cut_header", "empty"])
def test_resume_after_a_damaged_journal(
    images: tuple[Path, list[Path], np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """What a kill or a power cut can leave at the end of the journal: resuming still gives every row once."""
    _, paths, labels = images
    paths = paths[::4]
    model = SVMClassifier(image_size=16, pca_components=8, C=[1.0], cv_folds=2)
    model.fit(paths, labels[::4])
    save_model(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    reference = classify_paths(paths, loaded, batch_size=8)
    journal = tmp_path / "results.csv.journal.jsonl"
    classify_paths(paths[:40], loaded, batch_size=8, journal=journal)  # 40 finished rows
    lines = journal.read_bytes().split(b"\n")
    if damage == "cut_line":
        journal.write_bytes(journal.read_bytes() + lines[5][: len(lines[5]) // 2])
    elif damage == "nul_tail":  # delayed allocation after a power cut: the file ends in zero bytes
        journal.write_bytes(journal.read_bytes() + b"\0" * 4096)
    elif damage == "garbage_line":  # rows after a damaged line are done again, never trusted
        journal.write_bytes(b"\n".join(lines[:21] + [b"\x00\x17 not json"] + lines[22:]))
    elif damage == "cut_header":
        journal.write_bytes(lines[0][:20])
    else:
        journal.write_bytes(b"")
    kept = {"cut_line": 40, "nul_tail": 40, "garbage_line": 20, "cut_header": 0, "empty": 0}[damage]

    predicted: list[int] = []
    real_predict = loaded.classifier.predict
    monkeypatch.setattr(loaded.classifier, "predict", lambda batch: predicted.append(len(batch)) or real_predict(batch))
    resumed = classify_paths(paths, loaded, batch_size=8, journal=journal, resume=True)
    assert sum(predicted) == len(paths) - kept
    assert [r.path for r in resumed] == [r.path for r in reference]
    for row, expected in zip(resumed, reference, strict=True):
        np.testing.assert_allclose(row.probabilities, expected.probabilities, atol=1e-12)
    # The repaired journal is valid JSON lines again: a second resume redoes nothing.
    predicted.clear()
    classify_paths(paths, loaded, batch_size=8, journal=journal, resume=True)
    assert predicted == []


def test_resume_refuses_another_models_journal_and_leaves_it_alone(
    images: tuple[Path, list[Path], np.ndarray], tmp_path: Path
) -> None:
    _, paths, labels = images
    paths = paths[::8]
    first = SVMClassifier(image_size=16, pca_components=8, C=[1.0], cv_folds=2)
    first.fit(paths, labels[::8])
    second = SVMClassifier(image_size=16, pca_components=8, C=[10.0], cv_folds=2)
    second.fit(paths, labels[::8])
    save_model(first, tmp_path / "first")
    save_model(second, tmp_path / "second")
    journal = tmp_path / "results.csv.journal.jsonl"
    classify_paths(paths, load_model(tmp_path / "first"), journal=journal)
    before = journal.read_bytes()
    with pytest.raises(JournalMismatchError, match="without --resume"):
        classify_paths(paths, load_model(tmp_path / "second"), journal=journal, resume=True)
    assert journal.read_bytes() == before
    # A journal of the previous version (duplicate hashes of the full image) is not mixed into this one's rows.
    header, rest = before.split(b"\n", 1)
    journal.write_bytes(header.replace(b'"version": 2', b'"version": 1') + b"\n" + rest)
    with pytest.raises(JournalMismatchError, match="journal version 1"):
        classify_paths(paths, load_model(tmp_path / "first"), journal=journal, resume=True)


def test_ctrl_c_in_classify_keeps_the_previous_export_and_resumes(
    images: tuple[Path, list[Path], np.ndarray], tmp_path: Path
) -> None:
    """SIGINT (Ctrl-C) mid-batch: exit 130, the old export untouched, the journal keeps the finished rows."""
    root, paths, labels = images
    model = SVMClassifier(image_size=16, pca_components=8, C=[1.0], cv_folds=2)
    model.fit(paths[::4], labels[::4])
    save_model(model, tmp_path / "model")
    out = tmp_path / "results.csv"
    out.write_text("previous export\n")
    journal = out.with_name(out.name + ".journal.jsonl")
    command = [sys.executable, "-m", "allgui", "classify", str(root), "--model", str(tmp_path / "model")]
    command += ["--out", str(out), "--batch-size", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        while process.poll() is None and not (journal.exists() and journal.read_text().count("\n") >= 3):
            time.sleep(0.01)
        assert process.poll() is None, "classify finished before it could be interrupted"
        process.send_signal(signal.SIGINT)
        stderr = process.communicate(timeout=120)[1].decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "--resume" in stderr
    assert out.read_text() == "previous export\n"
    finished = len(journal.read_text().splitlines()) - 1
    assert 2 <= finished < len(paths)

    # Larger batches for the rest: each batch is synced to disk, and the batch size may change between runs.
    command[-1] = "64"
    resumed = subprocess.run([*command, "--resume"], capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert f"{finished} already done" in resumed.stderr.decode()
    rows = parse_rows(out.read_text(encoding="utf-8"))
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in paths)
    assert not journal.exists()


@pytest.mark.parametrize("kind", ["svm", "rf", "color-baseline", "secnn"])
def test_a_model_cancelled_before_its_first_checkpoint_is_never_saved(
    images: tuple[Path, list[Path], np.ndarray], tmp_path: Path, kind: str
) -> None:
    """`allgui train` saves what a cancelled fit kept and relies on saving to fail when nothing was kept."""
    from allgui.core.models.registry import create

    _, paths, labels = images
    store = ModelStore(tmp_path / "home", tmp_path / "no-shipped")
    token = CancelToken()
    token.cancel()
    model = create(kind, **(TINY_SECNN if kind == "secnn" else {"image_size": 16}))
    with pytest.raises(Cancelled):
        model.fit(paths[::8], labels[::8], cancel=token)
    with pytest.raises(RuntimeError):
        store.save(model, "cancelled-model")
    assert store.list() == []
    assert not store.user_dir.exists() or list(store.user_dir.iterdir()) == []


class DiskFull(OSError):
    pass


@pytest.mark.parametrize("failure", [DiskFull(28, "No space left on device"), KeyboardInterrupt()])
def test_interrupted_save_leaves_the_old_model_whole(
    images: tuple[Path, list[Path], np.ndarray], tmp_path: Path, failure: BaseException
) -> None:
    _, paths, labels = images
    store = ModelStore(tmp_path / "home", tmp_path / "no-shipped")
    old = SVMClassifier(image_size=16, pca_components=8, C=[1.0], cv_folds=2)
    old.fit(paths[::4], labels[::4])
    store.save(old, "model")
    store.activate("model")
    old_files = {p.name: p.read_bytes() for p in store.find("model").folder.iterdir()}

    new = SVMClassifier(image_size=16, pca_components=8, C=[1.0], cv_folds=2)
    new.fit(paths[1::4], labels[1::4])
    real_save_files = new.save_files

    def save_half_then_fail(folder: Path) -> dict[str, Any]:
        real_save_files(folder)
        (folder / SVMClassifier.file_name).write_bytes(b"half a file")
        raise failure

    new.save_files = save_half_then_fail  # type: ignore[method-assign]
    with pytest.raises(type(failure)):
        store.save(new, "model")
    folder = store.find("model").folder
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == old_files
    assert [p.name for p in store.user_dir.iterdir()] == ["model"]  # no temporary folder left behind
    assert store.active_id() == "model" and load_model(folder).id == "model"


# ---- devices ---------------------------------------------------------------------------------------------------


def test_failing_cuda_at_start_falls_back_to_cpu_with_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA reports itself available but the first allocation fails (a broken driver); on this CPU-only build of
    torch that allocation really fails."""
    if torch.cuda.is_available():
        pytest.skip("a working GPU is present: this test needs CUDA to fail")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    notices: list[str] = []
    with pytest.warns(DeviceWarning, match="CUDA is not usable"):
        device = choose_device("cuda", notices.append)
    assert device.type == "cpu"
    assert len(notices) == 1 and notices[0].startswith("warning:") and "CPU" in notices[0]
    with pytest.warns(DeviceWarning):
        assert choose_device("auto").type == "cpu"


@pytest.mark.parametrize(
    "failure",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: an illegal memory access was encountered"),
    ],
)
def test_cuda_failing_during_training_continues_on_cpu(
    images: tuple[Path, list[Path], np.ndarray], monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    """Training starts on a (simulated) GPU that fails in the first batch; it restarts on the CPU and finishes."""
    _, paths, labels = images
    monkeypatch.setattr(secnn_trainer, "choose_device", lambda preference, log=None: torch.device("cuda"))
    real_train = secnn_trainer._train
    devices: list[str] = []

    def train_failing_on_cuda(model: SECNNClassifier, device: torch.device, *args: Any) -> dict[str, Any]:
        devices.append(device.type)
        if device.type == "cuda":
            raise failure
        return real_train(model, device, *args)

    monkeypatch.setattr(secnn_trainer, "_train", train_failing_on_cuda)
    model = SECNNClassifier(**{**TINY_SECNN, "device": "cuda"}, epochs=1)
    lines: list[str] = []
    with pytest.warns(DeviceWarning, match="continuing on the CPU"):
        summary = model.fit(paths[::4], labels[::4], log=lines.append)
    assert devices == ["cuda", "cpu"]
    assert model.device_name == "CPU" and summary["device"] == "CPU"
    assert any(line.startswith("warning: CUDA failed") for line in lines)
    assert model.predict_proba([smear_like(2)]).shape == (1, 4)


def test_other_training_errors_are_not_mistaken_for_cuda_failures(
    images: tuple[Path, list[Path], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, paths, labels = images
    monkeypatch.setattr(secnn_trainer, "choose_device", lambda preference, log=None: torch.device("cuda"))

    def broken(*args: Any) -> dict[str, Any]:
        raise ValueError("a bug, not a device problem")

    monkeypatch.setattr(secnn_trainer, "_train", broken)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeviceWarning)  # no silent retry on the CPU
        with pytest.raises(ValueError, match="a bug"):
            SECNNClassifier(**{**TINY_SECNN, "device": "cuda"}, epochs=1).fit(paths[::4], labels[::4])


def test_cuda_failure_classification() -> None:
    assert torch_device.is_cuda_failure(torch.cuda.OutOfMemoryError("out of memory"))
    assert torch_device.is_cuda_failure(RuntimeError("CUDA error: device-side assert triggered"))
    assert torch_device.is_cuda_failure(RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"))
    assert not torch_device.is_cuda_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not torch_device.is_cuda_failure(ValueError("CUDA"))
