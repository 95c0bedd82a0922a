"""A retrained model against the active one: a verdict from their figures on the same held-out images, and whether
the active model may have seen those images."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allgui.core.classes import CLASS_NAMES
from allgui.core.models.run_record import TrainingInfo


@dataclass(frozen=True)
class Verdict:
    kind: str  # "worse", "better", "noise" or "alone" (nothing to compare with)
    text: str


def _noise(p_new: float, p_old: float, count: int) -> float:
    """Half-width of a 95% interval for the difference of two proportions over ``count`` images each.

    The two models are scored on the same images, so this unpaired width is on the safe (wide) side: a difference
    inside it is not evidence either way. Never below one image's worth.
    """
    if count <= 0:
        return math.inf
    spread = 1.96 * math.sqrt((p_new * (1 - p_new) + p_old * (1 - p_old)) / count)
    return max(spread, 1.0 / count)


def compare_to_active(new: dict[str, Any], active: dict[str, Any] | None) -> Verdict:
    """A verdict on a retrained model against the active one, from their metrics on the same held-out images.

    Benign recall comes first: hematogones taken for blasts are this data's commonest error. A model significantly
    worse there is not worth switching to whatever its accuracy; otherwise accuracy decides, and a difference
    within chance variation on this many images says nothing.
    """
    n = int(new.get("n", 0))
    if active is None:
        return Verdict(
            "alone", f"No active model to compare with: judge the new model by its own figures on {n} held-out images."
        )
    benign = CLASS_NAMES[0]
    benign_n = int((new.get("support") or {}).get(benign, 0))
    b_new = float(new["per_class_recall"][benign])
    b_old = float(active["per_class_recall"][benign])
    a_new, a_old = float(new["accuracy"]), float(active["accuracy"])
    benign_margin = _noise(b_new, b_old, benign_n)
    margin = _noise(a_new, a_old, n)
    figures = (
        f"accuracy {a_new:.1%} against {a_old:.1%}; Benign recall {b_new:.1%} against {b_old:.1%} "
        f"on {benign_n} Benign images"
    )
    if b_old - b_new > benign_margin:
        return Verdict(
            "worse",
            f"The new model is worse on Benign recall than the active model ({figures}): keep the active one.",
        )
    if a_old - a_new > margin:
        return Verdict(
            "worse", f"The new model is worse overall than the active model ({figures}): keep the active one."
        )
    if a_new - a_old > margin:
        return Verdict(
            "better", f"The new model is better overall than the active model ({figures}): consider activating it."
        )
    return Verdict(
        "noise",
        f"The two models are within noise on {n} held-out images ({figures}; differences under about "
        f"{100 * margin:.0f} points of accuracy are chance): no reason to switch on these figures.",
    )


def _same_folder(a: str | Path, b: str | Path) -> bool:
    return str(a) == str(b) or Path(a).resolve() == Path(b).resolve()


def active_overlap_note(
    training: TrainingInfo | Mapping[str, Any] | None, title: str, root: str | Path, test_fraction: float
) -> str:
    """Whether the active model may have been fitted on the held-out images it is compared on (which flatters it).

    ``training``: its manifest's ``training`` block, in any schema (:class:`TrainingInfo` reads the older ones).
    """
    info = training if isinstance(training, TrainingInfo) else TrainingInfo.read(training)
    if info.data_root and _same_folder(info.data_root, root):
        if info.held_out_fraction == test_fraction and info.split == "blocks":
            return (
                f"{title} was trained on this folder with the same held-out part, so it did not see these images "
                "(as long as the folder has not changed since)."
            )
        return (
            f"{title} was trained on this folder with another held-out part: some of these held-out images were "
            "among its training images, which flatters it."
        )
    if info.data:
        details = [f"{info.train_images} images"] if info.train_images else []
        if info.validation:
            details.append(f"checkpoint and review thresholds fitted on {info.validation}")
        said = f" ({'; '.join(details)})" if details else ""
        return (
            f"{title} was trained on every image of the public {info.data} set{said}. If these images come from that "
            "set, it has seen all of them and may have been tuned on these very held-out images, so this comparison "
            "flatters it."
        )
    where = f" (trained on {info.data_root})" if info.data_root else ""
    return (
        f"{title}{where} may have been trained, or had its checkpoint and review thresholds fitted, on some of these "
        "held-out images; if so, the comparison flatters it."
    )
