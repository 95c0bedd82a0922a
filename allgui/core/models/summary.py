"""A model's facts from its manifest, for people: the CLI's ``models list``/``show`` and the GUI's model card.

Shipped models, ``allgui train`` and the retraining wizard have laid the held-out metrics out three ways (flat,
under ``heldout``, under ``held_out``); :func:`held_out_metrics` reads each where it is.
"""

from __future__ import annotations

from typing import Any


def held_out_metrics(manifest: dict[str, Any]) -> dict[str, Any]:
    """The metrics measured on held-out images, whichever layout the manifest uses ({} when none were)."""
    metrics = manifest.get("metrics")
    if not isinstance(metrics, dict):
        return {}
    if "accuracy" in metrics:
        return metrics
    for key in ("held_out", "heldout"):
        if isinstance(metrics.get(key), dict) and "accuracy" in metrics[key]:
            return metrics[key]
    return {}


def held_out_accuracy(manifest: dict[str, Any]) -> float | None:
    value = held_out_metrics(manifest).get("accuracy")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else "not recorded"


def summary_rows(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs: what the model is, what it was trained on, how well it did on held-out images."""
    metrics = held_out_metrics(manifest)
    training = manifest.get("training") if isinstance(manifest.get("training"), dict) else {}
    review = manifest.get("review") if isinstance(manifest.get("review"), dict) else {}
    rows = [
        ("Model", f"{manifest.get('title', '')} ({manifest.get('id', '')}, kind {manifest.get('kind', '')})"),
        ("Created", str(manifest.get("created", "not recorded"))),
        ("Classes", ", ".join(str(n) for n in manifest.get("class_names") or [])),
    ]
    if training:
        per_class = training.get("per_class") or training.get("counts") or {}
        counts = (
            ", ".join(f"{name} {count}" for name, count in per_class.items()) if isinstance(per_class, dict) else ""
        )
        images = training.get("images", training.get("train_images", "?"))
        data = training.get("data", training.get("data_root", "?"))
        rows.append(("Trained on", f"{images} images of {data}" + (f" ({counts})" if counts else "")))
        if training.get("note"):
            rows.append(("Note", str(training["note"])))
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
        measured = metrics.get("evaluation") or metrics.get("evaluated_on")
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
