"""A model's facts from its manifest, for people: the CLI's ``models list``/``show`` and the GUI's model card.

The training and held-out figures are read through :class:`allgui.core.models.run_record.RunRecord`, which migrates
the shapes written before the schema (flat metrics, ``heldout``, ``held_out``) in memory.
"""

from __future__ import annotations

from typing import Any

from allgui.core.models.run_record import RunRecord, held_out_accuracy, held_out_metrics

__all__ = ["held_out_accuracy", "held_out_metrics", "summary_rows"]


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else "not recorded"


def summary_rows(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs: what the model is, what it was trained on, how well it did on held-out images."""
    record = RunRecord.read(manifest)
    metrics, training = record.held_out, record.training
    review = manifest.get("review") if isinstance(manifest.get("review"), dict) else {}
    rows = [
        ("Model", f"{manifest.get('title', '')} ({manifest.get('id', '')}, kind {manifest.get('kind', '')})"),
        ("Created", str(manifest.get("created", "not recorded"))),
        ("Classes", ", ".join(str(n) for n in manifest.get("class_names") or [])),
    ]
    if isinstance(manifest.get("training"), dict) and manifest["training"]:
        counts = ", ".join(f"{name} {count}" for name, count in training.counts.items())
        images = "?" if training.train_images is None else training.train_images
        data = training.data or training.data_root or "?"
        rows.append(("Trained on", f"{images} images of {data}" + (f" ({counts})" if counts else "")))
        if training.note:
            rows.append(("Note", training.note))
    if metrics:
        f1 = metrics.get("f1_macro")
        rows.append(
            (
                "Held-out accuracy",
                f"{_percent(metrics['accuracy'])} on {metrics.get('n', '?')} images"
                + (f"; macro-F1 {f1:.3f}" if isinstance(f1, int | float) else ""),
            )
        )
        recall = metrics.get("per_class_recall") or {}
        if isinstance(recall, dict) and recall:
            rows.append(("Recall per class", ", ".join(f"{k} {_percent(v)}" for k, v in recall.items())))
        measured = metrics.get("evaluated_on")
        if measured:
            rows.append(("How it was measured", str(measured)))
    else:
        rows.append(("Held-out accuracy", "not recorded in the manifest (not measured)"))
    if review:
        rows.append(("Review below confidence", str(review.get("min_confidence", "not set"))))
        if review.get("ood_threshold") is not None:
            rows.append(("Unlike training images above", str(review["ood_threshold"])))
        if review.get("benign_alert") is not None:
            rows.append(("Benign alert at", str(review["benign_alert"])))
    return rows
