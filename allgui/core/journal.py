"""The crash-safe journal of a batch classification: a header line, then one JSON line per finished image.

Rows are appended (flushed and synced per batch) as they are produced, so a run killed at any moment resumes from
the journal without losing or repeating a finished image. A line is taken over only when it is a well-formed row of
this journal version for the same model.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

from allgui.core.classes import CLASS_NAMES
from allgui.core.models.store import LoadedModel
from allgui.core.result import ResultRow, reason_from_json
from allgui.core.statefile import StateFileError, StateFileWarning, check_regular, describe_os_error, parse_json


class JournalHeader(TypedDict):
    format: str
    version: int
    model_id: str
    model_digest: str


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


def journal_header(loaded: LoadedModel) -> JournalHeader:
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
    if not (isinstance(reasons, list) and all(reason_from_json(r) is not None for r in reasons)):
        return "has review reasons that are not a list of coded reasons"
    if not (isinstance(record.get("image_sha256"), str) and _HEX_SHA256.fullmatch(record["image_sha256"])):
        return "has no SHA-256"
    if not (isinstance(record.get("phash"), str) and _HEX_HASH.fullmatch(record["phash"])):
        return "has no perceptual hash"
    return None


def read_journal(
    data: bytes, digest: str, source: str | Path = "the journal"
) -> tuple[dict[str, Any] | None, dict[str, ResultRow] | None, int]:
    """A journal's header line (None if damaged), its finished rows by path key (first row per file; None when the
    header is not this version's for the model with ``digest``) and the byte length of its complete lines.

    Lines count up to the first damaged or wrong-shaped one (a kill's cut-off line, a hand edit): the rows from
    there on are classified again, with one :class:`StateFileWarning` naming ``source`` and the line. The part
    after the last newline is never complete. A first line that is no JSON object is a foreign header (``{}``).
    """
    header: dict[str, Any] | None = None
    rows: dict[str, ResultRow] = {}
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
            key = path_key(record["path"])
            if key not in rows:
                rows[key] = ResultRow.from_record(record)
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

    def __init__(self, path: Path, header: JournalHeader) -> None:
        self.path = Path(path)
        self.header = header
        self.rows: dict[str, ResultRow] = {}
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

    def _write(self, records: Sequence[dict[str, Any] | JournalHeader]) -> None:
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

    def append(self, rows: Sequence[ResultRow]) -> None:
        self._write([row.to_record() for row in rows])
        for row in rows:
            self.rows.setdefault(path_key(row.path), row)

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
