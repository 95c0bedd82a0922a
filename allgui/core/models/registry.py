"""Model kinds by name, imported lazily so that listing kinds never imports a model's libraries.

Each kind also declares what a person may change when training it (:attr:`KindInfo.settings`) and where its
SE-CNN's options live (:attr:`KindInfo.network_at`: cnn-hash-svm nests them under ``cnn``), so that the CLI, the
wizard and the comparison runner build options through :func:`training_options` and :func:`with_network_options`
without branching on the kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
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
    # Has a neural network (ONNX Runtime or torch runs it, on a GPU where there is one); trains only with torch.
    has_network: bool = False
    # Scores how unlike its training images an image is: its manifest must then hold a threshold for that score.
    scores_unfamiliar: bool = False
    # Training time grows with the number of epochs (a network); the others fit once.
    trains_in_epochs: bool = False
    # The options a person may change when training this kind (CLI flags, wizard fields).
    settings: tuple[str, ...] = ("image_size",)
    default_image_size: int = 32
    # Where the options of its SE-CNN live in its options (() at the top level); None: it has no SE-CNN.
    network_at: tuple[str, ...] | None = None
    # "module:NAME" of the options it trains with unless told otherwise ("" for its classifier's defaults).
    recipe: str = ""

    def option_path(self, name: str) -> tuple[str, ...]:
        """Where setting ``name`` lives: the network's size and length with the network's options."""
        return self.network_at if self.network_at is not None and name in NETWORK_SETTINGS else ()


# Settings that size the SE-CNN, wherever a kind keeps its SE-CNN's options.
NETWORK_SETTINGS = ("epochs", "image_size")
TORCH_SETTINGS = ("epochs", "image_size", "device")

KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            "secnn",
            "allgui.core.models.secnn:SECNNClassifier",
            "SE-CNN",
            has_network=True,
            scores_unfamiliar=True,
            trains_in_epochs=True,
            settings=TORCH_SETTINGS,
            default_image_size=96,
            network_at=(),
            recipe="allgui.core.models.secnn.options:RECIPE",
        ),
        KindInfo("svm", "allgui.core.models.classical:SVMClassifier", "SVM (PCA + SMOTE + grid search)"),
        KindInfo("rf", "allgui.core.models.classical:RFClassifier", "Random Forest (augmentation + PCA + SMOTE)"),
        KindInfo(
            "cnn-hash-svm",
            "allgui.core.models.cnn_hash_svm:CNNHashSVMClassifier",
            "SE-CNN features + hash code + SVM",
            has_network=True,
            trains_in_epochs=True,
            settings=TORCH_SETTINGS,
            default_image_size=64,
            network_at=("cnn",),
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


def cannot_train(kind: str) -> str | None:
    """Why ``kind`` cannot be trained here (a network without torch: the laboratory bundle), or None."""
    from allgui.core.models import runtime

    if kind_info(kind).has_network and not runtime.torch_installed():
        return f"{kind_info(kind).title} needs torch to train; {runtime.FULL_INSTALL}"
    return None


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


def kinds_taking(setting: str) -> list[str]:
    return [kind for kind, info in KINDS.items() if setting in info.settings]


def _resolve(target: str) -> Any:
    module_name, _, name = target.partition(":")
    return getattr(importlib.import_module(module_name), name)


def _put(options: dict[str, Any], path: tuple[str, ...], values: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with ``values`` merged in at ``path`` (nested dictionaries copied, never shared)."""
    if not path:
        return {**options, **values}
    head, rest = path[0], path[1:]
    inner = options.get(head)
    return {**options, head: _put(dict(inner) if isinstance(inner, Mapping) else {}, rest, values)}


def with_settings(kind: str, options: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with each setting the kind takes put where it lives; None values and settings the kind does not
    take (a device for an SVM) are left out."""
    info = kind_info(kind)
    merged = dict(options)
    for name, value in settings.items():
        if value is not None and name in info.settings:
            merged = _put(merged, info.option_path(name), {name: value})
    return merged


def training_options(kind: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options a training of ``kind`` starts from (an SE-CNN: the shipped default model's recipe) with a
    person's ``settings`` applied."""
    info = kind_info(kind)
    base = dict(_resolve(info.recipe)) if info.recipe else {}
    return with_settings(kind, base, settings or {})


def setting_value(kind: str, options: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """The value of setting ``name`` in ``options``, read where the kind keeps it."""
    where: Any = options
    for key in kind_info(kind).option_path(name):
        where = where.get(key) if isinstance(where, Mapping) else None
    return where.get(name, default) if isinstance(where, Mapping) else default


def with_network_options(kind: str, options: Mapping[str, Any], network: Mapping[str, Any]) -> dict[str, Any]:
    """Apply SE-CNN options (e.g. epochs, image size sized to the hardware) where the kind keeps its SE-CNN's;
    a kind without an SE-CNN keeps its options."""
    network_at = kind_info(kind).network_at
    if not network or network_at is None:
        return dict(options)
    return _put(dict(options), network_at, network)
