"""A technician's review of a set of images: predictions, duplicate groups and confirmed or corrected labels.

Qt-free so that the GUI's review tab is only a view: the session is saved as JSON beside the results and the
corrected images can be exported as a labelled folder (one sub-folder per class) for the retraining wizard.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from allgui import DISCLAIMER, __version__
from allgui.core.classes import CLASS_KEYS, CLASS_NAMES
from allgui.core.duplicates import DuplicateGroup
from allgui.core.hashing import HashRecord
from allgui.core.statefile import read_state_json, write_text_atomic

FORMAT = "allgui-review"
VERSION = 1
# A review of a hundred thousand images is some 30 MB; a bigger file is not one AllGUI wrote.
MAX_REVIEW_BYTES = 256 << 20


@dataclass
class ReviewItem:
    path: Path
    probabilities: list[float] | None = None
    predicted: int | None = None
    confidence: float | None = None
    needs_review: bool = False
    review_reasons: list[str] = field(default_factory=list)
    error: str | None = None
    sha256: str | None = None
    phash: int | None = None
    duplicate_group: int | None = None  # number of the group of two or more; None for a unique image
    label: int | None = None  # the technician's class: equal to ``predicted`` when confirmed, else a correction
    reviewed_at: str | None = None

    @property
    def status(self) -> str:
        if self.label is None:
            return ""
        return "confirmed" if self.label == self.predicted else "corrected"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "probabilities": self.probabilities,
            "predicted": self.predicted,
            "confidence": self.confidence,
            "needs_review": self.needs_review,
            "review_reasons": self.review_reasons,
            "error": self.error,
            "sha256": self.sha256,
            "phash": None if self.phash is None else f"{self.phash:016x}",
            "duplicate_group": self.duplicate_group,
            "label": None if self.label is None else CLASS_NAMES[self.label],
            "reviewed_at": self.reviewed_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReviewItem:
        label = data.get("label")
        phash = data.get("phash")
        return cls(
            path=Path(data["path"]),
            probabilities=data.get("probabilities"),
            predicted=data.get("predicted"),
            confidence=data.get("confidence"),
            needs_review=bool(data.get("needs_review", False)),
            review_reasons=list(data.get("review_reasons") or []),
            error=data.get("error"),
            sha256=data.get("sha256"),
            phash=int(phash, 16) if isinstance(phash, str) and phash else None,
            duplicate_group=data.get("duplicate_group"),
            label=CLASS_NAMES.index(label) if label in CLASS_NAMES else None,
            reviewed_at=data.get("reviewed_at"),
        )


class ReviewSession:
    """The images under review, in display order, with everything the technician decided about them."""

    def __init__(self, paths: Sequence[str | Path] = (), folder: str | Path | None = None) -> None:
        self.items = [ReviewItem(Path(p)) for p in paths]
        self.folder = None if folder is None else Path(folder)
        self.model_id: str | None = None
        self.duplicate_threshold: int | None = None
        self._index = {item.path: i for i, item in enumerate(self.items)}

    def __len__(self) -> int:
        return len(self.items)

    def index_of(self, path: str | Path) -> int | None:
        return self._index.get(Path(path))

    # ---- results arriving from the workers ---------------------------------------------------------------------
    def set_prediction(
        self, index: int, probabilities: Sequence[float], needs_review: bool, reasons: Sequence[str] = ()
    ) -> None:
        item = self.items[index]
        item.probabilities = [float(p) for p in probabilities]
        item.predicted = max(range(len(item.probabilities)), key=item.probabilities.__getitem__)
        item.confidence = item.probabilities[item.predicted]
        item.needs_review = bool(needs_review)
        item.review_reasons = list(reasons)
        item.error = None

    def set_error(self, index: int, error: str) -> None:
        item = self.items[index]
        item.error = error
        item.probabilities = item.predicted = item.confidence = None
        item.needs_review = True

    def set_duplicates(self, records: Sequence[HashRecord], groups: Sequence[DuplicateGroup]) -> None:
        """Hashes and groups from :func:`allgui.core.hashing.hash_images` run over this session's paths in order."""
        for item, record in zip(self.items, records, strict=True):
            item.sha256 = record.sha256
            item.phash = record.hash
            item.duplicate_group = None
            if record.error and item.error is None:
                item.error = record.error
        for number, group in enumerate(groups):
            for member in group.members:
                self.items[member].duplicate_group = number

    def duplicates_of(self, index: int) -> list[tuple[int, int | None]]:
        """The other members of ``index``'s duplicate group with their Hamming distance to it (None: unhashed)."""
        group = self.items[index].duplicate_group
        if group is None:
            return []
        mine = self.items[index].phash
        result = []
        for other, item in enumerate(self.items):
            if other != index and item.duplicate_group == group:
                distance = None if mine is None or item.phash is None else (mine ^ item.phash).bit_count()
                result.append((other, distance))
        return sorted(result, key=lambda pair: (pair[1] is None, pair[1] or 0, pair[0]))

    # ---- the technician's decisions ----------------------------------------------------------------------------
    def confirm(self, index: int) -> None:
        item = self.items[index]
        if item.predicted is None:
            raise ValueError(f"{item.path.name} has no prediction to confirm")
        self.set_label(index, item.predicted)

    def set_label(self, index: int, label: int | None) -> None:
        if label is not None and not 0 <= label < len(CLASS_NAMES):
            raise ValueError(f"class index {label} is not one of 0-{len(CLASS_NAMES) - 1}")
        item = self.items[index]
        item.label = label
        item.reviewed_at = None if label is None else datetime.now(UTC).isoformat(timespec="seconds")

    def restore_labels(self, other: ReviewSession) -> int:
        """Take the technician's labels from an earlier session of the same images; returns how many were restored.

        A label is restored only where the file is unchanged (same SHA-256) or the earlier session had no hash.
        """
        restored = 0
        for old in other.items:
            index = self.index_of(old.path)
            if old.label is None or index is None:
                continue
            item = self.items[index]
            if old.sha256 and item.sha256 and old.sha256 != item.sha256:
                continue
            item.label, item.reviewed_at = old.label, old.reviewed_at
            restored += 1
        return restored

    def labelled(self) -> list[ReviewItem]:
        return [item for item in self.items if item.label is not None]

    def counts(self) -> dict[str, int]:
        """Images per predicted class (errors and pending images are not counted)."""
        result = dict.fromkeys(CLASS_NAMES, 0)
        for item in self.items:
            if item.predicted is not None:
                result[CLASS_NAMES[item.predicted]] += 1
        return result

    # ---- persistence -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "disclaimer": DISCLAIMER,
            "allgui": __version__,
            "saved": datetime.now(UTC).isoformat(timespec="seconds"),
            "folder": None if self.folder is None else str(self.folder),
            "model_id": self.model_id,
            "duplicate_threshold": self.duplicate_threshold,
            "classes": list(CLASS_NAMES),
            "items": [item.to_dict() for item in self.items],
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReviewSession:
        """A saved review; ValueError naming the file for anything else (a pipe, a huge or damaged file)."""
        data = read_state_json(path, MAX_REVIEW_BYTES)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not an AllGUI review file")
        version = data.get("version", 0)
        if not isinstance(version, int) or version > VERSION:
            raise ValueError(f"{path}: made by a newer AllGUI (review format {version!r})")
        session = cls(folder=data.get("folder"))
        try:
            session.items = [ReviewItem.from_dict(entry) for entry in data.get("items", [])]
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: not an AllGUI review file ({type(error).__name__}: {error})") from None
        session._index = {item.path: i for i, item in enumerate(session.items)}
        session.model_id = data.get("model_id")
        session.duplicate_threshold = data.get("duplicate_threshold")
        return session

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per image, the columns of ``allgui classify`` plus the technician's label."""
        rows = []
        for item in self.items:
            probabilities = item.probabilities or [None] * len(CLASS_KEYS)
            rows.append(
                {
                    "path": str(item.path),
                    "predicted": "" if item.predicted is None else CLASS_NAMES[item.predicted],
                    **{f"p_{key}": p for key, p in zip(CLASS_KEYS, probabilities, strict=True)},
                    "confidence": item.confidence,
                    "needs_review": item.needs_review,
                    "duplicate_group": item.duplicate_group,
                    "image_sha256": item.sha256 or "",
                    "model_id": self.model_id or "",
                    "error": item.error or "",
                    "technician_label": "" if item.label is None else CLASS_NAMES[item.label],
                    "review_status": item.status,
                }
            )
        return rows

    def export(self, path: str | Path) -> Path:
        """The rows as CSV (``.csv``) or JSON (anything else), with the disclaimer in the file."""
        path = Path(path)
        rows = self.rows()
        if path.suffix.lower() == ".csv":
            buffer = io.StringIO()
            buffer.write(f"# {DISCLAIMER}\n")
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["path"], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            write_text_atomic(path, buffer.getvalue())
        else:
            document = {"disclaimer": DISCLAIMER, "model_id": self.model_id, "rows": rows}
            write_text_atomic(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return path

    def export_labelled(self, target: str | Path) -> dict[str, int]:
        """Copy every confirmed or corrected image into ``target``/<class name>/ for the retraining wizard.

        File names are kept (they carry the capture number that block splits use); a clash gets a numeric suffix.
        Returns the number of images written per class.
        """
        target = Path(target)
        items = self.labelled()
        if not items:
            raise ValueError("no image has a confirmed or corrected label yet")
        target.mkdir(parents=True, exist_ok=True)
        counts = dict.fromkeys(CLASS_NAMES, 0)
        for item in items:
            name = CLASS_NAMES[item.label]  # type: ignore[index]
            folder = target / name
            folder.mkdir(exist_ok=True)
            destination = folder / item.path.name
            suffix = 1
            while destination.exists():
                destination = folder / f"{item.path.stem}_{suffix}{item.path.suffix}"
                suffix += 1
            shutil.copy2(item.path, destination)
            counts[name] += 1
        note = f"Images labelled by a technician in AllGUI {__version__}.\n{DISCLAIMER}\n" + "".join(
            f"{name}: {count}\n" for name, count in counts.items()
        )
        write_text_atomic(target / "README.txt", note)
        return counts


def autosave_path(data_dir: Path, folder: str | Path) -> Path:
    """Where the review of ``folder`` is kept between runs: one JSON file per folder under the user data dir."""
    folder = Path(folder).resolve()
    digest = hashlib.sha1(str(folder).encode("utf-8", errors="surrogateescape")).hexdigest()[:12]
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in folder.name)[:40] or "images"
    return Path(data_dir) / "reviews" / f"{slug}-{digest}.json"
