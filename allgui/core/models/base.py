"""The one interface every classifier answers, so the GUI and CLI never branch on the model type.

Images go in as 8-bit RGB PIL images (from :meth:`Classifier.read`, which decodes a file as the model was trained
to see it); probabilities come out as an ``(n, 4)`` array in the fixed class order of
:data:`allgui.core.classes.CLASS_NAMES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from allgui.core.classes import BENIGN, CLASS_NAMES
from allgui.core.imageio import read_rgb
from allgui.core.progress import CancelToken, LogCallback, ProgressCallback
from allgui.core.result import ReviewCode, ReviewReason


@dataclass
class ReviewPolicy:
    """When a prediction must be looked at by a person. Stored in the model's manifest."""

    min_confidence: float = 0.90
    # Out-of-distribution score above which an image is unlike the training data (None: model has no OOD score).
    ood_threshold: float | None = None
    # A malignant call is flagged when the Benign probability reaches this (None: no such check). Hematogones can
    # look like lymphoblasts, and taking them for a B-ALL subtype is this data's commonest error, often made with a
    # confidence that the minimum above cannot catch, while the Benign probability is still higher than usual.
    benign_alert: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_confidence": self.min_confidence,
            "ood_threshold": self.ood_threshold,
            "benign_alert": self.benign_alert,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ReviewPolicy:
        data = data or {}
        return cls(float(data.get("min_confidence", 0.90)), data.get("ood_threshold"), data.get("benign_alert"))

    def low_confidence(self, probabilities: np.ndarray) -> np.ndarray:
        return np.asarray(probabilities).max(axis=-1) < self.min_confidence

    def benign_alerts(self, probabilities: np.ndarray) -> np.ndarray:
        """Malignant calls whose Benign probability reaches :attr:`benign_alert`."""
        probabilities = np.asarray(probabilities)
        if self.benign_alert is None:
            return np.zeros(probabilities.shape[:-1], dtype=bool)
        malignant = probabilities.argmax(axis=-1) != BENIGN
        return malignant & (probabilities[..., BENIGN] >= self.benign_alert)

    def unlike_training(self, ood_scores: np.ndarray | float | None) -> np.ndarray | bool:
        if ood_scores is None or self.ood_threshold is None:
            return False
        return np.asarray(ood_scores, dtype=float) > self.ood_threshold

    def flags(self, probabilities: np.ndarray, ood_scores: np.ndarray | None) -> np.ndarray:
        """``needs_review`` for each row of ``probabilities`` (and its OOD score), as :meth:`Classifier.predict`."""
        return self.low_confidence(probabilities) | self.benign_alerts(probabilities) | self.unlike_training(ood_scores)


@dataclass
class Prediction:
    probabilities: np.ndarray  # (4,), calibrated, fixed class order
    predicted: int
    confidence: float
    needs_review: bool
    review_reasons: list[ReviewReason] = field(default_factory=list)
    ood_score: float | None = None

    @property
    def predicted_name(self) -> str:
        return CLASS_NAMES[self.predicted]


@dataclass
class Attention:
    """What the SE-CNN attends to for one image (for the GUI's attention view)."""

    block_names: list[str]
    excitations: list[np.ndarray]  # one vector per SE block: channel weights in [0, 1]
    heatmap: np.ndarray  # (H, W) in [0, 1], at the image's own resolution or the model's input size


class BatchPredictor:
    """How the batch pipeline (:func:`allgui.core.classify.classify_paths`) runs a classifier: :meth:`resized` and
    :meth:`prepare` run in the decoding threads (so must be thread-safe), :meth:`predict_prepared` on batches of
    what :meth:`prepare` made. This plain one calls the classifier's own methods; a model may return a faster one
    from :meth:`Classifier.batch_predictor` that gives the same predictions (the SE-CNN's, allgui.core.inference).
    """

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def resized(self, image: Image.Image) -> Image.Image:
        """The image at the model's input size where the predictor resizes first (the duplicate hash reuses it at
        that size); the image itself here."""
        return image

    def prepare(self, image: Image.Image) -> Any:
        """What a batch keeps between decoding and prediction (the classifier's :meth:`Classifier.reduce`)."""
        return self.classifier.reduce(image)

    def predict_prepared(self, prepared: Sequence[Any]) -> list[Prediction]:
        return self.classifier.predict(prepared)

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """Predictions for decoded images, as the pipeline makes them."""
        return self.predict_prepared([self.prepare(self.resized(image)) for image in images])


