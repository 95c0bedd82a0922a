"""The study's comparison as data: the declared experiments, their options at full and quick size, the splits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SPLIT_LABELS = {
    "blocks": "block split: last 15% of captures per class held out, duplicate groups kept whole",
    "random": "RANDOM stratified split (duplicate groups kept whole, but neighbouring captures of one session "
    "fall on both sides: optimistic, for comparison with the study only)",
}


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    title: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    quick_options: dict[str, Any] = field(default_factory=dict)
    # Drop all but the first image of every near-duplicate group from the training part before fitting.
    dedupe_training: bool = False
    study_row: str = ""  # the row of the study's table this reproduces ("" for our additions)


# SE-CNN settings sized for a two-core CPU machine (one torch thread; the full comparison takes about half an hour
# there). A 5-epoch, 32 px run reached only 74-76%: the network needs the epochs more than the pixels.
_SECNN_FULL: dict[str, Any] = {
    "image_size": 48,
    "width": 12,
    "epochs": 12,
    "patience": 5,
    "hue_jitter": 0.0,
    "threads": 1,
}
_SECNN_QUICK: dict[str, Any] = {
    "image_size": 24,
    "width": 8,
    "blocks": 2,
    "convs_per_block": 1,
    "epochs": 2,
    "batch_size": 16,
    "patience": 2,
    "hue_jitter": 0.0,
    "threads": 1,
}
_HASH_FULL: dict[str, Any] = {"cnn": dict(_SECNN_FULL)}
_HASH_QUICK: dict[str, Any] = {"cnn": _SECNN_QUICK, "C": [1.0]}

EXPERIMENTS: tuple[ExperimentSpec, ...] = (
    ExperimentSpec(
        "cnn-dedup",
        "SE-CNN, training set de-duplicated by hash",
        "secnn",
        _SECNN_FULL,
        _SECNN_QUICK,
        dedupe_training=True,
        study_row="CNN with hash-based de-duplication",
    ),
    ExperimentSpec(
        "cnn", "SE-CNN, all training images", "secnn", _SECNN_FULL, _SECNN_QUICK, study_row="CNN without de-duplication"
    ),
    ExperimentSpec(
        "svm",
        "SVM: scaling + PCA + SMOTE + grid search",
        "svm",
        {},
        {"image_size": 12, "C": [1.0, 10.0]},
        study_row="SVM (scaling, PCA, SMOTE, GridSearch)",
    ),
    ExperimentSpec(
        "cnn-hash-svm",
        "SE-CNN features + hash code + SVM",
        "cnn-hash-svm",
        _HASH_FULL,
        _HASH_QUICK,
        study_row="SVM with CNN features and hashing",
    ),
    ExperimentSpec(
        "rf",
        "Random Forest: augmentation + PCA + SMOTE",
        "rf",
        {},
        {"image_size": 12, "n_estimators": 30},
        study_row="Random Forest (augmentation, PCA, SMOTE)",
    ),
    ExperimentSpec(
        "color-baseline", "Colour statistics only (shortcut detector)", "color-baseline", {}, {"image_size": 32}
    ),
)

QUICK_IMAGES_PER_CLASS = 24


def experiment_names() -> list[str]:
    return [spec.name for spec in EXPERIMENTS]


def select(names: Sequence[str] | None) -> list[ExperimentSpec]:
    if not names:
        return list(EXPERIMENTS)
    by_name = {spec.name: spec for spec in EXPERIMENTS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
    return [by_name[n] for n in names]
