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
import torch
from sklearn.covariance import LedoitWolf

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

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}.means": torch.from_numpy(self.means),
            f"{prefix}.precision": torch.from_numpy(self.precision),
            f"{prefix}.centre": torch.from_numpy(self.centre),
            f"{prefix}.scale": torch.from_numpy(self.scale),
        }

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], prefix: str) -> Mahalanobis:
        return cls(*(state[f"{prefix}.{name}"].double().numpy() for name in ("means", "precision", "centre", "scale")))


def optical_density(x: torch.Tensor) -> torch.Tensor:
    """Optical density of [0, 1] intensities (8-bit values shifted by one so that black stays finite)."""
    return -torch.log((x * 255.0 + 1.0) / 256.0)


def image_statistics(batch: torch.Tensor) -> np.ndarray:
    """Colour and texture statistics of uint8 images (N, 3, H, W) that describe stain, background and focus.

    Per channel: mean and std of optical density and its 5th/50th/95th percentiles; then saturation mean and std,
    the share of bright (background) and dark pixels, and the mean gradient magnitude (sharpness/scale).
    """
    x = batch.float() / 255.0
    od = optical_density(x)
    flat = od.flatten(2)
    quantiles = torch.quantile(flat, torch.tensor([0.05, 0.5, 0.95]), dim=2).permute(1, 2, 0).flatten(1)
    high = x.max(dim=1).values
    low = x.min(dim=1).values
    saturation = (high - low) / high.clamp_min(1e-3)
    grey = x.mean(dim=1)
    gradient = (grey[:, 1:, :-1] - grey[:, :-1, :-1]).abs() + (grey[:, :-1, 1:] - grey[:, :-1, :-1]).abs()
    columns = [
        flat.mean(dim=2),
        flat.std(dim=2),
        quantiles,
        saturation.flatten(1).mean(dim=1, keepdim=True),
        saturation.flatten(1).std(dim=1, keepdim=True),
        (grey > 0.8).float().flatten(1).mean(dim=1, keepdim=True),
        (grey < 0.35).float().flatten(1).mean(dim=1, keepdim=True),
        gradient.flatten(1).mean(dim=1, keepdim=True),
        gradient.flatten(1).std(dim=1, keepdim=True),
    ]
    return torch.cat(columns, dim=1).numpy().astype(np.float64)


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