class Classifier(ABC):
    """A trainable, savable image classifier over the four classes."""

    kind: ClassVar[str]
    # Friendly name for menus.
    title: ClassVar[str] = ""
    class_names: tuple[str, ...] = CLASS_NAMES

    def __init__(self, **options: Any) -> None:
        self.options: dict[str, Any] = dict(options)
        self.review = ReviewPolicy()
        # Set when inference moved from a failing GPU to the CPU; the GUI shows it (read, then cleared, by callers).
        # Always None for the kinds that run on the CPU only.
        self.device_notice: str | None = None

    @abstractmethod
    def fit(
        self,
        paths: Sequence[Path],
        labels: np.ndarray,
        *,
        groups: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        log: LogCallback | None = None,
    ) -> dict[str, Any]:
        """Train on readable images ``paths`` with class indices ``labels``.

        ``groups`` are duplicate-group ids (equal id = near-duplicates) for any internal validation split, which must
        keep groups whole. Returns a JSON-able summary of the fit (history, chosen hyper-parameters, ...).
        """

    @property
    def decode_draft(self) -> tuple[int, int] | None:
        """The size JPEG files are decoded down to (in the DCT domain) for this model; None: full size."""
        return None

    def read(self, path: str | Path) -> Image.Image:
        """An image file decoded as this model sees its inputs in training (raises ``ImageReadError``)."""
        return read_rgb(path, draft=self.decode_draft)

    def reduce(self, image: Image.Image) -> Image.Image:
        """The smallest form of a decoded image that gives this model the same prediction (e.g. resized to its
        input size): what a batch keeps in memory between decoding and prediction. By default the image itself."""
        return image

    @abstractmethod
    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Calibrated probabilities, shape (n, 4)."""

    def ood_scores(self, images: Sequence[Image.Image]) -> np.ndarray | None:
        """Out-of-distribution score per image (higher = less like the training data), or None if unsupported."""
        return None

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        probabilities = self.predict_proba(images)
        ood = self.ood_scores(images)
        return [self._review(row, None if ood is None else float(ood[i])) for i, row in enumerate(probabilities)]

    def _review(self, probabilities: np.ndarray, ood_score: float | None) -> Prediction:
        predicted = int(np.argmax(probabilities))
        confidence = float(probabilities[predicted])
        review = self.review
        reasons: list[ReviewReason] = []
        if review.low_confidence(probabilities):
            shown, limit = _distinct(confidence, review.min_confidence)
            reasons.append(ReviewReason(ReviewCode.LOW_CONFIDENCE, f"confidence {shown} below {limit}"))
        if review.benign_alerts(probabilities):
            shown, alert = _percent(float(probabilities[BENIGN])), _percent(review.benign_alert)
            text = f"Benign (hematogones) not ruled out: probability {shown}, alert level {alert}"
            reasons.append(ReviewReason(ReviewCode.BENIGN_ALERT, text))
        if review.unlike_training(ood_score):
            reasons.append(ReviewReason.of(ReviewCode.UNLIKE_TRAINING))
        return Prediction(probabilities, predicted, confidence, bool(reasons), reasons, ood_score)

    def attention(self, image: Image.Image) -> Attention | None:
        """Attention data for one image; None for models without an SE attention view."""
        return None

    @abstractmethod
    def save_files(self, folder: Path) -> dict[str, Any]:
        """Write the model's files into ``folder`` (never pickles); return manifest fields (e.g. input size)."""

    @classmethod
    @abstractmethod
    def load_files(cls, folder: Path, manifest: dict[str, Any]) -> Classifier:
        """Rebuild from files written by :meth:`save_files` (checksums were already verified by the store)."""

    def batch_predictor(self) -> BatchPredictor:
        """How :func:`allgui.core.classify.classify_paths` runs this model (see :class:`BatchPredictor`)."""
        return BatchPredictor(self)

    def set_device(self, preference: str, log: LogCallback | None = None) -> None:
        """Run inference on ``preference`` ("auto", "cpu" or "cuda") where the model can; CPU-only kinds ignore it."""
        del preference, log  # a CPU-only kind has nowhere else to run

    def set_engine(self, engine: str) -> None:
        """Run a network in ``engine`` ("auto", "onnx" or "torch", :mod:`.runtime`); kinds without one ignore it."""
        del engine  # scikit-learn runs these

    @property
    def device_name(self) -> str:
        """Where inference runs, for display ("CPU" or the GPU's name)."""
        return "CPU"

    @property
    def engine_name(self) -> str:
        """What runs the model, for display and the results' provenance."""
        return "scikit-learn"


def _percent(value: float | None) -> str:
    """A probability as a percentage with two significant digits, never in exponent notation: 0.0077 -> "0.77%",
    0.41 -> "41%", 6.8e-07 -> "0.000068%" (a confident network's alert level can be that small)."""
    return np.format_float_positional(100 * float(value or 0.0), precision=2, fractional=False, trim="-") + "%"


def _distinct(value: float, limit: float) -> tuple[str, str]:
    """Both numbers with the fewest decimals (at least 2) that tell them apart: never "0.99 below 0.99"."""
    for digits in range(2, 7):
        shown, bound = f"{value:.{digits}f}", f"{limit:.{digits}f}"
        if shown != bound:
            break
    return shown, bound
