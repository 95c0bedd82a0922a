"""Batch classification of image files: one row per file, bad files become error rows, nothing is ever lost.

Rows are journalled (JSON lines, flushed and synced per batch) as they are produced, so a run killed at any moment
resumes from the journal without losing or repeating a finished image. Decoding runs in a background thread,
overlapping the model's inference on the previous batch. The CLI and the GUI batch tab both call
:func:`classify_paths`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from allgui import DISCLAIMER
from allgui.core.classes import CLASS_KEYS, CLASS_NAMES
from allgui.core.duplicates import find_groups
from allgui.core.hashing import HashRecord, perceptual_hash
from allgui.core.imageio import ImageReadError, read_rgb_and_sha256
from allgui.core.models.base import UNLIKE_TRAINING
from allgui.core.models.store import LoadedModel
from allgui.core.progress import Cancelled, CancelToken, ProgressCallback, check

COLUMNS: tuple[str, ...] = (
    "path",
    "predicted",
    *(f"p_{key}" for key in CLASS_KEYS),
    "confidence",
    "needs_review",
    "duplicate_group",
    "image_sha256",
    "model_id",
    "error",
)
JOURNAL_FORMAT = "allgui-classify-journal"
JOURNAL_VERSION = 2  # 2: duplicate hashes at HASH_SIZE px; rows of version 1 hash the full image


def journal_header_matches(header: dict[str, Any], digest: str) -> bool:
    """Whether a journal's first line is of this version and for the model with ``digest``: only then can its rows
    be taken over (another version's hashes would not group with this one's)."""
    return (
        header.get("format") == JOURNAL_FORMAT
        and header.get("version") == JOURNAL_VERSION
        and header.get("model_digest") == digest
    )


# The duplicate column hashes images at the default SE-CNN's input size, which the fast path has at hand: a tenth
# of the cost of hashing the full image. On the 2767 real images it finds 85 of the 86 groups a full-size hash finds
# (the 86th pair sits at the threshold) and no other.
HASH_SIZE = 96
# Threads decoding images while the model runs (the fast path's resizing happens there too).
DECODE_WORKERS = int(os.environ.get("ALLGUI_DECODE_WORKERS", "0")) or min(4, os.cpu_count() or 1)

LogCallback = Callable[[str], None]


class JournalMismatchError(ValueError):
    """``--resume`` with a journal written for another model."""


def model_digest(loaded: LoadedModel) -> str:
    files = json.dumps(loaded.manifest.get("files", {}), sort_keys=True)
    return hashlib.sha256(f"{loaded.id}\n{files}".encode()).hexdigest()


def path_key(path: str | Path) -> str:
    return os.path.abspath(str(path))


def journal_path_for(out: Path) -> Path:
    return out.with_name(f"{out.name}.journal.jsonl")


def read_journal(data: bytes, digest: str) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]] | None, int]:
    """A journal's header line (None if damaged), its finished rows by path key (first row per file; None when the
    header is not this version's for the model with ``digest``) and the byte length of its complete lines.

    Lines count up to the first damaged one, a kill's cut-off line; the part after the last newline is never complete.
    """
    header: dict[str, Any] | None = None
    rows: dict[str, dict[str, Any]] = {}
    complete = 0
    for number, raw in enumerate(data.split(b"\n")[:-1]):
        try:
            record = json.loads(raw)
        except ValueError:
            break
        if number == 0:
            header = record
            if not journal_header_matches(record, digest):
                return header, None, complete
        else:
            rows.setdefault(path_key(record["path"]), record)
        complete += len(raw) + 1
    return header, rows, complete


class Journal:
    """Append-only JSON lines: a header line, then one line per finished image."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = header
        self.rows: dict[str, dict[str, Any]] = {}
        self._handle: io.TextIOWrapper | None = None

    def open(self, resume: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            self._recover()
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            return
        self._handle = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self._write([self.header])

    def _recover(self) -> None:
        """Read finished rows; a line cut short by a kill is dropped and cut off the file before appending."""
        data = self.path.read_bytes()
        header, rows, good_end = read_journal(data, self.header["model_digest"])
        if header is not None and rows is None:
            raise JournalMismatchError(
                f"{self.path} was written for model {header.get('model_id')!r} by journal version "
                f"{header.get('version')!r} (this run: {self.header['model_id']!r}, version "
                f"{JOURNAL_VERSION}); run without --resume to start over"
            )
        self.rows = rows or {}
        if good_end == 0:  # killed before the header was complete
            self.path.write_text(json.dumps(self.header) + "\n", encoding="utf-8")
            return
        if good_end < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(good_end)

    def _write(self, records: Sequence[dict[str, Any]]) -> None:
        assert self._handle is not None
        # ASCII-escaped JSON: a file name that is not valid UTF-8 (a lone surrogate) must not abort the batch.
        self._handle.write("".join(json.dumps(r) + "\n" for r in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self._write(rows)
        for row in rows:
            self.rows.setdefault(path_key(row["path"]), row)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass
class _Decoded:
    path: Path
    image: Image.Image | Any | None  # Any: the fast path's prepared array (allgui.core.inference)
    sha256: str | None
    phash: int | None
    error: str | None


def batch_hash(image: Image.Image) -> int:
    """The perceptual hash behind the export's duplicate column: of the image resized to ``HASH_SIZE``."""
    if image.size != (HASH_SIZE, HASH_SIZE):
        image = image.convert("RGB").resize((HASH_SIZE, HASH_SIZE), Image.BILINEAR)
    return perceptual_hash(image)


def _decode(path: Path, fast: Any = None, draft: tuple[int, int] | None = None) -> _Decoded:
    """Read, hash and (on the fast path) prepare one file for the model, in a decoding thread.

    ``draft`` is the model's ``decode_draft``: the file is decoded as the model saw its training images.
    """
    try:
        image, sha256 = read_rgb_and_sha256(path, draft=draft)
        if fast is None:
            return _Decoded(path, image, sha256, batch_hash(image), None)
        resized = fast.resized(image)
        hashed = batch_hash(resized if resized.size == (HASH_SIZE, HASH_SIZE) else image)
        return _Decoded(path, fast.prepare(resized), sha256, hashed, None)
    except ImageReadError as error:
        return _Decoded(path, None, None, None, error.reason)
    except Exception as error:  # noqa: BLE001 - one file must never stop a batch
        return _Decoded(path, None, None, None, f"could not be processed ({type(error).__name__}: {error})")


def _error_row(path: Path | str, error: str, model_id: str) -> dict[str, Any]:
    return {"path": str(path), "error": error, "model_id": model_id}


def _fast_path(loaded: LoadedModel) -> Any:
    """The SE-CNN's fast batched path (allgui.core.inference), or None for other models."""
    # An SE-CNN's module is loaded whenever the classifier is one: checking first avoids importing torch otherwise.
    if "allgui.core.models.secnn" not in sys.modules:
        return None
    from allgui.core.inference import fast_path

    return fast_path(loaded.classifier)


def _rows_for(
    batch: list[_Decoded], loaded: LoadedModel, predict: Callable[[list], list] | None = None
) -> list[dict[str, Any]]:
    good = [d for d in batch if d.image is not None]
    predict = predict or loaded.classifier.predict
    predictions = predict([d.image for d in good]) if good else []
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
                "phash": f"{item.phash:016x}",
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
    fast: Any = None,
    draft: tuple[int, int] | None = None,
) -> None:
    try:
        # Decoding (and the fast path's resizing) releases the GIL: a few threads overlap it with inference.
        with ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="classify-decode") as pool:
            for start in range(0, len(paths), batch_size):
                if stop.is_set():
                    return
                batch = list(pool.map(lambda path: _decode(path, fast, draft), paths[start : start + batch_size]))
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
    journal: Path | None = None,
    resume: bool = False,
    problems: Sequence[tuple[Path, str]] = (),
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    log: LogCallback | None = None,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Classify ``paths`` (files; ``problems`` are scan failures reported as error rows) and return the rows.

    With ``journal``, finished rows are appended there as produced; ``resume`` keeps the rows already in it.
    Raises :class:`Cancelled` when ``cancel`` is set (the journal keeps everything finished so far).
    """
    log = log or (lambda _: None)
    unique: dict[str, Path] = {}
    for path in paths:
        unique.setdefault(path_key(path), Path(path))
    keys = list(unique)
    header = {
        "format": JOURNAL_FORMAT,
        "version": JOURNAL_VERSION,
        "model_id": loaded.id,
        "model_digest": model_digest(loaded),
    }
    book = Journal(journal, header) if journal is not None else None
    done: dict[str, dict[str, Any]] = {}
    if book is not None:
        book.open(resume)
        done = dict(book.rows)
        if resume:
            log(f"resuming: {sum(k in done for k in keys)} already done, {sum(k not in done for k in keys)} to go")
    todo = [unique[k] for k in keys if k not in done]
    total = len(keys)
    finished = total - len(todo)
    batches: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    fast = _fast_path(loaded)
    worker = threading.Thread(
        target=_decoder,
        args=(todo, max(1, batch_size), batches, stop, fast, loaded.classifier.decode_draft),
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
            rows = _rows_for(batch, loaded, fast.predict_prepared if fast is not None else None)
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
        if book is not None:
            book.close()
    rows = [done[k] for k in keys]
    rows += [_error_row(path, reason, loaded.id) for path, reason in problems]
    _assign_duplicate_groups(rows)
    return rows


def _assign_duplicate_groups(rows: list[dict[str, Any]]) -> None:
    """Number groups of identical or near-identical images in this batch (1, 2, ...); others stay blank."""
    hashed = [i for i, r in enumerate(rows) if r.get("phash") and r.get("image_sha256")]
    records = [HashRecord(Path(rows[i]["path"]), rows[i]["image_sha256"], int(rows[i]["phash"], 16)) for i in hashed]
    for row in rows:
        row["duplicate_group"] = ""
    for number, group in enumerate(find_groups(records), start=1):
        for member in group.members:
            rows[hashed[member]]["duplicate_group"] = number


# ---- export ----------------------------------------------------------------------------------------------------


def unlike_training_warning(rows: Sequence[dict[str, Any]], share: float = 0.25, minimum: int = 20) -> str | None:
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


def flat_row(row: dict[str, Any], for_csv: bool = True) -> dict[str, Any]:
    """The exported columns: a bad file has only path and error filled."""
    probabilities = row.get("probabilities")
    out: dict[str, Any] = dict.fromkeys(COLUMNS, "" if for_csv else None)
    out["path"] = row["path"]
    out["error"] = row.get("error") or ("" if for_csv else None)
    if probabilities is not None:
        out["predicted"] = row["predicted"]
        for key, value in zip(CLASS_KEYS, probabilities, strict=True):
            out[f"p_{key}"] = f"{value:.6f}" if for_csv else value
        out["confidence"] = f"{row['confidence']:.6f}" if for_csv else row["confidence"]
        out["needs_review"] = ("true" if row["needs_review"] else "false") if for_csv else row["needs_review"]
        out["image_sha256"] = row["image_sha256"]
        out["model_id"] = row["model_id"]
        group = row.get("duplicate_group", "")
        out["duplicate_group"] = group if for_csv else (group or None)
    return out


def render(rows: Sequence[dict[str, Any]], fmt: str = "csv") -> str:
    """The export text. Both formats carry the disclaimer: CSV as a first '#' line before the header (read it with
    :func:`parse_rows`, or e.g. pandas' ``comment="#"``), JSON as a field beside the rows."""
    if fmt == "json":
        document = {"disclaimer": DISCLAIMER, "rows": [flat_row(r, for_csv=False) for r in rows]}
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt != "csv":
        raise ValueError("format must be csv or json")
    buffer = io.StringIO()
    buffer.write(f"# {DISCLAIMER}\n")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat_row(r) for r in rows)
    return buffer.getvalue()


def parse_rows(text: str) -> list[dict[str, Any]]:
    """The rows of an export written by :func:`render`, from either format (CSV values stay strings)."""
    if text.lstrip().startswith("{"):
        return list(json.loads(text)["rows"])
    if text.startswith("#"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return list(csv.DictReader(io.StringIO(text, newline="")))


def write_rows(rows: Sequence[dict[str, Any]], path: Path, fmt: str = "csv") -> None:
    """Write the export atomically: a temporary file, synced, then renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    # A file name that is not valid UTF-8 is written back as its bytes (CSV) or as a JSON \\u escape (JSON).
    errors = "surrogateescape" if fmt == "csv" else "backslashreplace"
    with open(temporary, "w", encoding="utf-8", errors=errors, newline="") as handle:
        handle.write(render(rows, fmt))
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


__all__ = [
    "COLUMNS",
    "Cancelled",
    "JournalMismatchError",
    "classify_paths",
    "journal_path_for",
    "parse_rows",
    "render",
    "write_rows",
]
