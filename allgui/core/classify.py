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
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from allgui.core.classes import CLASS_NAMES
from allgui.core.duplicates import find_groups
from allgui.core.export import (
    COLUMNS,
    cells,
    csv_cell,
    csv_value,
    fmt_for,
    needs_quotes,
    parse_rows,
    render,
    row_from_cells,
    rows_from_cells,
    write_rows,
)
from allgui.core.hashing import HashRecord, perceptual_hash
from allgui.core.imageio import ImageReadError, read_rgb_and_sha256
from allgui.core.journal import (
    Journal,
    JournalBusyError,
    JournalMismatchError,
    journal_header,
    journal_path_for,
    model_digest,
    path_key,
    read_journal,
)
from allgui.core.models.base import BatchPredictor
from allgui.core.models.runtime import usable_cores
from allgui.core.models.store import LoadedModel
from allgui.core.progress import (
    MIN_RATE_SECONDS,
    Cancelled,
    CancelToken,
    LogCallback,
    ProgressCallback,
    check,
    clock_text,
)
from allgui.core.result import ResultRow, ReviewCode, ReviewReason, unlike_training_warning

# The duplicate column hashes images at the default SE-CNN's input size, which the fast path has at hand: a tenth
# of the cost of hashing the full image. On the 2767 real images it finds 85 of the 86 groups a full-size hash finds
# (the 86th pair sits at the threshold) and no other.
HASH_SIZE = 96


