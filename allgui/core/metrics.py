"""Evaluation metrics over the four classes, the same for every model and every caller."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from allgui.core.classes import CLASS_NAMES

LABELS = list(range(len(CLASS_NAMES)))


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Gap between confidence and accuracy, averaged over equal-width confidence bins weighted by their size."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


def evaluate(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Accuracy, weighted (as the study reports) and macro precision/recall/F1, per-class recall, confusion matrix.

    Weighted averages follow the class sizes of the test set, so a model can look good by doing well on the big
    classes; macro averages and per-class recall show what happens to the small ones (Benign).
    """
    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    y_pred = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, dtype=int)
    result: dict[str, Any] = {"n": int(len(y_true)), "accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("weighted", "macro"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=LABELS, average=average, zero_division=0
        )
        result[f"precision_{average}"] = float(precision)
        result[f"recall_{average}"] = float(recall)
        result[f"f1_{average}"] = float(f1)
    _, recall, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=LABELS, average=None, zero_division=0
    )
    result["per_class_recall"] = {name: float(recall[i]) for i, name in enumerate(CLASS_NAMES)}
    result["support"] = {name: int(support[i]) for i, name in enumerate(CLASS_NAMES)}
    result["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=LABELS).tolist()
    result["ece"] = expected_calibration_error(y_true, probabilities)
    return result
