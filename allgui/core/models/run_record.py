"""What a model's manifest says about how it was trained and measured: one schema, versioned, and a reader that
migrates the shapes written before it.

Schema 1 (``"run_schema": 1`` at the top of the manifest), written by every caller through :class:`RunRecord`:

- ``training``: ``data_root`` (absolute folder) or ``data`` (a public set's name), ``mapping`` (sub-folder ->
  class), ``counts`` (readable images per class in the folder), ``train_images``, ``held_out_images``,
  ``held_out_fraction`` (each class's last captures held out; 0: trained on everything), ``split``
  (``"blocks"``), ``duplicate_threshold``, ``duplicate_groups``, ``unreadable``, ``cancelled``; ``note`` and
  ``validation`` where a research script says more.
- ``metrics``: ``{"held_out": {...}}`` with :func:`allgui.core.metrics.evaluate`'s figures (``n``, ``accuracy``,
  ``f1_macro``, ``per_class_recall``, ...) and ``evaluated_on``; ``{}`` when nothing was held out. Further
  measurements (a research script's review or shortcut figures) sit beside ``held_out``.

Older manifests are read as they are and migrated in memory, never rewritten on disk (a user's manifest is theirs,
and the shipped models' files are fixed): ``allgui train`` wrote ``metrics`` flat with ``training.holdout_images``,
the retraining wizard ``metrics.held_out`` with ``training.test_images``/``test_fraction``, the shipped models
flat metrics with ``evaluation`` or ``metrics.heldout``. None of these fields is covered by the manifest's
``protected_sha256`` (:mod:`allgui.core.models.manifest`), so reading them in another shape changes no digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RUN_SCHEMA = 1
SCHEMA_KEY = "run_schema"
# Older names of the held-out count, newest first: allgui train, the wizard, the shipped default model.
_HELD_OUT_COUNT = ("held_out_images", "holdout_images", "test_images", "heldout_images")


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class TrainingInfo:
    """The manifest's ``training`` block."""

    data_root: str | None = None
    data: str | None = None  # a public data set's name (the shipped models), instead of a folder
    mapping: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    train_images: int | None = None
    held_out_images: int = 0
    held_out_fraction: float | None = None
    split: str = "blocks"
    duplicate_threshold: int | None = None
    duplicate_groups: int | None = None
    unreadable: int | None = None
    cancelled: bool = False
    note: str = ""
    validation: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The block as written: empty optional fields left out."""
        out: dict[str, Any] = {
            "data_root": self.data_root,
            "data": self.data,
            "mapping": self.mapping or None,
            "counts": self.counts,
            "train_images": self.train_images,
            "held_out_images": self.held_out_images,
            "held_out_fraction": self.held_out_fraction,
            "split": self.split,
            "duplicate_threshold": self.duplicate_threshold,
            "duplicate_groups": self.duplicate_groups,
            "unreadable": self.unreadable,
            "cancelled": self.cancelled,
            "note": self.note or None,
            "validation": self.validation or None,
        }
        return {key: value for key, value in out.items() if value is not None}

    @classmethod
    def read(cls, block: object) -> TrainingInfo:
        """Any version's ``training`` block (see the module docstring); fields of the wrong type read as absent."""
        t = _mapping(block)
        held_out = next((_int(t[key]) for key in _HELD_OUT_COUNT if _int(t.get(key)) is not None), None)
        counts = t.get("counts") if isinstance(t.get("counts"), Mapping) else t.get("per_class")

        def text(key: str) -> str | None:
            return t[key] if isinstance(t.get(key), str) else None

        return cls(
            data_root=text("data_root"),
            data=text("data"),
            mapping={str(k): str(v) for k, v in _mapping(t.get("mapping")).items()},
            counts={str(k): int(v) for k, v in _mapping(counts).items() if _int(v) is not None},
            train_images=_int(t.get("train_images", t.get("images"))),
            held_out_images=held_out or 0,
            held_out_fraction=_float(t.get("held_out_fraction", t.get("test_fraction"))),
            split=text("split") or "blocks",
            duplicate_threshold=_int(t.get("duplicate_threshold")),
            duplicate_groups=_int(t.get("duplicate_groups")),
            unreadable=_int(t.get("unreadable")),
            cancelled=t.get("cancelled") is True,
            note=text("note") or "",
            validation=text("validation") or "",
        )


@dataclass(frozen=True)
class RunRecord:
    """The manifest's ``training`` and ``metrics`` blocks, as every caller writes and reads them."""

    training: TrainingInfo
    held_out: dict[str, Any] = field(default_factory=dict)  # evaluate()'s figures + evaluated_on; {}: none
    # Measurements beside the held-out figures (a research script's review, shortcut or foreign-image figures).
    more_metrics: dict[str, Any] = field(default_factory=dict)

    def manifest_fields(self) -> dict[str, Any]:
        """What :func:`allgui.core.models.store.save_model` writes into the manifest."""
        metrics = {**({"held_out": self.held_out} if self.held_out else {}), **self.more_metrics}
        return {SCHEMA_KEY: RUN_SCHEMA, "training": self.training.to_dict(), "metrics": metrics}

    @classmethod
    def read(cls, manifest: Mapping[str, Any]) -> RunRecord:
        """Any manifest's record, migrated in memory from the older shapes (the manifest is not changed)."""
        metrics = _mapping(manifest.get("metrics"))
        held_out: dict[str, Any] = {}
        more: dict[str, Any] = {}
        if "accuracy" in metrics:  # flat: allgui train before schema 1, the shipped classical models
            held_out = {k: v for k, v in metrics.items() if k != "evaluation"}
        else:
            for key in ("held_out", "heldout"):  # the wizard and schema 1; the shipped default model
                if isinstance(metrics.get(key), Mapping) and "accuracy" in metrics[key]:
                    held_out = dict(metrics[key])
                    more = {k: v for k, v in metrics.items() if k not in (key, "evaluation")}
                    break
            else:
                more = metrics
        if held_out and "evaluated_on" not in held_out and isinstance(metrics.get("evaluation"), str):
            held_out["evaluated_on"] = metrics["evaluation"]
        return cls(TrainingInfo.read(manifest.get("training")), held_out, more)

    @property
    def accuracy(self) -> float | None:
        return _float(self.held_out.get("accuracy"))


def held_out_metrics(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics measured on held-out images, whichever shape the manifest uses ({} when none were)."""
    return RunRecord.read(manifest).held_out


def held_out_accuracy(manifest: Mapping[str, Any]) -> float | None:
    return RunRecord.read(manifest).accuracy
