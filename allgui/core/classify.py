"""Batch classification of image files: one row per file, bad files become error rows, nothing is ever lost.

Rows are journalled (:mod:`allgui.core.journal`) as they are produced, so a killed run resumes where it stopped.
Decoding runs in a background thread, overlapping the model's inference on the previous batch. The CLI, the GUI's
Batch and Review tabs all call :func:`classify_paths`, which runs each model as its
:meth:`~allgui.core.models.base.Classifier.batch_predictor` says; :mod:`allgui.core.export` writes the rows out.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from allgui.core.classes import CLASS_NAMES
from allgui.core.duplicates import find_groups
from allgui.core.export import COLUMNS, csv_cell, csv_value, flat_row, needs_quotes, parse_rows, render, write_rows
from allgui.core.hashing import HashRecord, perceptual_hash
from allgui.core.imageio import ImageReadError, read_rgb_and_sha256
from allgui.core.journal import (
    Journal,
    JournalBusyError,
    JournalMismatchError,
    Row,
    journal_header,
    journal_path_for,
    model_digest,
    path_key,
    read_journal,
)
from allgui.core.models.base import UNLIKE_TRAINING, BatchPredictor
from allgui.core.models.store import LoadedModel
from allgui.core.progress import Cancelled, CancelToken, LogCallback, ProgressCallback, check

# The duplicate column hashes images at the default SE-CNN's input size, which the fast path has at hand: a tenth
# of the cost of hashing the full image. On the 2767 real images it finds 85 of the 86 groups a full-size hash finds
# (the 86th pair sits at the threshold) and no other.
HASH_SIZE = 96
# Threads decoding images while the model runs (the fast path's resizing happens there too).
DECODE_WORKERS = int(os.environ.get("ALLGUI_DECODE_WORKERS", "0")) or min(4, os.cpu_count() or 1)


@dataclass
class _Decoded:
    path: Path
    image: Any  # what the model's BatchPredictor.prepare made; None for a file that failed
    sha256: str | None
    phash: int | None
    error: str | None


def batch_hash(image: Image.Image) -> int:
    """The perceptual hash behind the export's duplicate column: of the image resized to ``HASH_SIZE``."""
    if image.size != (HASH_SIZE, HASH_SIZE):
        image = image.convert("RGB").resize((HASH_SIZE, HASH_SIZE), Image.BILINEAR)
    return perceptual_hash(image)


def _decode(
    path: Path, predictor: BatchPredictor, draft: tuple[int, int] | None = None, hashes: bool = True
) -> _Decoded:
    """Read, hash and prepare one file for the model, in a decoding thread.

    ``draft`` is the model's ``decode_draft``: the file is decoded as the model saw its training images. A batch
    waiting for the model keeps what ``predictor.prepare`` made (e.g. resized to its input size), not full-size images.
    """
    try:
        image, sha256 = read_rgb_and_sha256(path, draft=draft)
        resized = predictor.resized(image)
        # Of the image the predictor resized already where that is at the hash's size (a tenth of the cost), else
        # of the full image, as before reducing.
        hashed = batch_hash(resized if resized.size == (HASH_SIZE, HASH_SIZE) else image) if hashes else None
        return _Decoded(path, predictor.prepare(resized), sha256, hashed, None)
    except ImageReadError as error:
        return _Decoded(path, None, None, None, error.reason)
    except Exception as error:  # noqa: BLE001 - one file must never stop a batch
        return _Decoded(path, None, None, None, f"could not be processed ({type(error).__name__}: {error})")


def _error_row(path: Path | str, error: str, model_id: str) -> Row:
    return {"path": str(path), "error": error, "model_id": model_id}


def _rows_for(batch: list[_Decoded], loaded: LoadedModel, predictor: BatchPredictor) -> list[Row]:
    good = [d for d in batch if d.image is not None]
    predictions = predictor.predict_prepared([d.image for d in good]) if good else []
    by_path = {id(d): p for d, p in zip(good, predictions, strict=True)}
    rows = []
    for item in batch:
        if item.image is None:
            rows.append(_error_row(item.path, item.error or "unreadable", loaded.id))
            continue
        prediction = by_path[id(item)]
        rows.append(
            {
                "path": str(item.path),
                "predicted": CLASS_NAMES[prediction.predicted],
                "probabilities": [float(v) for v in prediction.probabilities],
                "confidence": float(prediction.confidence),
                "needs_review": bool(prediction.needs_review),
                "review_reasons": list(prediction.review_reasons),
                "image_sha256": item.sha256,
                **({"phash": f"{item.phash:016x}"} if item.phash is not None else {}),
                "model_id": loaded.id,
                "error": "",
            }
        )
    return rows


def _decoder(
    paths: list[Path],
    batch_size: int,
    out: queue.Queue,
    stop: threading.Event,
    predictor: BatchPredictor,
    draft: tuple[int, int] | None = None,
    hashes: bool = True,
) -> None:
    try:
        # Decoding (and the fast path's resizing) releases the GIL: a few threads overlap it with inference.
        with ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="classify-decode") as pool:
            for start in range(0, len(paths), batch_size):
                if stop.is_set():
                    return
                chunk = paths[start : start + batch_size]
                batch = list(pool.map(lambda path: _decode(path, predictor, draft, hashes), chunk))
                while not stop.is_set():
                    try:
                        out.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
    finally:
        if not stop.is_set():
            out.put(None)  # end marker; the consumer drains the queue until this thread ends


