"""Batch classification of image files: one row per file, bad files become error rows, nothing is ever lost.

Rows are journalled (JSON lines, flushed and synced per batch) as they are produced, so a run killed at any moment
resumes from the journal without losing or repeating a finished image. Decoding runs in a background thread,
overlapping the model's inference on the previous batch. The CLI and the GUI batch tab both call
:func:`classify_paths`.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import math
import os
import queue
import re
import stat
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
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
from allgui.core.progress import Cancelled, CancelToken, LogCallback, ProgressCallback, check
from allgui.core.statefile import (
    StateFileError,
    StateFileWarning,
    check_regular,
    describe_os_error,
    parse_json,
    write_text_atomic,
)

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


class JournalMismatchError(ValueError):
    """``--resume`` with a journal written for another model."""


class JournalBusyError(StateFileError):
    """Another run holds the journal's lock: it is writing the same output."""


# Longest file name (bytes) of common file systems (ext4, NTFS, APFS).
NAME_MAX = 255
# A journal takes about 600 bytes a row, so this is millions of images; a resume reads it all into memory.
MAX_JOURNAL_BYTES = 2 << 30


def model_digest(loaded: LoadedModel) -> str:
    files = json.dumps(loaded.manifest.get("files", {}), sort_keys=True)
    return hashlib.sha256(f"{loaded.id}\n{files}".encode()).hexdigest()


def journal_header(loaded: LoadedModel) -> dict[str, Any]:
    return {
        "format": JOURNAL_FORMAT,
        "version": JOURNAL_VERSION,
        "model_id": loaded.id,
        "model_digest": model_digest(loaded),
    }


def path_key(path: str | Path) -> str:
    return os.path.abspath(str(path))


def journal_path_for(out: Path) -> Path:
    """``<out>.journal.jsonl`` beside ``out``; for a name too long to take the suffix, a short name derived from it
    (so that ``--resume`` finds it again)."""
    out = Path(out)
    name = f"{out.name}.journal.jsonl"
    if len(os.fsencode(name)) <= NAME_MAX:
        return out.with_name(name)
    return out.with_name(f".allgui-journal-{hashlib.sha256(os.fsencode(out.name)).hexdigest()[:16]}.jsonl")


_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEX_HASH = re.compile(r"[0-9a-f]{16}")


def _probability(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def journal_row_problem(record: Any, model_id: Any) -> str | None:
    """Why a journal line is not a row that :func:`classify_paths` writes for ``model_id``; None when it is one.

    Everything the export, the duplicate groups and the summary read is checked, so a hand-edited or foreign line
    is classified again instead of failing the run or being exported as a blank row."""
    if not isinstance(record, dict):
        return "is not a JSON object"
    if not isinstance(record.get("path"), str) or not record["path"]:
        return "has no path"
    if record.get("model_id") != model_id:
        return f"is for model {record.get('model_id')!r}, not {model_id!r}"
    error = record.get("error")
    if error:  # an unreadable file: its path and reason only
        if not isinstance(error, str):
            return "has an error that is not text"
        return "has both an error and probabilities" if "probabilities" in record else None
    if error is not None and error != "":
        return "has an error that is not text"
    if record.get("predicted") not in CLASS_NAMES:
        return "has no known predicted class"
    probabilities = record.get("probabilities")
    if not (isinstance(probabilities, list) and len(probabilities) == len(CLASS_NAMES)):
        return f"does not have {len(CLASS_NAMES)} probabilities"
    if not all(_probability(p) for p in probabilities) or not _probability(record.get("confidence")):
        return "has a probability or confidence that is not a number from 0 to 1"
    if not isinstance(record.get("needs_review"), bool):
        return "has a needs_review that is not true or false"
    reasons = record.get("review_reasons")
    if not (isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)):
        return "has review reasons that are not a list of text"
    if not (isinstance(record.get("image_sha256"), str) and _HEX_SHA256.fullmatch(record["image_sha256"])):
        return "has no SHA-256"
    if not (isinstance(record.get("phash"), str) and _HEX_HASH.fullmatch(record["phash"])):
        return "has no perceptual hash"
    return None


