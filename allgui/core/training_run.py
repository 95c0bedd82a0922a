"""One headless training run: a labelled folder -> hold out each class's last captures -> train -> evaluate (and
score another model on the same held-out images) -> the record every caller saves.

``allgui train``, the retraining wizard, the comparison runner and the research scripts all train through here, so
the held-out rule, the evaluation and the manifest's ``training``/``metrics`` blocks
(:class:`allgui.core.models.run_record.RunRecord`) are the same wherever a model comes from. Progress is reported
over the phases of :func:`allgui.core.estimates.training_phases`; a cancel stops the run, except that a request with
``keep_on_cancel`` keeps the model's best checkpoint so far when training is cancelled (the CLI's Ctrl-C).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from allgui.core.classes import CLASS_NAMES
from allgui.core.dataset import PreparedData, load_labelled
from allgui.core.duplicates import DEFAULT_THRESHOLD
from allgui.core.estimates import training_phases
from allgui.core.metrics import evaluate
from allgui.core.models import registry
from allgui.core.models.base import Classifier
from allgui.core.models.run_record import RunRecord, TrainingInfo
from allgui.core.models.store import ModelStore, save_model
from allgui.core.progress import (
    Cancelled,
    CancelToken,
    LogCallback,
    Phase,
    ProgressCallback,
    ProgressModel,
    ProgressState,
    check,
    fit_progress,
)
from allgui.core.splits import block_split

EVALUATE_CHUNK = 32  # held-out images read and scored at a time, so that evaluating shows progress of its own
EPOCH_OF = re.compile(r"epoch (\d+)/(\d+):")  # an SE-CNN's log line after each epoch


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (arrays as lists, anything else unknown as text)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def held_out_label(fraction: float) -> str:
    return f"block hold-out: last {fraction:.0%} of captures per class"


class HeldOutImages:
    """Held-out images, decoded once for each way models read their files (``Classifier.decode_draft``), so that
    a second model scored on them costs only its predictions."""

    def __init__(self, paths: Sequence[Path], labels: np.ndarray, cancel: CancelToken | None = None) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels)
        self.cancel = cancel
        self._decoded: dict[tuple[int, int] | None, list[Image.Image]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def score(self, model: Classifier, on_chunk: Callable[[int], None] | None = None) -> tuple[np.ndarray, float]:
        """``model``'s probabilities, a chunk at a time (``on_chunk(images done)`` after each), and the seconds
        its predictions took (decoding not counted)."""
        images = self._decoded.setdefault(model.decode_draft, [])
        parts, seconds = [], 0.0
        for begin in range(0, len(self.paths), EVALUATE_CHUNK):
            check(self.cancel)
            end = min(len(self.paths), begin + EVALUATE_CHUNK)
            if len(images) < end:
                images.extend(model.read(path) for path in self.paths[len(images) : end])
            started = time.perf_counter()
            parts.append(model.predict_proba(images[begin:end]))
            seconds += time.perf_counter() - started
            if on_chunk is not None:
                on_chunk(end)
        return (np.concatenate(parts) if parts else np.zeros((0, len(CLASS_NAMES)))), seconds


@dataclass
class FitOutcome:
    classifier: Classifier
    summary: dict[str, Any]  # the fit's summary, as plain JSON types
    seconds: float
    cancelled: bool = False  # stopped early; the classifier holds its best checkpoint so far


def fit_classifier(
    kind: str,
    options: Mapping[str, Any],
    data: PreparedData,
    indices: np.ndarray,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    log: LogCallback | None = None,
    keep_on_cancel: bool = False,
) -> FitOutcome:
    """Create a ``kind`` classifier with ``options`` and fit it on the images ``indices`` of ``data``."""
    dataset = data.dataset
    model = registry.create(kind, **options)
    started = time.perf_counter()
    cancelled = False
    try:
        summary = model.fit(
            [dataset.paths[i] for i in indices],
            dataset.labels[indices],
            groups=data.group_ids[indices],
            progress=progress,
            cancel=cancel,
            log=log,
        )
    except Cancelled:
        if not keep_on_cancel:
            raise
        cancelled = True
        summary = dict(getattr(model, "fit_summary", {}) or {}, cancelled=True)
    return FitOutcome(model, jsonable(summary), time.perf_counter() - started, cancelled)


@dataclass(frozen=True)
class TrainingRequest:
    kind: str
    data_root: Path
    # Full options (build them with registry.training_options: an SE-CNN starts from the shipped recipe).
    options: Mapping[str, Any] = field(default_factory=dict)
    mapping: Mapping[str, str] | None = None  # sub-folder -> class name, where the names do not say it
    # Share of each class's last captures held out to measure the model (block_split); 0: train on everything.
    held_out_fraction: float = 0.15
    duplicate_threshold: int = DEFAULT_THRESHOLD
    compare_with: str | None = None  # id or folder of a model scored on the same held-out images (the active one)
    keep_on_cancel: bool = False  # a cancelled training keeps the best checkpoint instead of raising Cancelled


@dataclass(frozen=True)
class Comparison:
    """Another model (the active one) on the same held-out images."""

    title: str
    metrics: dict[str, Any]
    training: TrainingInfo  # what it was trained on, to say whether it saw these images


@dataclass
class TrainingResult:
    request: TrainingRequest
    classifier: Classifier
    summary: dict[str, Any]
    fit_seconds: float
    metrics: dict[str, Any]  # the held-out figures (evaluate()); {} when nothing was held out or evaluated
    record: RunRecord  # the manifest's training and metrics blocks
    data: PreparedData  # the checked images, for callers that measure more on the same split
    train_indices: np.ndarray
    held_out_indices: np.ndarray
    cancelled: bool = False
    compared: Comparison | None = None


def default_phases(request: TrainingRequest, images: int = 1000) -> tuple[Phase, ...]:
    epochs = int(registry.setting_value(request.kind, request.options, "epochs", 1))
    size = int(registry.setting_value(request.kind, request.options, "image_size", 64))
    models = 2 if request.compare_with else 1
    return training_phases(request.kind, images, request.held_out_fraction, epochs, size, None, models)


def run_training(
    request: TrainingRequest,
    *,
    store: ModelStore | None = None,
    phases: tuple[Phase, ...] | None = None,
    on_state: Callable[[ProgressState], None] | None = None,
    cancel: CancelToken | None = None,
    log: LogCallback | None = None,
) -> TrainingResult:
    """Run ``request``: check and group the images, hold out, train, evaluate, and score
    ``request.compare_with`` (loaded from ``store``, a :class:`~allgui.core.models.store.ModelStore`) on the same
    held-out images. Raises :class:`Cancelled` (except as ``keep_on_cancel`` says) and the loading errors of
    :func:`allgui.core.dataset.load_labelled`; a model to compare with that fails to load is logged and left out."""
    say = log or (lambda _: None)
    tracker = ProgressModel(phases or default_phases(request), on_state)
    tracker.begin("checking images", message="hashing and grouping the images…")
    data = load_labelled(
        request.data_root,
        request.mapping,
        request.duplicate_threshold,
        progress=tracker.callback("checking images"),
        cancel=cancel,
    )
    dataset = data.dataset
    if request.held_out_fraction > 0:
        train_idx, test_idx = block_split(dataset.labels, dataset.numbers, data.group_ids, request.held_out_fraction)
    else:
        train_idx, test_idx = np.arange(len(dataset)), np.zeros(0, dtype=int)
    say(
        f"{len(dataset)} images ({', '.join(f'{k} {v}' for k, v in dataset.counts().items())}); "
        f"training on {len(train_idx)}, holding out {len(test_idx)} later captures"
    )
    tracker.begin("reading images", total=len(train_idx), message="decoding the training images")

    def fit_log(line: str) -> None:
        say(line)
        epoch = EPOCH_OF.match(line)
        if (epoch and epoch.group(1) == epoch.group(2)) or line.startswith("early stop"):
            # After the last epoch the SE-CNN still picks its checkpoint and fits its review thresholds.
            tracker.note("calibrating", "choosing the best checkpoint and fitting the review thresholds…")

    fitted = fit_classifier(
        request.kind,
        request.options,
        data,
        train_idx,
        progress=fit_progress(tracker, len(train_idx), "reading images", "training"),
        cancel=cancel,
        log=fit_log,
        keep_on_cancel=request.keep_on_cancel,
    )
    # A run that keeps its checkpoint on cancel evaluates what it has: the token may already be set.
    evaluation_cancel = None if request.keep_on_cancel else cancel
    check(evaluation_cancel)
    held_out = HeldOutImages([dataset.paths[i] for i in test_idx], dataset.labels[test_idx], evaluation_cancel)
    compare = request.compare_with if store is not None and not fitted.cancelled else None
    metrics: dict[str, Any] = {}
    compared: Comparison | None = None
    if len(held_out):
        total = len(held_out) * (2 if compare else 1)
        tracker.begin("evaluating", total=total, message="the new model on the held-out images")
        metrics = _evaluate_new(fitted, held_out, tracker, total)
        if compare:
            compared = _compare(store, compare, held_out, tracker, total, cancel, say)
    tracker.finish("trained and evaluated")
    training = TrainingInfo(
        data_root=str(Path(request.data_root).resolve()),
        mapping={folder: CLASS_NAMES[index] for folder, index in dataset.folder_to_class.items()},
        counts=dataset.counts(),
        train_images=int(len(train_idx)),
        held_out_images=int(len(test_idx)),
        held_out_fraction=request.held_out_fraction,
        duplicate_threshold=request.duplicate_threshold,
        duplicate_groups=len(data.groups),
        unreadable=len(data.unreadable),
        cancelled=fitted.cancelled,
    )
    held_out_figures = {**metrics, "evaluated_on": held_out_label(request.held_out_fraction)} if metrics else {}
    return TrainingResult(
        request,
        fitted.classifier,
        fitted.summary,
        round(fitted.seconds, 1),
        metrics,
        RunRecord(training, held_out_figures),
        data,
        train_idx,
        test_idx,
        fitted.cancelled,
        compared,
    )


def _evaluate_new(fitted: FitOutcome, held_out: HeldOutImages, tracker: ProgressModel, total: int) -> dict[str, Any]:
    def chunk(done: int) -> None:
        tracker.update("evaluating", done, total, f"new model, {done} of {len(held_out)} held-out images")

    try:
        probabilities, _ = held_out.score(fitted.classifier, chunk)
    except RuntimeError:
        if fitted.cancelled:  # cancelled before any checkpoint: nothing to evaluate
            return {}
        raise
    return evaluate(held_out.labels, probabilities)


def _compare(
    store: ModelStore,
    model_id: str,
    held_out: HeldOutImages,
    tracker: ProgressModel,
    total: int,
    cancel: CancelToken | None,
    log: LogCallback,
) -> Comparison | None:
    def chunk(done: int) -> None:
        tracker.update(
            "evaluating", len(held_out) + done, total, f"active model, {done} of {len(held_out)} held-out images"
        )

    try:
        tracker.note("evaluating", "loading the active model…")
        loaded = store.load(model_id)
        check(cancel)
        probabilities, _ = held_out.score(loaded.classifier, chunk)
        return Comparison(
            f"{loaded.title} ({loaded.id})",
            evaluate(held_out.labels, probabilities),
            RunRecord.read(loaded.manifest).training,
        )
    except Cancelled:
        raise
    except Exception as error:  # noqa: BLE001 - the comparison is informative; training still succeeded
        log(f"the active model could not be evaluated: {error}")
        return None


def save_result(
    result: TrainingResult,
    model_id: str,
    *,
    folder: Path | None = None,
    store: ModelStore | None = None,
    title: str | None = None,
) -> Path:
    """Save the trained model with its record into ``folder``, or as ``model_id`` in ``store``; its folder."""
    fields: dict[str, Any] = {"title": title, "record": result.record, "fit": result.summary}
    if folder is not None:
        save_model(result.classifier, folder, model_id=model_id, **fields)
        return Path(folder)
    if store is None:
        raise ValueError("save_result needs a folder or a store")
    return store.save(result.classifier, model_id, **fields).folder
