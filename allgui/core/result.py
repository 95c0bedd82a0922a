"""One image's result, the record every part of AllGUI passes on: what the model said, the coded reasons a person
must look at it, and what a person decided.

:func:`allgui.core.classify.classify_paths` makes these rows, the journal keeps them (:meth:`ResultRow.to_record`),
the Review session adds the person's label, and :mod:`allgui.core.export` writes and reads them for
``allgui classify``, the Batch and the Review tabs and the case report alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from allgui.core.classes import CLASS_NAMES


class ReviewCode(StrEnum):
    """Why a person must look at an image (several may apply); the value is what exports write."""

    LOW_CONFIDENCE = "low_confidence"
    BENIGN_ALERT = "benign_alert"  # a malignant call with a Benign probability at the model's alert level
    UNLIKE_TRAINING = "unlike_training"  # the OOD score is above the model's threshold
    UNREADABLE = "unreadable"


# A few words per code for the Review list's Reason column and the gallery's badges.
SHORT_TEXT: dict[ReviewCode, str] = {
    ReviewCode.LOW_CONFIDENCE: "low confidence",
    ReviewCode.BENIGN_ALERT: "Benign?",
    ReviewCode.UNLIKE_TRAINING: "unusual image",
    ReviewCode.UNREADABLE: "unreadable",
}
# The text of a code read from a file that records only the code (a CSV export).
CODE_TEXT: dict[ReviewCode, str] = {
    ReviewCode.LOW_CONFIDENCE: "confidence below the model's review level",
    ReviewCode.BENIGN_ALERT: "Benign (hematogones) not ruled out",
    ReviewCode.UNLIKE_TRAINING: "image is unlike the training images",
    ReviewCode.UNREADABLE: "the file could not be read",
}


@dataclass(frozen=True, slots=True)
class ReviewReason:
    """A coded reason and its words for a person, e.g. ``low_confidence``, "confidence 71% below 90%"."""

    code: ReviewCode
    text: str

    @classmethod
    def of(cls, code: ReviewCode, text: str | None = None) -> ReviewReason:
        return cls(code, text or CODE_TEXT[code])

    @property
    def short(self) -> str:
        return SHORT_TEXT[self.code]


def legacy_reason(text: str) -> ReviewReason | None:
    """The reason behind a text of AllGUI 0.x, which kept reasons as text only (journals and review files written
    then); None for a text it never wrote."""
    if text.startswith("confidence ") and " below " in text:
        return ReviewReason(ReviewCode.LOW_CONFIDENCE, text)
    if text.startswith("Benign (hematogones) not ruled out"):
        return ReviewReason(ReviewCode.BENIGN_ALERT, text)
    if text == CODE_TEXT[ReviewCode.UNLIKE_TRAINING]:
        return ReviewReason(ReviewCode.UNLIKE_TRAINING, text)
    return None


def reason_from_json(value: Any) -> ReviewReason | None:
    """A reason as journals, review files and JSON exports keep it (``{"code": ..., "text": ...}``, or a text of
    AllGUI 0.x); None for anything else."""
    if isinstance(value, str):
        return legacy_reason(value)
    code = value.get("code") if isinstance(value, dict) else None
    if isinstance(code, str) and code in ReviewCode._value2member_map_:  # a list or dict code is no code
        text = value.get("text")
        return ReviewReason.of(ReviewCode(code), text if isinstance(text, str) else None)
    return None


def reasons_to_json(reasons: Iterable[ReviewReason]) -> list[dict[str, str]]:
    return [{"code": reason.code.value, "text": reason.text} for reason in reasons]


@dataclass(slots=True)
class ResultRow:
    """One image's result. A file that could not be read has ``path``, ``model_id`` and ``error`` (and the reason
    :attr:`ReviewCode.UNREADABLE`); the ``reviewed_*`` fields are set where a person confirmed or corrected it."""

    path: str
    model_id: str = ""
    predicted: str | None = None  # one of CLASS_NAMES
    probabilities: tuple[float, ...] | None = None  # calibrated, in the order of CLASS_NAMES
    confidence: float | None = None
    needs_review: bool = False
    # None only for a row read from a file that does not record the reasons (an export of AllGUI 0.x).
    reasons: tuple[ReviewReason, ...] | None = ()
    image_sha256: str = ""
    phash: str = ""  # 64-bit perceptual hash as 16 hex digits; "" when not hashed
    duplicate_group: int | None = None  # 1, 2, ... for the batch's groups of near-identical images
    error: str = ""
    reviewed_label: str | None = None  # the person's class: the predicted one when confirmed, else a correction
    reviewed_by: str = ""
    reviewed_at: str = ""  # ISO 8601, UTC

    @classmethod
    def unreadable(cls, path: str, error: str, model_id: str) -> ResultRow:
        return cls(
            path=path,
            model_id=model_id,
            error=error,
            needs_review=True,
            reasons=(ReviewReason(ReviewCode.UNREADABLE, error),),
        )

    @property
    def name(self) -> str:
        """The file name, whichever separator the path uses."""
        return self.path.rstrip("\\/").replace("\\", "/").rsplit("/", 1)[-1] or self.path

    @property
    def codes(self) -> tuple[ReviewCode, ...]:
        return tuple(reason.code for reason in self.reasons or ())

    @property
    def classified(self) -> bool:
        return not self.error and self.predicted in CLASS_NAMES

    def to_record(self) -> dict[str, Any]:
        """The row as the journal keeps it (JSON): what the model said, without the duplicate column (which is of
        the whole run) or the person's label."""
        if self.error:
            return {"path": self.path, "error": self.error, "model_id": self.model_id}
        record: dict[str, Any] = {
            "path": self.path,
            "predicted": self.predicted,
            "probabilities": list(self.probabilities or ()),
            "confidence": self.confidence,
            "needs_review": self.needs_review,
            "review_reasons": reasons_to_json(self.reasons or ()),
            "image_sha256": self.image_sha256,
            "model_id": self.model_id,
            "error": "",
        }
        if self.phash:
            record["phash"] = self.phash
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ResultRow:
        """A journal line that :func:`allgui.core.journal.journal_row_problem` accepted."""
        if record.get("error"):
            return cls.unreadable(record["path"], record["error"], record.get("model_id", ""))
        reasons = (reason_from_json(r) for r in record.get("review_reasons", ()))
        return cls(
            path=record["path"],
            model_id=record["model_id"],
            predicted=record["predicted"],
            probabilities=tuple(float(p) for p in record["probabilities"]),
            confidence=float(record["confidence"]),
            needs_review=record["needs_review"],
            reasons=tuple(r for r in reasons if r is not None),
            image_sha256=record["image_sha256"],
            phash=record.get("phash", ""),
        )


def unlike_training_warning(rows: Sequence[ResultRow], share: float = 0.25, minimum: int = 20) -> str | None:
    """A warning when many classified images of a batch are unlike the model's training images.

    On later sessions of the training laboratory about 3% of images are; a session whose lamp, white balance or
    stain differs puts most of its images there (training/results/stain-drift.json), and then the classes of the
    rest are unreliable too. None when fewer than ``minimum`` images with recorded reasons were classified or the
    share is lower.
    """
    classified = [row for row in rows if row.classified and row.reasons is not None]
    unlike = sum(ReviewCode.UNLIKE_TRAINING in row.codes for row in classified)
    if not classified or len(classified) < minimum or unlike < share * len(classified):
        return None
    return (
        f"{unlike} of {len(classified)} images ({unlike / len(classified):.0%}) are unlike the model's training "
        "images: another stain, lamp setting, white balance, scanner or magnification? Treat every class in this "
        "batch as unreliable; check the microscope settings, or retrain on this laboratory's images."
    )