def read_journal(
    data: bytes, digest: str, source: str | Path = "the journal"
) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]] | None, int]:
    """A journal's header line (None if damaged), its finished rows by path key (first row per file; None when the
    header is not this version's for the model with ``digest``) and the byte length of its complete lines.

    Lines count up to the first damaged or wrong-shaped one (a kill's cut-off line, a hand edit): the rows from
    there on are classified again, with one :class:`StateFileWarning` naming ``source`` and the line. The part
    after the last newline is never complete. A first line that is no JSON object is a foreign header (``{}``).
    """
    header: dict[str, Any] | None = None
    rows: dict[str, dict[str, Any]] = {}
    complete = 0
    for number, raw in enumerate(data.split(b"\n")[:-1]):
        try:
            record = parse_json(raw, source)
            problem = None
        except StateFileError:
            record, problem = None, "is damaged (not a complete JSON line)"
        if number == 0:
            if problem is not None:
                break
            if not isinstance(record, dict):
                return {}, None, complete
            header = record
            if not journal_header_matches(record, digest):
                return header, None, complete
        else:
            problem = problem or journal_row_problem(record, header.get("model_id") if header else None)
            if problem is not None:
                warnings.warn(
                    StateFileWarning(
                        f"{source}: line {number + 1} {problem}; reading stopped there, and the images from there "
                        "on are classified again"
                    ),
                    stacklevel=2,
                )
                break
            rows.setdefault(path_key(record["path"]), record)
        complete += len(raw) + 1
    return header, rows, complete


def _lock(descriptor: int, path: Path) -> None:
    """An exclusive advisory lock for as long as the descriptor is open; :class:`JournalBusyError` if held."""
    try:
        import fcntl
    except ImportError:  # Windows: a lock on the first byte, released when the file is closed
        import msvcrt

        try:
            os.lseek(descriptor, 0, os.SEEK_SET)
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            raise JournalBusyError(path, "is locked: another allgui run is writing the same output") from None
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise JournalBusyError(path, "is locked: another allgui run is writing the same output") from None
    except OSError as error:  # a file system without locks (some network shares): go on unlocked
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise StateFileError(path, f"cannot be locked ({describe_os_error(error)})") from None


