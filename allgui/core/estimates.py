"""How long a training will take, said before it starts: recorded per-image costs and the phases of a retraining.

The figures come from the manifests of models trained before (a model records its fit time); the constants for
the steps around training only set each phase's share of the progress bar.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from allgui.core.models.registry import KINDS, setting_value
from allgui.core.models.run_record import RunRecord
from allgui.core.progress import Phase

# Seconds per image of the steps around the training itself, measured on a two-core CPU. They only set each phase's
# share of the bar; time left always comes from the rate measured in the phase.
HASH_SECONDS = 0.003  # hashing and grouping, every image of the folder
READ_SECONDS = 0.002  # decoding and resizing a training image
CALIBRATE_SECONDS = 0.012  # an SE-CNN's passes over its training images after the last epoch (thresholds, OOD)
EVALUATE_SECONDS = 0.012  # reading and classifying a held-out image, per model compared
UNRECORDED_SECONDS = 0.01  # training cost per image (and epoch) of a kind with no recorded training time
EPOCH_KINDS = tuple(kind for kind, info in KINDS.items() if info.trains_in_epochs)


@dataclass(frozen=True)
class EpochCost:
    """Seconds one training image costs per epoch, recorded when a model of this kind was trained."""

    seconds: float
    image_size: int
    source: str  # says where the figure comes from, for the user


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def recorded_epoch_cost(manifests: Iterable[Mapping[str, Any]], kind: str) -> EpochCost | None:
    """From the first manifest of ``kind`` (callers put models trained on this computer first) that recorded its
    training time: fit seconds / (training images x epochs run), at its input size. None when none did."""
    if kind not in EPOCH_KINDS:
        return None
    network_at = KINDS[kind].network_at or ()
    for manifest in manifests:
        if manifest.get("kind") != kind:
            continue
        fit = manifest.get("fit") if isinstance(manifest.get("fit"), Mapping) else {}
        options = manifest.get("options") if isinstance(manifest.get("options"), Mapping) else {}
        if network_at:  # only its SE-CNN part trains for epochs, sized by its own options
            for key in network_at:
                fit = fit.get(key) if isinstance(fit.get(key), Mapping) else {}
            size = _positive(setting_value(kind, options, "image_size"))
        else:
            sizes = manifest.get("input_size")
            size = _positive(sizes[0]) if isinstance(sizes, list) and sizes else None
        seconds, epochs = _positive(fit.get("fit_seconds")), _positive(fit.get("epochs_run"))
        images = _positive(RunRecord.read(manifest).training.train_images)
        if None in (size, seconds, epochs, images):
            continue
        assert size is not None and seconds is not None and epochs is not None and images is not None
        device = str(fit.get("device") or "an unrecorded device")
        return EpochCost(
            seconds / (images * epochs),
            int(size),
            f"recorded when {manifest.get('id', 'a model')} was trained: {int(epochs)} epochs on {int(images)} "
            f"images in {seconds:.0f} s on {device}",
        )
    return None


def estimate_training(images: int, epochs: int, image_size: int, cost: EpochCost) -> float:
    """Seconds to train on ``images`` images for ``epochs`` epochs: images x epochs x the recorded per-image cost,
    scaled by the pixel count (a convolution's work grows with it)."""
    return max(0, images) * max(0, epochs) * cost.seconds * (image_size / cost.image_size) ** 2


def duration_text(seconds: float) -> str:
    """``about 40 s``, ``about 15 min``, ``about 1 h 10 min``."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def estimate_text(
    kind: str,
    images: int,
    epochs: int,
    image_size: int,
    cost: EpochCost | None,
    device: str,
    around_seconds: float = 0.0,
) -> str:
    """What the user reads before a training starts: the estimate, how it was made, and that it is one.

    ``around_seconds``: the rough time of the steps before and after the epochs (checking, evaluating).
    """
    if cost is None:
        return (
            "No training time is recorded for this kind of model, so there is no estimate; once training starts, "
            "the next page shows the measured rate and the time left."
        )
    seconds = estimate_training(images, epochs, image_size, cost)
    part = " for its SE-CNN part" if KINDS[kind].network_at else ""
    gpu = " A GPU (cuda) is usually much faster." if device == "cuda" else ""
    around = (
        f" Checking the images before and evaluating after add {duration_text(around_seconds)}."
        if around_seconds >= 1
        else ""
    )
    return (
        f"Estimated training time{part}: {duration_text(seconds)} ({images} images x {epochs} epochs x "
        f"{1000 * cost.seconds * (image_size / cost.image_size) ** 2:.1f} ms per image and epoch at {image_size} px; "
        f"{cost.source}).{around} This is an estimate, not a measurement: another computer or other work running "
        f"alongside changes it, and early stopping may end the training sooner.{gpu} The next page measures the real "
        "rate."
    )


def training_phases(
    kind: str, images: int, test_fraction: float, epochs: int, image_size: int, cost: EpochCost | None, models: int
) -> tuple[Phase, ...]:
    """The phases of a retraining with their estimated seconds as weights: check the images, read the training
    images, train, calibrate (an SE-CNN picks its checkpoint and fits its review thresholds after the last epoch:
    half a minute on 2,300 images, when the bar used to sit at 100%), evaluate ``models`` models (new and active)
    on the held-out images."""
    held_out = round(images * test_fraction)
    train = max(1, images - held_out)
    epochs = epochs if kind in EPOCH_KINDS else 1
    per_epoch = cost.seconds * (image_size / cost.image_size) ** 2 if cost is not None else UNRECORDED_SECONDS
    training = train * epochs * per_epoch
    calibrating = train * CALIBRATE_SECONDS if kind in EPOCH_KINDS else 0.0  # classical kinds have no such step
    return (
        Phase("checking images", max(1e-3, images * HASH_SECONDS)),
        Phase("reading images", max(1e-3, train * READ_SECONDS)),
        Phase("training", max(1e-3, training), "steps" if kind in EPOCH_KINDS else "images"),
        Phase("calibrating", calibrating),
        Phase("evaluating", max(1e-3, held_out * EVALUATE_SECONDS * max(1, models))),
    )
