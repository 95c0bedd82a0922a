"""The SE-CNN classifier: training recipe, calibrated prediction, OOD scores and attention for one network.

Training decodes every image once into memory at the input size, augments batches with torchvision transforms
(flips, 90-degree rotations, mild scale, colour and stain jitter, occasional grey-scale and blur), balances the
classes in the loss, keeps a weight average (EMA, BatchNorm statistics included) and keeps the EMA checkpoint with
the lowest loss on an internal validation part: the last capture blocks of each class with duplicate groups kept
whole. That validation part also fits the temperature, the OOD thresholds and the review policy.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2

from allgui.core.classes import CLASS_NAMES
from allgui.core.metrics import expected_calibration_error
from allgui.core.models import calibration
from allgui.core.models.base import Attention, Classifier, ReviewPolicy
from allgui.core.models.manifest import InvalidManifest, check_options
from allgui.core.models.secnn_net import SECNN, NetConfig
from allgui.core.models.torch_device import (
    choose_device,
    cuda_failure_message,
    device_label,
    fallback_to_cpu,
    is_cuda_failure,
)
from allgui.core.progress import Cancelled, CancelToken, LogCallback, ProgressCallback, check, no_progress
from allgui.core.statefile import read_state_json

_T = TypeVar("_T")

WEIGHTS_FILE = "weights.pt"
CALIBRATION_FILE = "calibration.pt"
CONFIG_FILE = "secnn.json"

DEFAULTS: dict[str, Any] = {
    # network
    "image_size": 96,
    "width": 16,
    "blocks": 5,
    "convs_per_block": 2,
    "reduction": 8,
    "dropout": 0.3,
    "stem_stride": 1,
    # optimisation
    "epochs": 30,
    "lr": 2e-3,
    "weight_decay": 5e-4,
    "batch_size": 32,
    "patience": 8,
    "ema_decay": 0.995,
    "label_smoothing": 0.0,
    "balance": "loss",  # loss | sampler | none
    "seed": 0,
    "device": "auto",
    # CPU threads while training (0: leave torch's setting). On a busy machine 1 thread beats 2 by far: the
    # small per-image operations spend their time waiting for each other.
    "threads": 0,
    # Worker processes augmenting batches ahead of a GPU (0: augment in the training loop; the CPU-only setting,
    # where the cores are busy with the network anyway).
    "loader_workers": 0,
    # validation part inside fit: last capture blocks per class ("blocks") or random groups ("random")
    "val_fraction": 0.15,
    "val_split": "blocks",
    # input: per-image channel standardisation removes global stain tint; the corner holds the scale-bar label
    "normalise": "image",  # image | fixed
    "mask_corner": True,
    # Decode JPEG files at a reduced scale (libjpeg's DCT scaling, 1/2 to 1/8, keeping at least image_size) before
    # the resize, in training and in use alike: faster, and it drops the finest DCT coefficients, where the JPEG
    # compression of different sessions differs. Other formats are decoded at full size.
    "jpeg_draft": False,
    # Train on random crops of this size from the image_size input (0: whole images); prediction always sees the
    # whole image. Gives the network finer detail (larger image_size) at the training cost of the crop size.
    "train_crop": 0,
    # augmentation strengths
    "scale_aug": 0.5,
    "colour_jitter": 0.2,
    "hue_jitter": 0.04,
    "stain_jitter": 0.15,
    # Per-channel brightness gain (lamp, white balance), off by default: it made the network robust to such drift
    # but cost 2-3 points on the held-out blocks (gain96 and gainlow96 on the model card), so it is not shipped.
    "gain_jitter": 0.0,
    # Probability of re-staining a training image with another training image's stain (optical-density mean and
    # spread per channel, Reinhard-style), whatever its class: teaches the network to classify without the stain.
    "stain_transfer": 0.0,
    "grey_prob": 0.25,
    "blur_prob": 0.2,
    # test-time augmentation: average logits over the 8 flips/rotations
    "tta": False,
    # review policy fitting on the validation part
    "ood_quantile": 0.99,
    "ood_margin": 1.0,
    # Shares of validation images flagged: low confidence overall, and malignant calls with the highest Benign
    # probability (on later capture blocks these caught confident hematogone errors that a higher confidence
    # budget missed; training/results and the model card have the figures).
    "review_budget": 0.01,
    "benign_alert_budget": 0.02,
}

# Bottom-right box holding the microscope's scale-bar label (fractions of width and height).
CORNER_BOX = (0.16, 0.12)

# Sizes a model folder may ask for (secnn.json): a crafted width or input size would otherwise take loading or a
# batch to the machine's memory limit. The shipped networks are 96 px and width 16 (48 px, width 12).
OPTION_BOUNDS: dict[str, tuple[float, float]] = {
    "image_size": (16, 384),
    "width": (1, 64),
    "blocks": (1, 8),
    "convs_per_block": (1, 4),
    "reduction": (1, 64),
    "stem_stride": (1, 4),
    "batch_size": (1, 1024),
    "train_crop": (0, 384),
    "threads": (0, 256),
    "loader_workers": (0, 64),
}
# Activation memory grows with width x image_size^2: at most seven times the shipped network's per image.
MAX_WIDTH_PIXELS = 16 * 256 * 256


class _RandomRot90(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rot90(x, int(torch.randint(0, 4, ())), dims=(-2, -1))


class _StainJitter(nn.Module):
    """Scale and shift each channel's optical density a little: a cheap stand-in for stain variation."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = strength

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strength <= 0:
            return x
        od = -torch.log(x.clamp_min(1.0 / 255.0))
        scale = 1.0 + (torch.rand(3, 1, 1) * 2 - 1) * self.strength
        shift = (torch.rand(3, 1, 1) * 2 - 1) * self.strength * 0.1
        return torch.exp(-(od * scale + shift).clamp_min(0.0)).clamp(0.0, 1.0)


