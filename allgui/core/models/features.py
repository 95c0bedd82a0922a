"""Pixel and colour features for the classical pipelines (SVM, Random Forest, colour baseline)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from allgui.core.imageio import read_rgb
from allgui.core.progress import CancelToken, ProgressCallback, check

HISTOGRAM_BINS = 4  # per channel: a coarse 4x4x4 colour histogram


def image_array(image: Image.Image, size: int) -> np.ndarray:
    """One RGB image as a (size, size, 3) uint8 array, resized with bilinear filtering when needed."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def images_to_arrays(images: Sequence[Image.Image], size: int) -> np.ndarray:
    if not images:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack([image_array(image, size) for image in images])


def load_arrays(
    paths: Sequence[Path],
    size: int,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Read and resize ``paths`` (all readable: callers pass a prepared data set) into one uint8 stack."""
    arrays = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    for index, path in enumerate(paths):
        if index % 16 == 0:
            check(cancel)
            if progress is not None:
                progress(index, len(paths), "reading images")
        arrays[index] = image_array(read_rgb(path), size)
    if progress is not None:
        progress(len(paths), len(paths), "reading images")
    return arrays


def pixel_features(arrays: np.ndarray) -> np.ndarray:
    """Flattened pixels scaled to [0, 1], float32 to halve the memory of PCA on thousands of images."""
    return arrays.reshape(len(arrays), -1).astype(np.float32) / np.float32(255.0)


def color_features(arrays: np.ndarray) -> np.ndarray:
    """Channel means and standard deviations plus a normalised 4x4x4 colour histogram: colour only, no shape."""
    pixels = arrays.reshape(len(arrays), -1, 3).astype(np.float32) / np.float32(255.0)
    means = pixels.mean(axis=1)
    stds = pixels.std(axis=1)
    bins = (arrays.reshape(len(arrays), -1, 3) // (256 // HISTOGRAM_BINS)).astype(np.int64)
    codes = (bins[..., 0] * HISTOGRAM_BINS + bins[..., 1]) * HISTOGRAM_BINS + bins[..., 2]
    histogram = np.stack([np.bincount(row, minlength=HISTOGRAM_BINS**3) for row in codes]).astype(np.float32)
    histogram /= np.float32(codes.shape[1])
    return np.concatenate([means, stds, histogram], axis=1)


def dihedral_augment(arrays: np.ndarray, labels: np.ndarray, copies: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Originals plus up to seven flipped/rotated copies; smear fields have no preferred orientation.

    Only ever applied to training images (augmenting a test set would inflate its size, not its information).
    """
    transforms = [
        lambda a: a[:, :, ::-1],  # horizontal flip
        lambda a: a[:, ::-1, :],  # vertical flip
        lambda a: np.rot90(a, 1, axes=(1, 2)),
        lambda a: np.rot90(a, 3, axes=(1, 2)),
        lambda a: np.rot90(a, 2, axes=(1, 2)),
        lambda a: np.rot90(a[:, :, ::-1], 1, axes=(1, 2)),
        lambda a: np.rot90(a[:, ::-1, :], 1, axes=(1, 2)),
    ]
    copies = max(0, min(copies, len(transforms)))
    stacked = [arrays] + [np.ascontiguousarray(t(arrays)) for t in transforms[:copies]]
    return np.concatenate(stacked), np.tile(labels, copies + 1)