def classify_paths(
    paths: Sequence[Path],
    loaded: LoadedModel,
    *,
    batch_size: int = 32,
    journal: Path | Journal | None = None,
    resume: bool = False,
    problems: Sequence[tuple[Path, str]] = (),
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    log: LogCallback | None = None,
    on_rows: Callable[[list[Row]], None] | None = None,
    group_duplicates: bool = True,
) -> list[Row]:
    """Classify ``paths`` (files; ``problems`` are scan failures reported as error rows) and return the rows.

    With ``journal``, finished rows are appended there as produced; ``resume`` keeps the rows already in it. A
    :class:`Journal` the caller opened stays open (and locked) afterwards, e.g. until the export is written.
    Raises :class:`Cancelled` when ``cancel`` is set (the journal keeps everything finished so far).
    ``group_duplicates=False`` leaves out the perceptual hash and the duplicate column, for a caller that groups
    the images itself (the Review tab hashes them before classifying, to show the groups first).
    """
    if journal is not None and not group_duplicates:
        raise ValueError("a journal keeps each row's perceptual hash: classify with group_duplicates")
    log = log or (lambda _: None)
    unique: dict[str, Path] = {}
    for path in paths:
        unique.setdefault(path_key(path), Path(path))
    keys = list(unique)
    header = journal_header(loaded)
    owned = not isinstance(journal, Journal)
    book = Journal(journal, header) if owned and journal is not None else journal
    done: dict[str, Row] = {}
    if book is not None:
        if owned:
            book.open(resume)
        elif book.header != header:
            raise ValueError(f"{book.path} was opened for another model")
        done = dict(book.rows)
        if resume:
            log(f"resuming: {sum(k in done for k in keys)} already done, {sum(k not in done for k in keys)} to go")
    todo = [unique[k] for k in keys if k not in done]
    total = len(keys)
    finished = total - len(todo)
    batches: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    predictor = loaded.classifier.batch_predictor()  # e.g. the SE-CNN's fast path: the one choice of how to run it
    worker = threading.Thread(
        target=_decoder,
        args=(todo, max(1, batch_size), batches, stop, predictor, loaded.classifier.decode_draft, group_duplicates),
        name="classify-decode",
    )
    worker.start()
    try:
        if progress is not None:
            progress(finished, total, "classifying")
        while True:
            check(cancel)
            try:
                batch = batches.get(timeout=0.2)
            except queue.Empty:
                continue
            if batch is None:
                break
            rows = _rows_for(batch, loaded, predictor)
            if book is not None:
                book.append(rows)
            for row in rows:
                done.setdefault(path_key(row["path"]), row)
            if on_rows is not None:  # e.g. the GUI's table, filled as results arrive
                on_rows(rows)
            finished += len(rows)
            if progress is not None:
                progress(finished, total, f"classified {finished} of {total}")
    finally:
        stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                batches.get(timeout=0.05)
        worker.join()
        if book is not None and owned:
            book.close()
    rows = [done[k] for k in keys]
    rows += [_error_row(path, reason, loaded.id) for path, reason in problems]
    if group_duplicates:
        _assign_duplicate_groups(rows)
    return rows


def _assign_duplicate_groups(rows: list[Row]) -> None:
    """Number groups of identical or near-identical images in this batch (1, 2, ...); others stay blank."""
    hashed = [i for i, r in enumerate(rows) if r.get("phash") and r.get("image_sha256")]
    records = [HashRecord(Path(rows[i]["path"]), rows[i]["image_sha256"], int(rows[i]["phash"], 16)) for i in hashed]
    for row in rows:
        row["duplicate_group"] = ""
    for number, group in enumerate(find_groups(records), start=1):
        for member in group.members:
            rows[hashed[member]]["duplicate_group"] = number


def unlike_training_warning(rows: Sequence[Row], share: float = 0.25, minimum: int = 20) -> str | None:
    """A warning when many classified images of a batch are unlike the model's training images.

    On later sessions of the training laboratory about 3% of images are; a session whose lamp, white balance or
    stain differs puts most of its images there (training/results/stain-drift.json), and then the classes of the
    rest are unreliable too. None when fewer than ``minimum`` images were classified or the share is lower.
    """
    classified = [row for row in rows if not row.get("error") and "review_reasons" in row]
    unlike = sum(UNLIKE_TRAINING in row["review_reasons"] for row in classified)
    if not classified or len(classified) < minimum or unlike < share * len(classified):
        return None
    return (
        f"{unlike} of {len(classified)} images ({unlike / len(classified):.0%}) are unlike the model's training "
        "images: another stain, lamp setting, white balance, scanner or magnification? Treat every class in this "
        "batch as unreliable; check the microscope settings, or retrain on this laboratory's images."
    )


# Re-exported: the CLI, the GUI and the tests import these from here.
__all__ = [
    "COLUMNS",
    "Cancelled",
    "Journal",
    "JournalBusyError",
    "JournalMismatchError",
    "Row",
    "batch_hash",
    "classify_paths",
    "csv_cell",
    "csv_value",
    "flat_row",
    "journal_header",
    "journal_path_for",
    "model_digest",
    "needs_quotes",
    "parse_rows",
    "path_key",
    "read_journal",
    "render",
    "unlike_training_warning",
    "write_rows",
]