def _od_moments(od: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of optical density over the last (pixel) axis."""
    return od.mean(dim=-1), od.std(dim=-1, correction=0)


def stain_statistics(images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Per image and channel, the mean and standard deviation of optical density: (N, 2, 3) from uint8 (N, 3, S, S)."""
    out = []
    for start in range(0, len(images), chunk):
        od = calibration.optical_density(images[start : start + chunk].float() / 255.0).flatten(2)
        out.append(torch.stack(_od_moments(od), dim=1))
    return torch.cat(out) if out else torch.zeros(0, 2, 3)


class _ChannelGain(nn.Module):
    """Scale each channel's brightness by up to +-``strength``: the lamp and white balance of another session."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = strength

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strength <= 0:
            return x
        return (x * (1.0 + (torch.rand(3, 1, 1) * 2 - 1) * self.strength)).clamp(0.0, 1.0)


class _StainTransfer(nn.Module):
    """With probability ``p``, give the image the optical-density mean and spread of a random bank entry (the
    Reinhard-style normalisation of ``training.heldout.stain_normalise``, towards another image's stain)."""

    def __init__(self, p: float, bank: torch.Tensor) -> None:
        super().__init__()
        self.p, self.bank = p, bank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p <= 0 or len(self.bank) == 0 or float(torch.rand(())) >= self.p:
            return x
        target_mean, target_std = self.bank[int(torch.randint(0, len(self.bank), ()))]
        od = calibration.optical_density(x)
        mean, std = _od_moments(od.flatten(1))
        od = (od - mean[:, None, None]) / (std[:, None, None] + 1e-6) * target_std[:, None, None]
        od = od + target_mean[:, None, None]
        return ((256.0 * torch.exp(-od) - 1.0) / 255.0).clamp(0.0, 1.0)


def _dihedral(x: torch.Tensor, index: int) -> torch.Tensor:
    x = torch.rot90(x, index % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if index >= 4 else x


class _EpochBatches:
    """Batch sampler whose batches the training loop sets before each epoch (worker processes persist)."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Augmented(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, augment: nn.Module) -> None:
        self.images, self.augment = images, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.augment(self.images[index].float() / 255.0)


def _augmented_batches(images: torch.Tensor, augment: nn.Module, batches: _EpochBatches, workers: int):
    """Augmented float batches in the order of ``batches``; with workers, prepared ahead in other processes."""
    dataset = _Augmented(images, augment)
    if workers <= 0:
        return _InlineBatches(dataset, batches)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        persistent_workers=True,
        pin_memory=torch.cuda.is_available(),
    )


class _InlineBatches:
    def __init__(self, dataset: _Augmented, batches: _EpochBatches) -> None:
        self.dataset, self.batches = dataset, batches

    def __iter__(self):
        for rows in self.batches:
            yield torch.stack([self.dataset[int(i)] for i in rows])


class SECNNClassifier(Classifier):
    kind = "secnn"
    title = "SE-CNN (squeeze-and-excitation network)"

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown SE-CNN option(s): {', '.join(unknown)}")
        super().__init__(**{**DEFAULTS, **options})
        self.net: SECNN | None = None
        self.temperature = 1.0
        self.feature_ood: calibration.Mahalanobis | None = None
        self.image_ood: calibration.Mahalanobis | None = None
        self.ood_scales = (1.0, 1.0)
        self.fit_summary: dict[str, Any] = {}
        self._device: torch.device | None = None
        # Set when inference moved from a failing GPU to the CPU; the GUI shows it (read, then cleared, by callers).
        self.device_notice: str | None = None

    # ---- device ------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        if self._device is None:
            self._device = choose_device(self.options["device"])
        return self._device

    def set_device(self, preference: str, log: LogCallback | None = None) -> None:
        self.options["device"] = preference
        self._device = choose_device(preference, log)
        if self.net is not None:
            self.net.to(self._device)

    @property
    def device_name(self) -> str:
        return device_label(self.device)

    # ---- input -------------------------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.options["image_size"])

    @property
    def decode_draft(self) -> tuple[int, int] | None:
        return (self.image_size, self.image_size) if self.options["jpeg_draft"] else None

    def reduce(self, image: Image.Image) -> Image.Image:
        """The image at the network's input size, as :meth:`prepare` resizes it."""
        image = image.convert("RGB")
        size = self.image_size
        return image if image.size == (size, size) else image.resize((size, size), Image.BILINEAR)

    def prepare(self, image: Image.Image) -> np.ndarray:
        """uint8 (S, S, 3) at the input size, with the scale-bar corner filled with the image's median colour."""
        size = self.image_size
        array = np.array(self.reduce(image), dtype=np.uint8)
        if self.options["mask_corner"]:
            height = max(1, round(size * CORNER_BOX[1]))
            width = max(1, round(size * CORNER_BOX[0]))
            array[-height:, -width:] = np.median(array.reshape(-1, 3), axis=0).astype(np.uint8)
        return array

    def _stack(self, images: Sequence[Image.Image]) -> torch.Tensor:
        arrays = [self.prepare(image) for image in images]
        if not arrays:
            return torch.zeros((0, 3, self.image_size, self.image_size), dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Float network input from uint8 (or [0, 1] float) images."""
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        if self.options["normalise"] == "image":
            mean = x.mean(dim=(2, 3), keepdim=True)
            std = x.std(dim=(2, 3), keepdim=True)
            return (x - mean) / (std + 0.02)
        return (x - 0.5) / 0.25

    def _augmenter(self, stains: torch.Tensor | None = None) -> v2.Compose:
        """Training augmentation; ``stains`` (from :func:`stain_statistics`) is the stain-transfer bank."""
        o = self.options
        size = self.image_size
        steps: list[nn.Module] = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), _RandomRot90()]
        crop = int(o["train_crop"])
        if 0 < crop < size:
            # Crop area share of the whole image, widened by +-30% when scale augmentation is on.
            share = (crop / size) ** 2
            spread = (0.7, 1.3) if o["scale_aug"] > 0 else (1.0, 1.0)
            steps.append(
                v2.RandomResizedCrop(
                    crop, scale=(share * spread[0], min(1.0, share * spread[1])), ratio=(0.9, 1.1), antialias=True
                )
            )
        elif o["scale_aug"] > 0:
            steps.append(
                v2.RandomApply(
                    [v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.9, 1.1), antialias=True)], p=o["scale_aug"]
                )
            )
        if float(o["stain_transfer"]) > 0 and stains is not None:
            steps.append(_StainTransfer(float(o["stain_transfer"]), stains))
        jitter = o["colour_jitter"]
        if jitter > 0 or o["hue_jitter"] > 0:
            steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=o["hue_jitter"]))
        steps.append(_StainJitter(o["stain_jitter"]))
        steps.append(_ChannelGain(float(o["gain_jitter"])))
        if o["grey_prob"] > 0:
            steps.append(v2.RandomGrayscale(p=o["grey_prob"]))
        if o["blur_prob"] > 0:
            steps.append(v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.2))], p=o["blur_prob"]))
        return v2.Compose(steps)

    def _load(
        self, paths: Sequence[Path], progress: ProgressCallback, cancel: CancelToken | None, total: int
    ) -> torch.Tensor:
        out = torch.empty((len(paths), 3, self.image_size, self.image_size), dtype=torch.uint8)
        for index, path in enumerate(paths):
            check(cancel)
            out[index] = torch.from_numpy(self.prepare(self.read(path))).permute(2, 0, 1)
            if index % 16 == 0 or index == len(paths) - 1:
                progress(index + 1, total, f"reading images {index + 1}/{len(paths)}")
        return out

    # ---- training ----------------------------------------------------------------------------------------------
    def _net_config(self) -> NetConfig:
        o = self.options
        return NetConfig(
            4, o["width"], o["blocks"], o["convs_per_block"], o["reduction"], o["dropout"], o["stem_stride"]
        )

    def _validation_split(self, labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from allgui.core import splits

        fraction = float(self.options["val_fraction"])
        counts = np.bincount(labels, minlength=4)
        if fraction <= 0 or counts[counts > 0].min() < 4:
            everything = np.arange(len(labels))
            return everything, np.zeros(0, dtype=int)
        if self.options["val_split"] == "random":
            return splits.stratified_group_split(labels, groups, test_fraction=fraction, seed=self.options["seed"])
        # Callers pass images in capture order within each class (LabelledDataset sorts by file number), so the
        # position stands in for the capture number: the validation part is the last block of each class.
        return splits.block_split(labels, np.arange(len(labels)), groups, test_fraction=fraction)

    def fit(
        self,
        paths: Sequence[Path],
        labels: np.ndarray,
        *,
        groups: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        log: LogCallback | None = None,
    ) -> dict[str, Any]:
        progress = progress or no_progress
        log = log or (lambda line: None)
        labels = np.asarray(labels, dtype=np.int64)
        groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
        if len(paths) != len(labels) or len(labels) == 0:
            raise ValueError("fit needs one label per image and at least one image")
        threads = torch.get_num_threads()
        if int(self.options["threads"]) > 0:
            torch.set_num_threads(int(self.options["threads"]))
        try:
            return self._fit(paths, labels, groups, progress, cancel, log)
        finally:
            torch.set_num_threads(threads)

    def _fit(
        self,
        paths: Sequence[Path],
        labels: np.ndarray,
        groups: np.ndarray,
        progress: ProgressCallback,
        cancel: CancelToken | None,
        log: Callable[[str], None],
    ) -> dict[str, Any]:
        started = time.perf_counter()
        train_idx, val_idx = self._validation_split(labels, groups)
        batch = int(self.options["batch_size"])
        steps = math.ceil(len(train_idx) / batch)
        total = len(paths) + int(self.options["epochs"]) * steps
        images = self._load(paths, progress, cancel, total)
        log(
            f"{len(train_idx)} training and {len(val_idx)} validation images at {self.image_size} px "
            f"on {self.device_name}"
        )
        try:
            summary = self._train(images, labels, train_idx, val_idx, progress, cancel, log, len(paths), total)
        except Cancelled:
            raise
        except Exception as error:
            if self.device.type != "cuda" or not is_cuda_failure(error):
                raise
            self._device = fallback_to_cpu(error, log)
            summary = self._train(images, labels, train_idx, val_idx, progress, cancel, log, len(paths), total)
        summary["fit_seconds"] = round(time.perf_counter() - started, 1)
        self.fit_summary = summary
        return summary

    def _train(
        self,
        images: torch.Tensor,
        labels: np.ndarray,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        progress: ProgressCallback,
        cancel: CancelToken | None,
        log: Callable[[str], None],
        done: int,
        total: int,
    ) -> dict[str, Any]:
        o = self.options
        device = self.device
        seed = int(o["seed"])
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = SECNN(self._net_config()).to(device)
        ema = copy.deepcopy(net).eval()
        for parameter in ema.parameters():
            parameter.requires_grad_(False)
        epochs, batch = int(o["epochs"]), int(o["batch_size"])
        steps = math.ceil(len(train_idx) / batch)
        optimiser = torch.optim.AdamW(net.parameters(), lr=o["lr"], weight_decay=o["weight_decay"])
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=o["lr"], total_steps=max(1, epochs * steps), pct_start=0.15
        )
        counts = np.bincount(labels[train_idx], minlength=4).astype(np.float64)
        class_weights = np.where(counts > 0, counts.sum() / (4 * np.maximum(counts, 1)), 0.0)
        use_loss_weights = o["balance"] == "loss"
        criterion = nn.CrossEntropyLoss(
            weight=torch.tensor(class_weights, dtype=torch.float32, device=device) if use_loss_weights else None,
            label_smoothing=float(o["label_smoothing"]),
        )
        sample_p = None
        if o["balance"] == "sampler":
            sample_p = 1.0 / counts[labels[train_idx]]
            sample_p /= sample_p.sum()
        batches = _EpochBatches()
        stains = stain_statistics(images[torch.from_numpy(train_idx)]) if float(o["stain_transfer"]) > 0 else None
        loader = _augmented_batches(images, self._augmenter(stains), batches, int(o["loader_workers"]))
        use_amp = device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        y_all = torch.from_numpy(labels)
        history: list[dict[str, Any]] = []
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
                    xb = self._normalise(augmented).to(device, non_blocking=True)
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
                    self._ema_update(ema, net, min(float(o["ema_decay"]), (1 + step) / (10 + step)))
                    seen += len(rows)
                    loss_sum += float(loss.detach()) * len(rows)
                    correct += int((logits.argmax(1) == yb).sum())
                    done += 1
                    progress(done, total, f"epoch {epoch}/{epochs}, batch {index + 1}/{steps}")
                val_logits, _ = self._infer(images[select_idx], ema)
                val_labels = labels[select_idx]
                val_loss = calibration.nll(val_logits, val_labels, 1.0)
                val_acc = float((val_logits.argmax(1) == val_labels).mean())
                record = {
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
                if waited >= int(o["patience"]):
                    log(f"early stop: no better validation loss for {waited} epochs")
                    break
        except Cancelled:
            # Keep the best checkpoint so a caller can still save a usable model.
            if best_state is not None:
                self._finish(ema, best_state, images, labels, train_idx, val_idx)
                self.fit_summary = self._summary(history, best_epoch, labels, val_idx, images, cancelled=True)
                log(f"cancelled: kept the checkpoint of epoch {best_epoch}")
            raise
        assert best_state is not None
        self._finish(ema, best_state, images, labels, train_idx, val_idx)
        return self._summary(history, best_epoch, labels, val_idx, images, cancelled=False)

    @staticmethod
    @torch.no_grad()
    def _ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
        for (name, average), current in zip(ema.state_dict().items(), net.state_dict().values(), strict=True):
            if average.dtype.is_floating_point:
                average.mul_(decay).add_(current.detach(), alpha=1.0 - decay)
            else:
                average.copy_(current)
            del name

    def _finish(
        self,
        net: SECNN,
        state: dict[str, torch.Tensor],
        images: torch.Tensor,
        labels: np.ndarray,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
    ) -> None:
        """Install the chosen checkpoint, then fit the temperature, OOD scores and review policy."""
        net.load_state_dict(state)
        self.net = net.eval()
        o = self.options
        train_logits, train_features = self._infer(images[train_idx])
        self.feature_ood = calibration.Mahalanobis.fit(train_features, labels[train_idx])
        self.image_ood = calibration.Mahalanobis.fit(calibration.image_statistics(images[train_idx]), labels[train_idx])
        reference = val_idx if len(val_idx) else train_idx
        if len(val_idx):
            val_logits, val_features = self._infer(images[val_idx])
            self.temperature = calibration.fit_temperature(val_logits, labels[val_idx])
        else:
            val_logits, val_features = train_logits, train_features
            self.temperature = 1.0
        feature_scores = self.feature_ood.score(val_features)
        image_scores = self.image_ood.score(calibration.image_statistics(images[reference]))
        self.ood_scales = (
            max(calibration.quantile_threshold(feature_scores, o["ood_quantile"], o["ood_margin"]), 1e-6),
            max(calibration.quantile_threshold(image_scores, o["ood_quantile"], o["ood_margin"]), 1e-6),
        )
        probabilities = calibration.softmax(val_logits, self.temperature)
        self.review = calibration.review_policy(
            probabilities, float(o["review_budget"]), float(o["benign_alert_budget"])
        )

    def _summary(
        self,
        history: list[dict[str, Any]],
        best_epoch: int,
        labels: np.ndarray,
        val_idx: np.ndarray,
        images: torch.Tensor,
        cancelled: bool,
    ) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "history": history,
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "cancelled": cancelled,
            "temperature": round(self.temperature, 4),
            "review": self.review.to_dict(),
            "device": self.device_name,
            "options": dict(self.options),
            "validation_images": len(val_idx),
        }
        if len(val_idx):
            logits, features = self._infer(images[val_idx])
            probabilities = calibration.softmax(logits, self.temperature)
            truth = labels[val_idx]
            ood = self._combine_ood(features, images[val_idx])
            flagged = self.review.flags(probabilities, ood)
            summary.update(
                val_accuracy=round(float((probabilities.argmax(1) == truth).mean()), 4),
                val_ece=round(expected_calibration_error(truth, probabilities), 4),
                val_flagged=round(float(flagged.mean()), 4),
            )
        return summary

    # ---- inference ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _infer(self, images: torch.Tensor, net: SECNN | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Logits and penultimate features for uint8 images (N, 3, S, S), in batches, in eval mode."""
        net = net or self.net
        if net is None:
            raise RuntimeError("the SE-CNN has not been trained or loaded")
        net.eval()
        device = next(net.parameters()).device
        views = range(8) if self.options["tta"] else range(1)
        all_logits, all_features = [], []
        for start in range(0, len(images), 64):
            x = self._normalise(images[start : start + 64]).to(device)
            logits = features = 0
            for view in views:
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                    out_logits, out_features = net.features(_dihedral(x, view))
                logits = logits + out_logits.float()
                features = features + out_features.float()
            all_logits.append((logits / len(views)).cpu().numpy())
            all_features.append((features / len(views)).cpu().numpy())
        if not all_logits:
            return np.zeros((0, 4)), np.zeros((0, net.feature_size))
        return np.concatenate(all_logits).astype(np.float64), np.concatenate(all_features).astype(np.float64)

    def _ready(self) -> SECNN:
        if self.net is None:
            raise RuntimeError("the SE-CNN has not been trained or loaded")
        if next(self.net.parameters()).device != self.device:
            self.net.to(self.device)
        return self.net

    def _on_device(self, run: Callable[[SECNN], _T]) -> _T:
        """``run(net)`` on the model's device; a CUDA error or out-of-memory moves the model to the CPU (with a
        DeviceWarning and :attr:`device_notice`) and runs it again there, so a failing GPU never fails a batch."""
        net = self._ready()
        try:
            return run(net)
        except Exception as error:
            if self.device.type != "cuda" or not is_cuda_failure(error):
                raise
            self._device = fallback_to_cpu(error)
            self.options["device"] = "cpu"  # stay there: a GPU that failed once is not retried mid-batch
            self.device_notice = f"{cuda_failure_message(error)} (slower, same results)"
            return run(self._ready())

    def _infer_on_device(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return self._on_device(lambda net: self._infer(images, net))

    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Uncalibrated logits (for evaluation and temperature fitting)."""
        return self._infer_on_device(self._stack(images))[0]

    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        return calibration.softmax(self.logits(images), self.temperature)

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Penultimate (globally pooled) features, shape (n, feature_size)."""
        return self._infer_on_device(self._stack(images))[1]

    def _combine_ood(self, features: np.ndarray, batch: torch.Tensor) -> np.ndarray:
        assert self.feature_ood is not None and self.image_ood is not None
        feature_score = self.feature_ood.score(features) / self.ood_scales[0]
        image_score = self.image_ood.score(calibration.image_statistics(batch)) / self.ood_scales[1]
        return np.maximum(feature_score, image_score)

    def ood_scores(self, images: Sequence[Image.Image]) -> np.ndarray | None:
        if self.feature_ood is None or self.image_ood is None:
            return None
        batch = self._stack(images)
        return self._combine_ood(self._infer_on_device(batch)[1], batch)

    def predict(self, images: Sequence[Image.Image]) -> list:
        # One forward pass for probabilities and OOD scores together.
        batch = self._stack(images)
        logits, features = self._infer_on_device(batch)
        probabilities = calibration.softmax(logits, self.temperature)
        ood = self._combine_ood(features, batch) if self.feature_ood is not None else None
        return [self._review(row, None if ood is None else float(ood[i])) for i, row in enumerate(probabilities)]

    def attention(self, image: Image.Image) -> Attention:
        """SE excitations of every block and a Grad-CAM map of the last block for the predicted class."""
        return self._on_device(lambda net: self._attention(image, net))

    def _attention(self, image: Image.Image, net: SECNN) -> Attention:
        net.eval()
        device = next(net.parameters()).device
        # The input asks for a gradient so the graph exists even when the weights are frozen.
        x = self._normalise(self._stack([image])).to(device).requires_grad_(True)
        with torch.enable_grad():
            logits, _, excitations, last_map = net.forward_all(x)
            target = logits[0, int(logits[0].argmax())]
            (gradient,) = torch.autograd.grad(target, last_map)
        weights = gradient.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * last_map).sum(dim=1, keepdim=True)).detach()
        if float(cam.max()) <= 0:
            # Nothing pushes towards the class: fall back to the SE-weighted activation.
            cam = last_map.detach().mean(dim=1, keepdim=True).clamp_min(0)
        width, height = image.size
        heat = F.interpolate(cam.float(), size=(height, width), mode="bilinear", align_corners=False)[0, 0]
        heat = heat - heat.min()
        heat = heat / heat.max() if float(heat.max()) > 0 else heat
        return Attention(
            block_names=net.block_names,
            excitations=[e[0].detach().float().cpu().numpy() for e in excitations],
            heatmap=heat.cpu().numpy().astype(np.float32),
        )

    # ---- persistence -------------------------------------------------------------------------------------------
    def save_files(self, folder: Path) -> dict[str, Any]:
        if self.net is None or self.feature_ood is None or self.image_ood is None:
            raise RuntimeError("only a trained SE-CNN can be saved")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        torch.save(state, folder / WEIGHTS_FILE)
        torch.save({**self.feature_ood.state("feature"), **self.image_ood.state("image")}, folder / CALIBRATION_FILE)
        config = {
            "options": {**self.options, "device": "auto"},
            "network": self.net.config.to_dict(),
            "temperature": self.temperature,
            "ood_scales": list(self.ood_scales),
        }
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return {
            "input_size": [self.image_size, self.image_size],
            "normalisation": (
                "per-image channel standardisation" if self.options["normalise"] == "image" else "(x - 0.5) / 0.25"
            )
            + (", scale-bar corner masked" if self.options["mask_corner"] else ""),
            "architecture": self.net.config.to_dict(),
            "temperature": self.temperature,
            "files": [WEIGHTS_FILE, CALIBRATION_FILE, CONFIG_FILE],
        }

    @classmethod
    def load_files(cls, folder: Path, manifest: dict[str, Any]) -> SECNNClassifier:
        folder = Path(folder)
        config = read_state_json(folder / CONFIG_FILE)
        if config is None:
            raise FileNotFoundError(f"no {CONFIG_FILE}")
        if not isinstance(config, dict):
            raise InvalidManifest(f"{CONFIG_FILE} is not a JSON object")
        check_options(config.get("options"), OPTION_BOUNDS, f"{CONFIG_FILE} options")
        check_options(config.get("network"), OPTION_BOUNDS, f"{CONFIG_FILE} network")
        options = {k: v for k, v in config["options"].items() if k in DEFAULTS}
        network = NetConfig.from_dict(config["network"])
        size = int(options.get("image_size", DEFAULTS["image_size"]))
        if network.num_classes != len(CLASS_NAMES) or network.width * size * size > MAX_WIDTH_PIXELS:
            raise InvalidManifest(
                f"{CONFIG_FILE} asks for {network.num_classes} classes, width {network.width} at {size} px: "
                f"the app's 4 classes and width x size^2 up to {MAX_WIDTH_PIXELS:,} are allowed"
            )
        model = cls(**options)
        net = SECNN(network)
        net.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        model.net = net.eval()
        state = torch.load(folder / CALIBRATION_FILE, map_location="cpu", weights_only=True)
        model.feature_ood = calibration.Mahalanobis.from_state(state, "feature")
        model.image_ood = calibration.Mahalanobis.from_state(state, "image")
        model.temperature = float(config["temperature"])
        model.ood_scales = (float(config["ood_scales"][0]), float(config["ood_scales"][1]))
        if manifest and "review" in manifest:
            model.review = ReviewPolicy.from_dict(manifest["review"])
        return model
