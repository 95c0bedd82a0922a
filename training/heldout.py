"""Checks of a trained SE-CNN on held-out images: metrics with confidence intervals, shortcut tests, needs_review.

Used by :mod:`training.evaluate_recipe` (later capture blocks held out) and by the model card.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import f1_score, roc_auc_score

from allgui.core import metrics
from allgui.core.classes import CLASS_NAMES
from allgui.core.models.secnn import CORNER_BOX, SECNNClassifier
from tests.foreign_images import altered_smears, generated_images, library_images


def wilson(successes: int, total: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval for a proportion."""
    if total == 0:
        return [0.0, 1.0]
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def bootstrap_macro_f1(truth: np.ndarray, predicted: np.ndarray, rounds: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(rounds):
        rows = rng.integers(0, len(truth), len(truth))
        scores.append(f1_score(truth[rows], predicted[rows], labels=[0, 1, 2, 3], average="macro", zero_division=0))
    return [round(float(np.quantile(scores, 0.025)), 4), round(float(np.quantile(scores, 0.975)), 4)]


# ---- colour cues removed at test time --------------------------------------------------------------------------
def greyscale(image: Image.Image) -> Image.Image:
    return image.convert("L").convert("RGB")


def stain_normalise(image: Image.Image, target_mean: np.ndarray, target_std: np.ndarray) -> Image.Image:
    """Reinhard-style normalisation in optical density: every image gets the same per-channel mean and spread."""
    od = -np.log((np.asarray(image, dtype=np.float64) + 1.0) / 256.0)
    mean, std = od.reshape(-1, 3).mean(axis=0), od.reshape(-1, 3).std(axis=0) + 1e-6
    od = (od - mean) / std * target_std + target_mean
    return Image.fromarray(np.clip(256.0 * np.exp(-od) - 1.0, 0, 255).astype(np.uint8), "RGB")


def od_statistics(images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    means, stds = [], []
    for image in images:
        od = -np.log((np.asarray(image, dtype=np.float64) + 1.0) / 256.0).reshape(-1, 3)
        means.append(od.mean(axis=0))
        stds.append(od.std(axis=0))
    return np.mean(means, axis=0), np.mean(stds, axis=0)


def mask_corner(image: Image.Image) -> Image.Image:
    array = np.array(image)
    height, width = array.shape[:2]
    box_h, box_w = round(height * CORNER_BOX[1]), round(width * CORNER_BOX[0])
    array[-box_h:, -box_w:] = np.median(array.reshape(-1, 3), axis=0).astype(np.uint8)
    return Image.fromarray(array, "RGB")


def summarise(truth: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    predicted = probabilities.argmax(axis=1)
    result = metrics.evaluate(truth, probabilities)
    correct = int((predicted == truth).sum())
    benign = truth == 0
    result["accuracy_ci95"] = wilson(correct, len(truth))
    result["macro_f1_ci95"] = bootstrap_macro_f1(truth, predicted)
    result["benign_recall_ci95"] = wilson(int((predicted[benign] == 0).sum()), int(benign.sum()))
    return result


def evaluate_model(
    model: SECNNClassifier,
    images: Sequence[Image.Image],
    truth: np.ndarray,
    reference: Sequence[Image.Image],
    log=print,
) -> dict[str, Any]:
    """Everything the model card reports, on held-out ``images``; ``reference`` (training images) sets the
    stain-normalisation target."""
    started = time.perf_counter()
    logits = model.logits(images)
    uncalibrated = np.exp(logits - logits.max(1, keepdims=True))
    uncalibrated /= uncalibrated.sum(1, keepdims=True)
    predictions = model.predict(images)
    probabilities = np.stack([p.probabilities for p in predictions])
    result: dict[str, Any] = {"heldout": summarise(truth, probabilities)}
    result["heldout"]["ece_uncalibrated"] = metrics.expected_calibration_error(truth, uncalibrated)
    wrong = probabilities.argmax(1) != truth
    flagged = np.array([p.needs_review for p in predictions])
    ood = np.array([p.ood_score for p in predictions], dtype=float)
    review = model.review
    result["review"] = {
        "policy": review.to_dict(),
        "flagged_rate": round(float(flagged.mean()), 4),
        "flagged_ci95": wilson(int(flagged.sum()), len(flagged)),
        "flagged_low_confidence_rate": round(float(review.low_confidence(probabilities).mean()), 4),
        "flagged_benign_alert_rate": round(float(review.benign_alerts(probabilities).mean()), 4),
        "flagged_ood_rate": round(float(np.mean(review.unlike_training(ood))), 4),
        "misclassified": int(wrong.sum()),
        "misclassified_flagged": int((wrong & flagged).sum()),
    }
    log(
        f"held-out: acc {result['heldout']['accuracy']:.4f}, macro-F1 {result['heldout']['f1_macro']:.4f}, "
        f"Benign recall {result['heldout']['per_class_recall']['Benign']:.4f}, ECE {result['heldout']['ece']:.4f}, "
        f"flagged {flagged.mean():.3f}, misclassified {wrong.sum()} of which flagged {(wrong & flagged).sum()}"
    )

    target_mean, target_std = od_statistics(reference)
    shortcuts = {}
    for name, change in (
        ("greyscale", greyscale),
        ("stain-normalised", lambda im: stain_normalise(im, target_mean, target_std)),
        ("corner label masked", mask_corner),
    ):
        changed = model.predict_proba([change(im) for im in images])
        shortcuts[name] = {
            "accuracy": round(float((changed.argmax(1) == truth).mean()), 4),
            "benign_recall": round(float((changed.argmax(1)[truth == 0] == 0).mean()), 4),
            "macro_f1": round(float(f1_score(truth, changed.argmax(1), average="macro")), 4),
        }
        log(f"shortcut test {name}: {shortcuts[name]}")
    result["shortcut_tests"] = shortcuts

    # Not this laboratory's smears: generated pictures, altered held-out smears (5 per class) and real pictures.
    picks = [int(i) for label in range(4) for i in np.flatnonzero(truth == label)[:5]]
    foreign = (
        generated_images(per_kind=10, seed=0) + altered_smears([images[i] for i in picks], seed=0) + library_images()
    )
    foreign_predictions = model.predict([image for _, image in foreign])
    by_kind: dict[str, list[bool]] = {}
    for (kind, _), prediction in zip(foreign, foreign_predictions, strict=True):
        by_kind.setdefault(kind, []).append(prediction.needs_review)
    foreign_flags = np.array([p.needs_review for p in foreign_predictions])
    foreign_ood = np.array([p.ood_score for p in foreign_predictions], dtype=float)
    foreign_confidence = np.array([p.confidence for p in foreign_predictions])
    own_confidence = probabilities.max(1)
    labels_ood = np.r_[np.zeros(len(ood)), np.ones(len(foreign_ood))]
    result["foreign"] = {
        "images": len(foreign),
        "flagged_rate": round(float(foreign_flags.mean()), 4),
        "flagged_ci95": wilson(int(foreign_flags.sum()), len(foreign_flags)),
        "flagged_by_kind": {kind: round(float(np.mean(flags)), 3) for kind, flags in by_kind.items()},
        "auroc_ood_score": round(float(roc_auc_score(labels_ood, np.r_[ood, foreign_ood])), 4),
        "auroc_max_softmax": round(float(roc_auc_score(labels_ood, -np.r_[own_confidence, foreign_confidence])), 4),
        "predicted_as": {
            name: int(sum(p.predicted == i for p in foreign_predictions)) for i, name in enumerate(CLASS_NAMES)
        },
        "mean_confidence": round(float(foreign_confidence.mean()), 4),
    }
    log(
        f"foreign: flagged {foreign_flags.mean():.3f}; by kind {result['foreign']['flagged_by_kind']}; "
        f"AUROC OOD {result['foreign']['auroc_ood_score']}, max-softmax {result['foreign']['auroc_max_softmax']}"
    )

    batch = list(images[:64])
    model.predict(batch[:4])
    timer = time.perf_counter()
    model.predict(batch)
    result["speed"] = {
        "ms_per_image": round((time.perf_counter() - timer) / len(batch) * 1000, 2),
        "threads": torch.get_num_threads(),
        "device": model.device_name,
    }
    result["evaluation_seconds"] = round(time.perf_counter() - started, 1)
    return result
