"""Model kinds by name, imported lazily so that listing kinds never imports torch."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from allgui.core.models.base import Classifier


@dataclass(frozen=True)
class KindInfo:
    kind: str
    target: str  # "module:Class"
    title: str
    # The colour baseline exists to measure the colour shortcut; technicians never classify with it.
    offered: bool = True
    needs_torch: bool = False
    # Scores how unlike its training images an image is: its manifest must then hold a threshold for that score.
    scores_unfamiliar: bool = False
    # Training time grows with the number of epochs (a network); the others fit once.
    trains_in_epochs: bool = False


KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            "secnn",
            "allgui.core.models.secnn:SECNNClassifier",
            "SE-CNN",
            needs_torch=True,
            scores_unfamiliar=True,
            trains_in_epochs=True,
        ),
        KindInfo("svm", "allgui.core.models.classical:SVMClassifier", "SVM (PCA + SMOTE + grid search)"),
        KindInfo("rf", "allgui.core.models.classical:RFClassifier", "Random Forest (augmentation + PCA + SMOTE)"),
        KindInfo(
            "cnn-hash-svm",
            "allgui.core.models.cnn_hash_svm:CNNHashSVMClassifier",
            "SE-CNN features + hash code + SVM",
            needs_torch=True,
            trains_in_epochs=True,
        ),
        KindInfo(
            "color-baseline",
            "allgui.core.models.classical:ColorBaselineClassifier",
            "Colour-only baseline (shortcut detector)",
            offered=False,
        ),
    )
}


class UnknownKindError(ValueError):
    """A model kind that is not one of :data:`KINDS`."""


def kind_info(kind: str) -> KindInfo:
    try:
        return KINDS[kind]
    except KeyError:
        raise UnknownKindError(f"unknown model kind {kind!r}; known kinds: {', '.join(KINDS)}") from None


def kinds(offered_only: bool = False) -> list[str]:
    return [kind for kind, info in KINDS.items() if info.offered or not offered_only]


def classifier_class(kind: str) -> type[Classifier]:
    module_name, _, class_name = kind_info(kind).target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Classifier)):
        raise TypeError(f"{kind_info(kind).target} is not a Classifier")
    return cls


def create(kind: str, **options: Any) -> Classifier:
    return classifier_class(kind)(**options)