def decode_workers() -> int:
    """Threads decoding images while the model runs (the fast path's resizing happens there too): up to 4, or
    ``ALLGUI_DECODE_WORKERS``. Read at each run, so a cluster's worker process takes the value its environment was
    given however early it imported this module."""
    value = os.environ.get("ALLGUI_DECODE_WORKERS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else min(4, usable_cores())


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


def _rows_for(batch: list[_Decoded], loaded: LoadedModel, predictor: BatchPredictor) -> list[ResultRow]:
    good = [d for d in batch if d.image is not None]
    predictions = predictor.predict_prepared([d.image for d in good]) if good else []
    by_path = {id(d): p for d, p in zip(good, predictions, strict=True)}
    rows = []
    for item in batch:
        if item.image is None:
            rows.append(ResultRow.unreadable(str(item.path), item.error or "unreadable", loaded.id))
            continue
        prediction = by_path[id(item)]
        rows.append(
            ResultRow(
                path=str(item.path),
                model_id=loaded.id,
                predicted=CLASS_NAMES[prediction.predicted],
                probabilities=tuple(float(v) for v in prediction.probabilities),
                confidence=float(prediction.confidence),
                needs_review=bool(prediction.needs_review),
                reasons=tuple(prediction.review_reasons),
                image_sha256=item.sha256 or "",
                phash="" if item.phash is None else f"{item.phash:016x}",
            )
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
        with ThreadPoolExecutor(decode_workers(), thread_name_prefix="classify-decode") as pool:
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
    on_rows: Callable[[list[ResultRow]], None] | None = None,
    group_duplicates: bool = True,
    client: Any | None = None,
    chunk_size: int | None = None,
    worker_engine: str = "auto",
    worker_device: str = "auto",
) -> list[ResultRow]:
    """Classify ``paths`` (files; ``problems`` are scan failures reported as error rows) and return the rows.

    With ``journal``, finished rows are appended there as produced; ``resume`` keeps the rows already in it. A
    :class:`Journal` the caller opened stays open (and locked) afterwards, e.g. until the export is written.
    Raises :class:`Cancelled` when ``cancel`` is set (the journal keeps everything finished so far).
    ``group_duplicates=False`` leaves out the perceptual hash and the duplicate column, for a caller that groups
    the images itself (the Review tab hashes them before classifying, to show the groups first).

    ``client``, a ``dask.distributed.Client`` (needs the cluster extra, ``pip install "allgui[cluster]"``), runs
    the decoding and the model on its cluster's workers (:mod:`allgui.core.cluster`); this process lists the
    files, journals the rows as they come back and groups the duplicates over the whole run, so the rows, the
    journal and ``resume`` are the same as for a run here (a run started here may be resumed on a cluster and
    back). The workers must read the images at the same paths (shared storage; relative paths are made absolute
    here); the model travels as its verified files, loaded once per worker, ``worker_engine`` and
    ``worker_device`` choosing what runs it there ("auto": as :mod:`allgui.core.models.runtime` decides on each
    worker). ``chunk_size`` is the number of paths per task (default: 16 to 128, from the number of images and of
    worker threads). A worker that dies mid-run loses nothing (its tasks run elsewhere); a task that fails for
    good raises :class:`allgui.core.cluster.ClusterError`, with every row finished so far in the journal. In a
    notebook::

        from dask.distributed import Client
        from allgui.core.classify import classify_paths
        from allgui.core.cluster import start_local_cluster
        from allgui.core.models.store import ModelStore

        client = Client(start_local_cluster(4))  # 4 worker processes here; or Client("tcp://scheduler:8786")
        rows = classify_paths(paths, ModelStore().load(), client=client, journal=Path("run.journal.jsonl"))

    (``start_local_cluster`` gives each worker its share of the cores, as ``allgui classify --cluster local:4``
    does; a plain ``LocalCluster`` works too.)
    """
    if journal is not None and not group_duplicates:
        raise ValueError("a journal keeps each row's perceptual hash: classify with group_duplicates")
    if client is not None and not group_duplicates:
        raise ValueError("a cluster run groups duplicates over the whole run: classify with group_duplicates")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    log = log or (lambda _: None)
    unique: dict[str, Path] = {}
    for path in paths:
        unique.setdefault(path_key(path), path if isinstance(path, Path) else Path(path))  # a copy is 300 bytes
    keys = list(unique)
    header = journal_header(loaded)
    owned = not isinstance(journal, Journal)
    book = Journal(journal, header) if owned and journal is not None else journal
    done: dict[str, ResultRow] = {}
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

    def take(rows: list[ResultRow]) -> list[ResultRow]:
        """Journal and keep the rows of paths not finished yet: a path is never journalled twice."""
        nonlocal finished
        fresh: dict[str, ResultRow] = {}
        for row in rows:
            key = path_key(row.path)
            if key not in done and key not in fresh:
                fresh[key] = row
        if fresh:
            if book is not None:
                book.append(list(fresh.values()))
            done.update(fresh)  # only once journalled
            if on_rows is not None:  # e.g. the GUI's table, filled as results arrive
                on_rows(list(fresh.values()))
            finished += len(fresh)
        return list(fresh.values())

    if client is not None:
        try:
            _classify_on_cluster(
                client,
                [key for key in keys if key not in done],  # the same strings as ``unique``'s keys: no copies
                unique,
                loaded,
                take,
                batch_size=max(1, batch_size),
                chunk_size=chunk_size,
                engine=worker_engine,
                device=worker_device,
                progress=progress,
                counts=lambda: (finished, total),
                cancel=cancel,
                log=log,
            )
        finally:
            if book is not None and owned:
                book.close()
        return _finish(keys, done, problems, loaded, group_duplicates)
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
            take(_rows_for(batch, loaded, predictor))
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
    return _finish(keys, done, problems, loaded, group_duplicates)


def _finish(
    keys: list[str],
    done: dict[str, ResultRow],
    problems: Sequence[tuple[Path, str]],
    loaded: LoadedModel,
    group_duplicates: bool,
) -> list[ResultRow]:
    """The run's rows in the order of its paths, then the scan's error rows, with the duplicate column."""
    rows = [done[k] for k in keys]
    rows += [ResultRow.unreadable(str(path), reason, loaded.id) for path, reason in problems]
    if group_duplicates:
        _assign_duplicate_groups(rows)
    return rows


def _classify_on_cluster(
    client: Any,
    keys: list[str],
    unique: dict[str, Path],
    loaded: LoadedModel,
    take: Callable[[list[ResultRow]], list[ResultRow]],
    *,
    batch_size: int,
    chunk_size: int | None,
    engine: str,
    device: str,
    progress: ProgressCallback | None,
    counts: Callable[[], tuple[int, int]],
    cancel: CancelToken | None,
    log: LogCallback,
) -> None:
    """The cluster's part of :func:`classify_paths`: rows stream back from the workers into ``take``."""
    from allgui.core.cluster import stream_rows  # only here: dask is the cluster extra's

    started = time.monotonic()
    first, total = counts()
    if progress is not None:
        progress(first, total, "classifying on the cluster")
    stream = stream_rows(
        client,
        keys,
        loaded,
        batch_size=batch_size,
        chunk_size=chunk_size,
        engine=engine,
        device=device,
        cancel=cancel,
        log=log,
    )
    with contextlib.closing(stream):
        for rows, workers in stream:
            for row in rows:  # the path as this process named it (the workers were sent it absolute)
                row.path = str(unique[path_key(row.path)])
            take(rows)
            if progress is not None:
                finished, total = counts()
                progress(finished, total, _cluster_message(finished, total, finished - first, started, workers))


def _cluster_message(finished: int, total: int, this_run: int, started: float, workers: int) -> str:
    """``1200 of 3000 · 95 images/s · 0:19 left · 2 workers`` (the rate of this run, not of resumed rows)."""
    parts = [f"{finished} of {total}"]
    elapsed = time.monotonic() - started
    if this_run > 0 and elapsed >= MIN_RATE_SECONDS:
        rate = this_run / elapsed
        parts += [f"{rate:.1f} images/s" if rate < 10 else f"{rate:.0f} images/s"]
        parts += [f"{clock_text((total - finished) / rate)} left"]
    parts.append(f"{workers} worker{'s' if workers != 1 else ''}")
    return " · ".join(parts)


def _assign_duplicate_groups(rows: list[ResultRow]) -> None:
    """Number groups of identical or near-identical images in this batch (1, 2, ...); others stay blank."""
    hashed = [i for i, r in enumerate(rows) if r.phash and r.image_sha256]
    records = [HashRecord(Path(rows[i].path), rows[i].image_sha256, int(rows[i].phash, 16)) for i in hashed]
    for row in rows:
        row.duplicate_group = None
    for number, group in enumerate(find_groups(records), start=1):
        for member in group.members:
            rows[hashed[member]].duplicate_group = number


# Re-exported: the CLI, the GUI and the tests import these from here.
__all__ = [
    "COLUMNS",
    "Cancelled",
    "Journal",
    "JournalBusyError",
    "JournalMismatchError",
    "ResultRow",
    "ReviewCode",
    "ReviewReason",
    "batch_hash",
    "classify_paths",
    "csv_cell",
    "csv_value",
    "cells",
    "fmt_for",
    "journal_header",
    "journal_path_for",
    "model_digest",
    "needs_quotes",
    "parse_rows",
    "path_key",
    "read_journal",
    "render",
    "row_from_cells",
    "rows_from_cells",
    "unlike_training_warning",
    "write_rows",
]
