"""Turning a decoded image into what the SE-CNN reads, with numpy only (no torch), in the decoding threads.

* One 256-bin histogram per image and channel replaces sorts and passes over every pixel: the corner's median
  colour, the per-image standardisation and the optical-density statistics of the image OOD score all come from it
  (the values are 8-bit, so the order statistics are read off the histogram exactly); masking the corner updates
  it instead of counting again.
* :func:`network_input` makes the float32 (N, 3, S, S) input both engines run on, so they see the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Bottom-right box holding the microscope's scale-bar label (fractions of width and height).
CORNER_BOX = (0.16, 0.12)
_QUANTILES = (0.05, 0.5, 0.95)


def optical_density(values: np.ndarray) -> np.ndarray:
    """Optical density of [0, 1] float32 intensities (8-bit values shifted by one so that black stays finite)."""
    values = np.asarray(values, dtype=np.float32)
    return -np.log((values * np.float32(255.0) + np.float32(1.0)) / np.float32(256.0))


# The optical density of each 8-bit value, in float32 as the statistics were first computed, then widened.
_OD = optical_density(np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(np.float64)
_UNIT = np.arange(256, dtype=np.float64) / 255.0
_CHANNEL_OFFSETS = np.array([0, 256, 512], dtype=np.int32)


def channel_counts(pixels: np.ndarray) -> np.ndarray:
    """(3, 256) histograms of the channels of uint8 (..., 3) pixels, counted in one pass."""
    return np.bincount((pixels.reshape(-1, 3) + _CHANNEL_OFFSETS).ravel(), minlength=768).reshape(3, 256)


@dataclass
class Prepared:
    """One image made ready for the network in a decoding thread: pixels plus the per-image numbers it needs."""

    pixels: np.ndarray  # uint8 (S, S, 3), corner masked as the model prepares it
    mean: np.ndarray  # (3,) channel means of pixels / 255 (per-image standardisation)
    std: np.ndarray  # (3,) unbiased standard deviations of pixels / 255
    statistics: np.ndarray  # (21,) colour and texture statistics: stain, background and focus (the image OOD score)


def describe(pixels: np.ndarray, counts: np.ndarray | None = None) -> Prepared:
    """Standardisation and OOD image statistics of uint8 (S, S, 3) pixels, from histograms and a few passes.

    ``counts`` are the pixels' :func:`channel_counts` where the caller has them already.

    The optical-density columns (mean, std, 5/50/95% quantiles per channel) come from 256-bin histograms: density
    is a function of the 8-bit value, so order statistics are read off the counts exactly, where
    ``torch.quantile`` sorts every pixel.
    """
    n = pixels.size // 3
    counts = (channel_counts(pixels) if counts is None else counts).astype(np.float64)
    # Sums of products, not ``@``: BLAS calls from the decoding threads wake OpenBLAS's spinning thread pool,
    # which cost more CPU than this whole function.
    mean = (counts * _UNIT).sum(axis=1) / n
    std = np.sqrt((counts * (_UNIT[None, :] - mean[:, None]) ** 2).sum(axis=1) / max(1, n - 1))
    od_mean = (counts * _OD).sum(axis=1) / n
    od_std = np.sqrt((counts * (_OD[None, :] - od_mean[:, None]) ** 2).sum(axis=1) / max(1, n - 1))
    # Density falls as the value rises: the k-th smallest density belongs to the k-th largest value.
    descending = np.cumsum(counts[:, ::-1], axis=1)
    positions = np.array(_QUANTILES) * (n - 1)
    low, high = np.floor(positions), np.ceil(positions)
    quantiles = np.empty((3, len(_QUANTILES)))
    for c in range(3):
        low_od = _OD[255 - np.searchsorted(descending[c], low, side="right")]
        high_od = _OD[255 - np.searchsorted(descending[c], high, side="right")]
        quantiles[c] = low_od + (high_od - low_od) * (positions - low)
    # Reductions over the 3-long channel axis are slow in numpy; element-wise ops on the planes are not.
    x = pixels.astype(np.float32) / np.float32(255.0)
    red, green, blue = x[..., 0], x[..., 1], x[..., 2]
    top = np.maximum(np.maximum(red, green), blue)
    bottom = np.minimum(np.minimum(red, green), blue)
    saturation = (top - bottom) / np.maximum(top, np.float32(1e-3))
    grey = (red + green + blue) / np.float32(3.0)
    gradient = np.abs(grey[1:, :-1] - grey[:-1, :-1]) + np.abs(grey[:-1, 1:] - grey[:-1, :-1])
    texture = [
        *_mean_std(saturation),
        np.count_nonzero(grey > 0.8) / grey.size,
        np.count_nonzero(grey < 0.35) / grey.size,
        *_mean_std(gradient),
    ]
    statistics = np.concatenate([od_mean, od_std, quantiles.ravel(), texture])
    return Prepared(pixels, mean, std, statistics)


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and unbiased standard deviation of float32 values, summed in float64 (no float64 copy)."""
    mean = float(values.mean(dtype=np.float64))
    centred = values - np.float32(mean)
    return mean, math.sqrt(float(np.square(centred).sum(dtype=np.float64)) / max(1, values.size - 1))


def masked(image: Image.Image, size: int, mask_corner: bool) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (S, S, 3) pixels at the input size (bilinear), with the scale-bar corner filled with the image's median
    colour where ``mask_corner``, and their channel histograms (corner masked in both)."""
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    array = np.array(image, dtype=np.uint8)
    counts = channel_counts(array)
    if mask_corner:
        height, width = max(1, round(size * CORNER_BOX[1])), max(1, round(size * CORNER_BOX[0]))
        corner = array[-height:, -width:]
        median = _median_colour(counts)
        counts -= channel_counts(corner)
        corner[...] = median
        counts[np.arange(3), median] += corner.shape[0] * corner.shape[1]
    return array, counts


def network_input(prepared: Sequence[Prepared], standardise: bool) -> np.ndarray:
    """The network's float32 (N, 3, S, S) input: each image standardised by its own channel statistics, or the
    fixed ``(x - 0.5) / 0.25``."""
    x = np.stack([item.pixels for item in prepared]).astype(np.float32) / np.float32(255.0)
    if standardise:
        mean = np.stack([item.mean for item in prepared]).astype(np.float32)[:, None, None, :]
        std = np.stack([item.std for item in prepared]).astype(np.float32)[:, None, None, :]
        x = (x - mean) / (std + np.float32(0.02))
    else:
        x = (x - np.float32(0.5)) / np.float32(0.25)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _median_colour(counts: np.ndarray) -> np.ndarray:
    """``np.median(pixels.reshape(-1, 3), axis=0).astype(np.uint8)`` from the pixels' :func:`channel_counts`."""
    n = int(counts[0].sum())
    out = np.empty(3, dtype=np.uint8)
    for channel in range(3):
        cumulative = np.cumsum(counts[channel])
        upper = int(np.searchsorted(cumulative, n // 2 + 1))  # value at 0-based rank n // 2
        if n % 2:
            out[channel] = upper
        else:
            lower = int(np.searchsorted(cumulative, n // 2))  # rank n // 2 - 1
            out[channel] = math.floor((lower + upper) / 2)
    return out
