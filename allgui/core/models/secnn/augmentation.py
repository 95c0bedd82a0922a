"""Training augmentation of the SE-CNN: flips, 90-degree rotations, scale, colour, stain and grey-scale changes, and
the batching that applies them (in the training loop, or ahead of a GPU in worker processes)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2

from allgui.core.models.secnn.options import SECNNOptions


def optical_density(x: torch.Tensor) -> torch.Tensor:
    """Optical density of [0, 1] intensities, as ``preparation.optical_density`` (black stays finite)."""
    return -torch.log((x * 255.0 + 1.0) / 256.0)


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
        od = optical_density(images[start : start + chunk].float() / 255.0).flatten(2)
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
        od = optical_density(x)
        mean, std = _od_moments(od.flatten(1))
        od = (od - mean[:, None, None]) / (std[:, None, None] + 1e-6) * target_std[:, None, None]
        od = od + target_mean[:, None, None]
        return ((256.0 * torch.exp(-od) - 1.0) / 255.0).clamp(0.0, 1.0)


def augmenter(o: SECNNOptions, stains: torch.Tensor | None = None) -> v2.Compose:
    """The training augmentation of options ``o``; ``stains`` (from :func:`stain_statistics`) is the stain-transfer
    bank."""
    size = int(o.image_size)
    steps: list[nn.Module] = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), _RandomRot90()]
    crop = int(o.train_crop)
    if 0 < crop < size:
        # Crop area share of the whole image, widened by +-30% when scale augmentation is on.
        share = (crop / size) ** 2
        spread = (0.7, 1.3) if o.scale_aug > 0 else (1.0, 1.0)
        steps.append(
            v2.RandomResizedCrop(
                crop, scale=(share * spread[0], min(1.0, share * spread[1])), ratio=(0.9, 1.1), antialias=True
            )
        )
    elif o.scale_aug > 0:
        steps.append(
            v2.RandomApply(
                [v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.9, 1.1), antialias=True)], p=o.scale_aug
            )
        )
    if float(o.stain_transfer) > 0 and stains is not None:
        steps.append(_StainTransfer(float(o.stain_transfer), stains))
    jitter = o.colour_jitter
    if jitter > 0 or o.hue_jitter > 0:
        steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=o.hue_jitter))
    steps.append(_StainJitter(o.stain_jitter))
    steps.append(_ChannelGain(float(o.gain_jitter)))
    if o.grey_prob > 0:
        steps.append(v2.RandomGrayscale(p=o.grey_prob))
    if o.blur_prob > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.2))], p=o.blur_prob))
    return v2.Compose(steps)


# ---- batching ----------------------------------------------------------------------------------------------------
class _EpochBatches:
    """Batch sampler whose batches the training loop sets before each epoch (worker processes persist)."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __iter__(self) -> Iterator[np.ndarray]:
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


class _InlineBatches:
    def __init__(self, dataset: _Augmented, batches: _EpochBatches) -> None:
        self.dataset, self.batches = dataset, batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        for rows in self.batches:
            yield torch.stack([self.dataset[int(i)] for i in rows])


def _augmented_batches(
    images: torch.Tensor, augment: nn.Module, batches: _EpochBatches, workers: int
) -> _InlineBatches | torch.utils.data.DataLoader:
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
