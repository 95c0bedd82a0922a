"""A technician's review of a set of images: predictions, duplicate groups and confirmed or corrected labels.

Qt-free so that the GUI's review tab is only a view: the session is saved as JSON beside the results and the
corrected images can be exported as a labelled folder (one sub-folder per class) for the retraining wizard.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from allgui import DISCLAIMER, __version__
from allgui.core.classes import CLASS_NAMES
from allgui.core.duplicates import DuplicateGroup
from allgui.core.export import fmt_for, write_rows
from allgui.core.hashing import HashRecord
from allgui.core.result import ResultRow, ReviewCode, ReviewReason, reason_from_json, reasons_to_json
from allgui.core.statefile import read_state_json, write_text_atomic

FORMAT = "allgui-review"
VERSION = 2  # 2: coded review reasons, reviewed_by
# A review of a hundred thousand images is some 30 MB; a bigger file is not one AllGUI wrote.
MAX_REVIEW_BYTES = 256 << 20


@dataclass
class ReviewItem:
    path: Path
    probabilities: list[float] | None = None
    predicted: int | None = None
    confidence: float | None = None
    needs_review: bool = False
    review_reasons: list[ReviewReason] = field(default_factory=list)
    error: str | None = None
    sha256: str | None = None
    phash: int | None = None
    duplicate_group: int | None = None  # number of the group of two or more; None for a unique image
    label: int | None = None  # the technician's class: equal to ``predicted`` when confirmed, else a correction
    reviewed_at: str | None = None
    reviewed_by: str = ""  # the reviewer named in Preferences when the label was given

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
            "review_reasons": reasons_to_json(self.review_reasons),
            "error": self.error,
            "sha256": self.sha256,
            "phash": None if self.phash is None else f"{self.phash:016x}",
            "duplicate_group": self.duplicate_group,
            "label": None if self.label is None else CLASS_NAMES[self.label],
            "reviewed_at": self.reviewed_at,
            "reviewed_by": self.reviewed_by,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReviewItem:
        label = data.get("label")
        phash = data.get("phash")
        reasons = (reason_from_json(r) for r in data.get("review_reasons") or [])
        by = data.get("reviewed_by")
        return cls(
            path=Path(data["path"]),
            probabilities=data.get("probabilities"),
            predicted=data.get("predicted"),
            confidence=data.get("confidence"),
            needs_review=bool(data.get("needs_review", False)),
            review_reasons=[r for r in reasons if r is not None]
            or ([ReviewReason(ReviewCode.UNREADABLE, data["error"])] if isinstance(data.get("error"), str) else []),
            error=data.get("error"),
            sha256=data.get("sha256"),
            phash=int(phash, 16) if isinstance(phash, str) and phash else None,
            duplicate_group=data.get("duplicate_group"),
            label=CLASS_NAMES.index(label) if label in CLASS_NAMES else None,
            reviewed_at=data.get("reviewed_at"),
            reviewed_by=by if isinstance(by, str) else "",
        )

    def result(self, model_id: str) -> ResultRow:
        """This image's :class:`ResultRow`, with the person's label where there is one (duplicate groups counted
        from 1, as ``allgui classify`` numbers them)."""
        row = ResultRow(
            path=str(self.path),
            model_id=model_id,
            needs_review=self.needs_review,
            reasons=tuple(self.review_reasons),
            image_sha256=self.sha256 or "",
            phash="" if self.phash is None else f"{self.phash:016x}",
            duplicate_group=None if self.duplicate_group is None else self.duplicate_group + 1,
            error=self.error or "",
        )
        if self.predicted is not None and self.probabilities is not None and not self.error:
            row.predicted = CLASS_NAMES[self.predicted]
            row.probabilities = tuple(self.probabilities)
            row.confidence = self.confidence
        if self.label is not None:
            row.reviewed_label = CLASS_NAMES[self.label]
            row.reviewed_by, row.reviewed_at = self.reviewed_by, self.reviewed_at or ""
        return row


class ReviewSession:
    """The images under review, in display order, with everything the technician decided about them."""

    def __init__(self, paths: Sequence[str | Path] = (), folder: str | Path | None = None) -> None:
        self.items = [ReviewItem(Path(p)) for p in paths]
        self.folder = None if folder is None else Path(folder)
        self.model_id: str | None = None
        self.duplicate_threshold: int | None = None
        self.reviewer = ""  # who gives the labels (Preferences), recorded with each
        self._index = {item.path: i for i, item in enumerate(self.items)}

    def __len__(self) -> int:
        return len(self.items)

    def index_of(self, path: str | Path) -> int | None:
        return self._index.get(Path(path))

    # ---- results arriving from the workers ---------------------------------------------------------------------
    def set_prediction(
        self, index: int, probabilities: Sequence[float], needs_review: bool, reasons: Sequence[ReviewReason] = ()
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
        item.review_reasons = [ReviewReason(ReviewCode.UNREADABLE, error)]

    def set_duplicates(self, records: Sequence[HashRecord], groups: Sequence[DuplicateGroup]) -> None:
        """Hashes and groups from :func:`allgui.core.hashing.hash_images` run over this session's paths in order."""
        for index, (item, record) in enumerate(zip(self.items, records, strict=True)):
            item.sha256 = record.sha256
            item.phash = record.hash
            item.duplicate_group = None
            if record.error and item.error is None:
                self.set_error(index, record.error)
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
        item.reviewed_by = "" if label is None else self.reviewer

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
            item.label, item.reviewed_at, item.reviewed_by = old.label, old.reviewed_at, old.reviewed_by
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

    def rows(self) -> list[ResultRow]:
        """One :class:`ResultRow` per image, in display order, with the person's labels."""
        return [item.result(self.model_id or "") for item in self.items]

    def export(self, path: str | Path) -> Path:
        """The rows as ``allgui classify`` writes them, JSON for ``.json`` and CSV otherwise."""
        path = Path(path)
        write_rows(self.rows(), path, fmt_for(path))
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