class Journal:
    """Append-only JSON lines: a header line, then one line per finished image.

    The file is opened without following links, must be a regular file and is locked while open, so a second run
    writing the same output is refused instead of mixing its rows into this one's.
    """

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = header
        self.rows: dict[str, dict[str, Any]] = {}
        self._descriptor: int | None = None

    def open(self, resume: bool) -> None:
        """Open and lock the journal; ``resume`` keeps its finished rows, otherwise it starts empty."""
        check_regular(self.path, follow_inside=False)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateFileError(self.path.parent, f"cannot be created ({describe_os_error(error)})") from None
        self._descriptor = self._open_locked()
        try:
            if resume and os.fstat(self._descriptor).st_size > 0:
                self._recover()
            else:  # truncated only now that the lock is ours: another run's journal is never emptied
                os.ftruncate(self._descriptor, 0)
                self._write([self.header])
        except OSError as error:
            self.close()
            raise StateFileError(self.path, f"cannot be written ({describe_os_error(error)})") from None
        except BaseException:
            self.close()
            raise

    def _open_locked(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        flags |= getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(5):
            try:
                descriptor = os.open(self.path, flags, 0o644)
            except OSError as error:
                if error.errno == errno.ELOOP:
                    raise StateFileError(
                        self.path, "is a symbolic link; refused so that nothing it points to is touched"
                    ) from None
                raise StateFileError(self.path, f"cannot be opened ({describe_os_error(error)})") from None
            try:
                if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                    raise StateFileError(self.path, "is not a regular file (a pipe, device or socket); refused")
                _lock(descriptor, self.path)
                # A run that just finished removes its journal: make sure the locked file is still the one named.
                with contextlib.suppress(FileNotFoundError):
                    if os.path.samestat(os.fstat(descriptor), os.lstat(self.path)):
                        return descriptor
            except BaseException:
                os.close(descriptor)
                raise
            os.close(descriptor)
        raise JournalBusyError(self.path, "keeps being replaced: another allgui run is writing the same output")

    def _recover(self) -> None:
        """Read finished rows; a line cut short by a kill is dropped and cut off the file before appending."""
        descriptor = self._descriptor
        assert descriptor is not None
        size = os.fstat(descriptor).st_size
        if size > MAX_JOURNAL_BYTES:
            raise StateFileError(self.path, f"is larger than {MAX_JOURNAL_BYTES:,} bytes, more than a journal holds")
        chunks, left = [], size
        os.lseek(descriptor, 0, os.SEEK_SET)
        while left > 0:
            chunk = os.read(descriptor, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        header, rows, good_end = read_journal(data, self.header["model_digest"], self.path)
        if header is not None and rows is None:
            if header.get("format") != JOURNAL_FORMAT:
                raise JournalMismatchError(
                    f"{self.path} is not a journal of allgui classify; run without --resume to start over"
                )
            raise JournalMismatchError(
                f"{self.path} was written for model {header.get('model_id')!r} by journal version "
                f"{header.get('version')!r} (this run: {self.header['model_id']!r}, version "
                f"{JOURNAL_VERSION}); run without --resume to start over"
            )
        self.rows = rows or {}
        os.ftruncate(descriptor, good_end)
        os.lseek(descriptor, 0, os.SEEK_END)
        if good_end == 0:  # killed before the header was complete
            self._write([self.header])

    def _write(self, records: Sequence[dict[str, Any]]) -> None:
        assert self._descriptor is not None
        # ASCII-escaped JSON: a file name that is not valid UTF-8 (a lone surrogate) must not abort the batch.
        data = memoryview("".join(json.dumps(r) + "\n" for r in records).encode("ascii"))
        try:
            while data:
                data = data[os.write(self._descriptor, data) :]
            os.fsync(self._descriptor)
        except OSError as error:
            # A part-written line is dropped by the next resume like a kill's cut-off line.
            raise StateFileError(
                self.path, f"cannot be written ({describe_os_error(error)}); the rows finished before are kept in it"
            ) from None

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self._write(rows)
        for row in rows:
            self.rows.setdefault(path_key(row["path"]), row)

    def remove(self) -> str | None:
        """Delete the journal (its rows are exported) while still holding the lock; the reason if that fails.

        Windows cannot delete a file that is open, so there it is closed (and unlocked) first.
        """
        if os.name == "nt":
            self.close()
        try:
            self.path.unlink(missing_ok=True)
        except OSError as error:
            return describe_os_error(error)
        finally:
            self.close()
        return None

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


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


def _decode(
    path: Path,
    fast: Any = None,
    draft: tuple[int, int] | None = None,
    reduce: Callable[[Image.Image], Image.Image] | None = None,
) -> _Decoded:
    """Read, hash and (on the fast path) prepare one file for the model, in a decoding thread.

    ``draft`` is the model's ``decode_draft``: the file is decoded as the model saw its training images. ``reduce``
    is the model's :meth:`Classifier.reduce`: a batch waiting for the model keeps that, not full-size images.
    """
    try:
        image, sha256 = read_rgb_and_sha256(path, draft=draft)
        if fast is None:
            hashed = batch_hash(image)  # of the full image, as before reducing
            return _Decoded(path, image if reduce is None else reduce(image), sha256, hashed, None)
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
    reduce: Callable[[Image.Image], Image.Image] | None = None,
) -> None:
    try:
        # Decoding (and the fast path's resizing) releases the GIL: a few threads overlap it with inference.
        with ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="classify-decode") as pool:
            for start in range(0, len(paths), batch_size):
                if stop.is_set():
                    return
                chunk = paths[start : start + batch_size]
                batch = list(pool.map(lambda path: _decode(path, fast, draft, reduce), chunk))
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
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Classify ``paths`` (files; ``problems`` are scan failures reported as error rows) and return the rows.

    With ``journal``, finished rows are appended there as produced; ``resume`` keeps the rows already in it. A
    :class:`Journal` the caller opened stays open (and locked) afterwards, e.g. until the export is written.
    Raises :class:`Cancelled` when ``cancel`` is set (the journal keeps everything finished so far).
    """
    log = log or (lambda _: None)
    unique: dict[str, Path] = {}
    for path in paths:
        unique.setdefault(path_key(path), Path(path))
    keys = list(unique)
    header = journal_header(loaded)
    owned = not isinstance(journal, Journal)
    book = Journal(journal, header) if owned and journal is not None else journal
    done: dict[str, dict[str, Any]] = {}
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
    fast = _fast_path(loaded)
    reduce = loaded.classifier.reduce if fast is None else None
    worker = threading.Thread(
        target=_decoder,
        args=(todo, max(1, batch_size), batches, stop, fast, loaded.classifier.decode_draft, reduce),
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
        if book is not None and owned:
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


# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection"); OWASP's remedy is a "'"
# before it. A run of quotes before one gets one more quote too, so that csv_value gives every text back exactly.
_FORMULA_START = re.compile(r"'*[=+\-@\t\r]")


def csv_cell(value: Any) -> Any:
    """``value`` as a CSV cell that a spreadsheet shows as text, never runs (file names may start with "=")."""
    return "'" + value if isinstance(value, str) and _FORMULA_START.match(value) else value


def csv_value(cell: str) -> str:
    """The text :func:`csv_cell` was given."""
    return cell[1:] if cell.startswith("'") and _FORMULA_START.match(cell, 1) else cell


def needs_quotes(cells: Iterable[Any]) -> bool:
    """Whether a row must be written with every cell quoted: the csv module quotes only the line terminator's
    characters, so a carriage return in a file name would otherwise end the row for most readers."""
    return any(isinstance(cell, str) and "\r" in cell for cell in cells)


def render(rows: Sequence[dict[str, Any]], fmt: str = "csv") -> str:
    """The export text. Both formats carry the disclaimer: CSV as a first '#' line before the header (read it with
    :func:`parse_rows`, or e.g. pandas' ``comment="#"``), JSON as a field beside the rows. CSV text cells go through
    :func:`csv_cell`; JSON keeps every value as it is."""
    if fmt == "json":
        document = {"disclaimer": DISCLAIMER, "rows": [flat_row(r, for_csv=False) for r in rows]}
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt != "csv":
        raise ValueError("format must be csv or json")
    buffer = io.StringIO()
    buffer.write(f"# {DISCLAIMER}\n")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    quoted = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for row in rows:
        cells = {k: csv_cell(v) for k, v in flat_row(row).items()}
        (quoted if needs_quotes(cells.values()) else writer).writerow(cells)
    return buffer.getvalue()


def parse_rows(text: str) -> list[dict[str, Any]]:
    """The rows of an export written by :func:`render`, from either format (CSV values stay strings, with the
    formula guard of :func:`csv_cell` taken off)."""
    if text.lstrip().startswith("{"):
        return list(json.loads(text)["rows"])
    if text.startswith("#"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    return [{k: csv_value(v) if isinstance(v, str) else v for k, v in row.items()} for row in reader]


def write_rows(rows: Sequence[dict[str, Any]], path: Path, fmt: str = "csv") -> None:
    """Write the export atomically (a temporary file with a short name, synced, then renamed over ``path``)."""
    text = render(rows, fmt)
    # A file name that is not valid UTF-8 is written back as its bytes (CSV) or as a JSON \\u escape (JSON).
    write_text_atomic(path, text, errors="surrogateescape" if fmt == "csv" else "backslashreplace")


__all__ = [
    "COLUMNS",
    "Cancelled",
    "Journal",
    "JournalBusyError",
    "JournalMismatchError",
    "classify_paths",
    "csv_cell",
    "csv_value",
    "needs_quotes",
    "journal_header",
    "journal_path_for",
    "parse_rows",
    "render",
    "write_rows",
]
