"""Calibrated probabilities and out-of-distribution scores, fitted on held-out images.

* Temperature scaling: one scalar ``T`` dividing the logits, chosen to minimise the negative log-likelihood on
  held-out images (it changes confidence, never the predicted class).
* Out-of-distribution (OOD) score: class-conditional Mahalanobis distance with a shared, shrunk covariance
  (Lee et al. 2018) to the training images, computed on two descriptions of an image: the network's penultimate
  features (what it has learnt) and a few colour/texture statistics (stain, background, sharpness). The second one
  catches what a colour-robust network is blind to by design: another stain or scanner. Each distance is divided by
  its own threshold (a high quantile on held-out in-distribution images), so the combined score is their maximum and
  an image is unlike the training data when the score is above 1.
* Benign alert: the Benign probability above which a malignant call goes to review, set so that a small share of
  held-out malignant calls reach it (hematogones taken for blasts are the commonest confident error on this data).
"""

from __future__ import annotations

import numpy as np

from allgui.core.classes import BENIGN
from allgui.core.models.base import ReviewPolicy


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probabilities = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, None))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising held-out NLL: coarse log grid, then a finer grid around the best value."""
    if len(labels) == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    best = min(grid, key=lambda t: nll(logits, labels, t))
    fine = best * np.exp(np.linspace(-0.06, 0.06, 41))
    return float(min(fine, key=lambda t: nll(logits, labels, t)))


class Mahalanobis:
    """Minimum class-conditional Mahalanobis distance (squared) with one shared covariance."""

    def __init__(self, means: np.ndarray, precision: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> None:
        self.means = means
        self.precision = precision
        # Standardising first keeps the shrinkage fair across features of very different ranges.
        self.centre = centre
        self.scale = scale

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> Mahalanobis:
        features = np.asarray(features, dtype=np.float64)
        centre = features.mean(axis=0)
        scale = features.std(axis=0) + 1e-6
        z = (features - centre) / scale
        classes = np.unique(labels)
        means = np.zeros((int(labels.max()) + 1, z.shape[1]))
        residuals = np.empty_like(z)
        present = np.zeros(len(means), dtype=bool)
        for label in classes:
            rows = labels == label
            means[label] = z[rows].mean(axis=0)
            residuals[rows] = z[rows] - means[label]
            present[label] = True
        from sklearn.covariance import LedoitWolf  # fitting only: loading a model must not pay for scikit-learn

        covariance = LedoitWolf(assume_centered=True).fit(residuals).covariance_
        precision = np.linalg.pinv(covariance)
        return cls(means[present], precision, centre, scale)

    def score(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.centre) / self.scale
        distances = []
        for mean in self.means:
            diff = z - mean
            distances.append(np.einsum("ij,jk,ik->i", diff, self.precision, diff))
        return np.min(np.stack(distances, axis=1), axis=1)

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.means": self.means,
            f"{prefix}.precision": self.precision,
            f"{prefix}.centre": self.centre,
            f"{prefix}.scale": self.scale,
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], prefix: str, features: int) -> Mahalanobis:
        """From :meth:`state`'s arrays, which must describe ``features`` columns and 1 to 4 classes."""
        names = ("means", "precision", "centre", "scale")
        missing = [f"{prefix}.{name}" for name in names if f"{prefix}.{name}" not in state]
        if missing:
            raise ValueError(f"the calibration lacks {', '.join(missing)}")
        means, precision, centre, scale = (np.asarray(state[f"{prefix}.{n}"], dtype=np.float64) for n in names)
        shapes = [means.shape, precision.shape, centre.shape, scale.shape]
        expected = [(features, features), (features,), (features,)]
        if means.ndim != 2 or not 1 <= len(means) <= 4 or shapes[1:] != expected:
            raise ValueError(f"the {prefix} calibration has shapes {shapes}, not those of {features} features")
        if means.shape[1] != features or not all(np.isfinite(a).all() for a in (means, precision, centre, scale)):
            raise ValueError(f"the {prefix} calibration does not hold {features} finite features")
        return cls(means, precision, centre, scale)


def quantile_threshold(scores: np.ndarray, quantile: float, margin: float = 1.0) -> float:
    """A threshold that leaves about ``1 - quantile`` of in-distribution ``scores`` above it (times a margin)."""
    return float(np.quantile(np.asarray(scores, dtype=np.float64), quantile) * margin)


def confidence_threshold(confidence: np.ndarray, budget: float, floor: float = 0.5, ceiling: float = 0.99) -> float:
    """The confidence below which about ``budget`` of held-out images fall, clipped to [floor, ceiling].

    Flagging the least confident ``budget`` share (rather than just the observed errors) leaves room for errors on
    new sessions whose confidence the held-out part could not show.
    """
    if len(confidence) == 0:
        return 0.9
    return float(np.clip(np.quantile(confidence, budget), floor, ceiling))


def benign_alert_threshold(probabilities: np.ndarray, budget: float) -> float | None:
    """The Benign probability that about ``budget`` of held-out malignant calls reach (None: no budget or no such
    calls). Four significant digits: the level is often far below 1% for a confident network."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    malignant = probabilities[probabilities.argmax(axis=1) != BENIGN, BENIGN]
    if budget <= 0 or len(malignant) == 0:
        return None
    return float(f"{np.quantile(malignant, 1.0 - budget):.4g}")


def review_policy(probabilities: np.ndarray, confidence_budget: float, alert_budget: float) -> ReviewPolicy:
    """The review policy fitted to held-out calibrated ``probabilities``: the confidence minimum and Benign alert
    that flag about these shares of them, and OOD scores above 1 (they are scaled to their own thresholds)."""
    return ReviewPolicy(
        min_confidence=round(confidence_threshold(probabilities.max(axis=1), confidence_budget), 4),
        ood_threshold=1.0,
        benign_alert=benign_alert_threshold(probabilities, alert_budget),
    )
