"""Training of the SE-CNN: the part of :class:`~allgui.core.models.secnn.classifier.SECNNClassifier` that fits it.

Training decodes every image once into memory at the input size, augments batches (:mod:`.augmentation`), balances
the classes in the loss, keeps a weight average (EMA, BatchNorm statistics included) and keeps the EMA checkpoint
with the lowest loss on an internal validation part: the last capture blocks of each class with duplicate groups
kept whole. That validation part also fits the temperature, the OOD thresholds and the review policy.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch
from torch import nn

from allgui.core.metrics import expected_calibration_error
from allgui.core.models import calibration
from allgui.core.models.secnn.augmentation import _augmented_batches, _EpochBatches, augmenter, stain_statistics
from allgui.core.models.secnn.net import SECNN
from allgui.core.models.secnn.preparation import describe
from allgui.core.models.secnn.torch_engine import infer, normalise
from allgui.core.models.torch_device import choose_device, device_label, fallback_to_cpu, is_cuda_failure
from allgui.core.progress import Cancelled, CancelToken, LogCallback, ProgressCallback, check, no_progress

if TYPE_CHECKING:
    from allgui.core.models.secnn.classifier import SECNNClassifier


class EpochRecord(TypedDict):
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float


class FitSummary(TypedDict, total=False):
    """What :meth:`SECNNTraining.fit` returns (and the model store keeps as the manifest's ``fit``)."""

    history: list[EpochRecord]
    best_epoch: int
    epochs_run: int
    cancelled: bool
    temperature: float
    review: dict[str, Any]
    device: str
    options: dict[str, Any]
    validation_images: int
    # with a validation part
    val_accuracy: float
    val_ece: float
    val_flagged: float
    fit_seconds: float


def _load(
    model: SECNNClassifier,
    paths: Sequence[Path],
    progress: ProgressCallback,
    cancel: CancelToken | None,
    total: int,
) -> torch.Tensor:
    """Every image decoded once, at the input size: uint8 (N, 3, S, S)."""
    out = torch.empty((len(paths), 3, model.image_size, model.image_size), dtype=torch.uint8)
    for index, path in enumerate(paths):
        check(cancel)
        out[index] = torch.from_numpy(model.pixels(model.read(path))).permute(2, 0, 1)
        if index % 16 == 0 or index == len(paths) - 1:
            progress(index + 1, total, f"reading images {index + 1}/{len(paths)}")
    return out


def _validation_split(model: SECNNClassifier, labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from allgui.core import splits

    fraction = float(model.options.val_fraction)
    counts = np.bincount(labels, minlength=4)
    if fraction <= 0 or counts[counts > 0].min() < 4:
        everything = np.arange(len(labels))
        return everything, np.zeros(0, dtype=int)
    if model.options.val_split == "random":
        return splits.stratified_group_split(labels, groups, test_fraction=fraction, seed=model.options.seed)
    # Callers pass images in capture order within each class (LabelledDataset sorts by file number), so the
    # position stands in for the capture number: the validation part is the last block of each class.
    return splits.block_split(labels, np.arange(len(labels)), groups, test_fraction=fraction)


def fit(
    model: SECNNClassifier,
    paths: Sequence[Path],
    labels: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    log: LogCallback | None = None,
) -> FitSummary:
    progress = progress or no_progress
    log = log or (lambda line: None)
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    if len(paths) != len(labels) or len(labels) == 0:
        raise ValueError("fit needs one label per image and at least one image")
    threads = torch.get_num_threads()
    if int(model.options.threads) > 0:
        torch.set_num_threads(int(model.options.threads))
    try:
        return _fit(model, paths, labels, groups, progress, cancel, log)
    finally:
        torch.set_num_threads(threads)


def _fit(
    model: SECNNClassifier,
    paths: Sequence[Path],
    labels: np.ndarray,
    groups: np.ndarray,
    progress: ProgressCallback,
    cancel: CancelToken | None,
    log: Callable[[str], None],
) -> FitSummary:
    started = time.perf_counter()
    device = choose_device(model.options.device, log)
    train_idx, val_idx = _validation_split(model, labels, groups)
    batch = int(model.options.batch_size)
    steps = math.ceil(len(train_idx) / batch)
    total = len(paths) + int(model.options.epochs) * steps
    images = _load(model, paths, progress, cancel, total)
    log(
        f"{len(train_idx)} training and {len(val_idx)} validation images at {model.image_size} px "
        f"on {device_label(device)}"
    )
    try:
        summary = _train(model, device, images, labels, train_idx, val_idx, progress, cancel, log, len(paths), total)
    except Cancelled:
        raise
    except Exception as error:
        if device.type != "cuda" or not is_cuda_failure(error):
            raise
        device = fallback_to_cpu(error, log)
        summary = _train(model, device, images, labels, train_idx, val_idx, progress, cancel, log, len(paths), total)
    summary["fit_seconds"] = round(time.perf_counter() - started, 1)
    model.fit_summary = summary
    return summary


def _train(
    model: SECNNClassifier,
    device: torch.device,
    images: torch.Tensor,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    progress: ProgressCallback,
    cancel: CancelToken | None,
    log: Callable[[str], None],
    done: int,
    total: int,
) -> FitSummary:
    o = model.options
    seed = int(o.seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SECNN(model.options.net_config()).to(device)
    ema = copy.deepcopy(net).eval()
    for parameter in ema.parameters():
        parameter.requires_grad_(False)
    epochs, batch = int(o.epochs), int(o.batch_size)
    steps = math.ceil(len(train_idx) / batch)
    optimiser = torch.optim.AdamW(net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=o.lr, total_steps=max(1, epochs * steps), pct_start=0.15
    )
    counts = np.bincount(labels[train_idx], minlength=4).astype(np.float64)
    class_weights = np.where(counts > 0, counts.sum() / (4 * np.maximum(counts, 1)), 0.0)
    use_loss_weights = o.balance == "loss"
    criterion = nn.CrossEntropyLoss(
        weight=torch.tensor(class_weights, dtype=torch.float32, device=device) if use_loss_weights else None,
        label_smoothing=float(o.label_smoothing),
    )
    sample_p = None
    if o.balance == "sampler":
        sample_p = 1.0 / counts[labels[train_idx]]
        sample_p /= sample_p.sum()
    batches = _EpochBatches()
    stains = stain_statistics(images[torch.from_numpy(train_idx)]) if float(o.stain_transfer) > 0 else None
    loader = _augmented_batches(images, augmenter(model.options, stains), batches, int(o.loader_workers))
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    y_all = torch.from_numpy(labels)
    history: list[EpochRecord] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_loss, best_epoch, waited, step = math.inf, 0, 0, 0
    select_idx = val_idx if len(val_idx) else train_idx

    try:
        for epoch in range(1, epochs + 1):
            net.train()
            if sample_p is None:
                order = rng.permutation(train_idx)
            else:
                order = rng.choice(train_idx, size=len(train_idx), replace=True, p=sample_p)
            seen, loss_sum, correct = 0, 0.0, 0
            batches.batches = [order[start : start + batch] for start in range(0, len(order), batch)]
            for index, augmented in enumerate(loader):
                check(cancel)
                rows = batches.batches[index]
                xb = normalise(augmented, model.options.normalise == "image").to(device, non_blocking=True)
                yb = y_all[rows].to(device)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    logits = net(xb)
                    loss = criterion(logits.float(), yb)
                optimiser.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                schedule.step()
                step += 1
                _ema_update(ema, net, min(float(o.ema_decay), (1 + step) / (10 + step)))
                seen += len(rows)
                loss_sum += float(loss.detach()) * len(rows)
                correct += int((logits.argmax(1) == yb).sum())
                done += 1
                progress(done, total, f"epoch {epoch}/{epochs}, batch {index + 1}/{steps}")
            val_logits, _ = infer(model, images[select_idx], ema)
            val_labels = labels[select_idx]
            val_loss = calibration.nll(val_logits, val_labels, 1.0)
            val_acc = float((val_logits.argmax(1) == val_labels).mean())
            record: EpochRecord = {
                "epoch": epoch,
                "train_loss": round(loss_sum / max(seen, 1), 5),
                "train_acc": round(correct / max(seen, 1), 5),
                "val_loss": round(val_loss, 5),
                "val_acc": round(val_acc, 5),
            }
            history.append(record)
            improved = val_loss < best_loss - 1e-4
            if improved:
                best_loss, best_epoch, waited = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in ema.state_dict().items()}
            else:
                waited += 1
            log(
                f"epoch {epoch}/{epochs}: loss {record['train_loss']:.4f}, acc {record['train_acc']:.3f}, "
                f"val loss {val_loss:.4f}, val acc {val_acc:.3f}{' *' if improved else ''}"
            )
            if waited >= int(o.patience):
                log(f"early stop: no better validation loss for {waited} epochs")
                break
    except Cancelled:
        # Keep the best checkpoint so a caller can still save a usable model.
        if best_state is not None:
            _finish(model, ema, best_state, images, labels, train_idx, val_idx)
            model.fit_summary = _summary(model, history, best_epoch, labels, val_idx, images, cancelled=True)
            log(f"cancelled: kept the checkpoint of epoch {best_epoch}")
        raise
    assert best_state is not None
    _finish(model, ema, best_state, images, labels, train_idx, val_idx)
    return _summary(model, history, best_epoch, labels, val_idx, images, cancelled=False)


@torch.no_grad()
def _ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    for average, current in zip(ema.state_dict().values(), net.state_dict().values(), strict=True):
        if average.dtype.is_floating_point:
            average.mul_(decay).add_(current.detach(), alpha=1.0 - decay)
        else:
            average.copy_(current)


def _finish(
    model: SECNNClassifier,
    net: SECNN,
    state: dict[str, torch.Tensor],
    images: torch.Tensor,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
) -> None:
    """Install the chosen checkpoint, then fit the temperature, OOD scores and review policy."""
    net.load_state_dict(state)
    model.trained_network(net)
    o = model.options
    train_logits, train_features = infer(model, images[train_idx], net)
    model.feature_ood = calibration.Mahalanobis.fit(train_features, labels[train_idx])
    model.image_ood = calibration.Mahalanobis.fit(image_statistics(images[train_idx]), labels[train_idx])
    reference = val_idx if len(val_idx) else train_idx
    if len(val_idx):
        val_logits, val_features = infer(model, images[val_idx], net)
        model.temperature = calibration.fit_temperature(val_logits, labels[val_idx])
    else:
        val_logits, val_features = train_logits, train_features
        model.temperature = 1.0
    feature_scores = model.feature_ood.score(val_features)
    image_scores = model.image_ood.score(image_statistics(images[reference]))
    model.ood_scales = (
        max(calibration.quantile_threshold(feature_scores, o.ood_quantile, o.ood_margin), 1e-6),
        max(calibration.quantile_threshold(image_scores, o.ood_quantile, o.ood_margin), 1e-6),
    )
    probabilities = calibration.softmax(val_logits, model.temperature)
    model.review = calibration.review_policy(probabilities, float(o.review_budget), float(o.benign_alert_budget))


def _summary(
    model: SECNNClassifier,
    history: list[EpochRecord],
    best_epoch: int,
    labels: np.ndarray,
    val_idx: np.ndarray,
    images: torch.Tensor,
    cancelled: bool,
) -> FitSummary:
    summary: FitSummary = {
        "history": history,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "cancelled": cancelled,
        "temperature": round(model.temperature, 4),
        "review": model.review.to_dict(),
        "device": device_label(next(model.net.parameters()).device),
        "options": model.options.to_dict(),
        "validation_images": len(val_idx),
    }
    if len(val_idx):
        logits, features = infer(model, images[val_idx], model.net)
        probabilities = calibration.softmax(logits, model.temperature)
        truth = labels[val_idx]
        ood = np.maximum(
            model.feature_ood.score(features) / model.ood_scales[0],
            model.image_ood.score(image_statistics(images[val_idx])) / model.ood_scales[1],
        )
        flagged = model.review.flags(probabilities, ood)
        summary.update(
            val_accuracy=round(float((probabilities.argmax(1) == truth).mean()), 4),
            val_ece=round(expected_calibration_error(truth, probabilities), 4),
            val_flagged=round(float(flagged.mean()), 4),
        )
    return summary


def image_statistics(images: torch.Tensor) -> np.ndarray:
    """The image OOD score's statistics of uint8 (N, 3, S, S) images, as inference computes them
    (``preparation.describe``)."""
    pixels = images.permute(0, 2, 3, 1).numpy()
    return (
        np.stack([describe(np.ascontiguousarray(item)).statistics for item in pixels])
        if len(pixels)
        else np.zeros((0, 21))
    )
