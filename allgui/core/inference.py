"""A fast batched inference path for the SE-CNN: the predictions of ``SECNNClassifier.predict``, sooner.

What makes it faster (all exact up to float rounding, apart from bfloat16; ``tests/test_inference.py`` checks it):

* BatchNorm folded into the convolution weights, and every map kept channels-last, where oneDNN's convolutions and
  max pooling are several times faster than in the default layout (pooling was 40% of the plain forward pass).
* Max pooling before the SE rescaling: the excitations are positive per-channel factors, so pooling commutes with
  them and the multiplication touches a quarter of the values.
* One 256-bin histogram per image and channel replaces the sorts and passes over every pixel: the corner's median
  colour, the per-image standardisation and the optical-density statistics of the image OOD score all come from it
  (the values are 8-bit, so the order statistics are read off the histogram exactly); masking the corner updates
  it instead of counting again.
* ``torch.inference_mode`` and large batches.
* On CPUs with bfloat16 units (AMX, AVX-512-BF16) the convolutions run in bfloat16, about a third faster; the SE
  excitations, pooled features and head stay in float32. Probabilities move by up to about 0.04 (0.11 over 20
  trained models) and a class changes for about 1 image in 900, so this is the one part that is not exact:
  ``training/precision_check.py`` measured it on held-out blocks (docs/performance.md) and
  ``ALLGUI_INFERENCE_PRECISION=float32`` turns it off.

``SECNNClassifier.batch_predictor`` chooses this path for SE-CNN models without test-time augmentation; every other
model uses its own ``predict``. Preparing an image (:meth:`FastSECNN.prepare`) is thread-safe and meant to run in the
decoding threads.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from allgui.core.models import calibration
from allgui.core.models.base import BatchPredictor, Prediction
from allgui.core.models.secnn import CORNER_BOX, SECNNClassifier

# Images per forward pass: large enough to amortise per-call overhead, small enough that the first block's maps
# (32 x 16 x 96 x 96 floats) stay in cache; 64 was a quarter slower.
BATCH = 32
_QUANTILES = (0.05, 0.5, 0.95)
PRECISIONS = ("float32", "bfloat16")
log = logging.getLogger(__name__)


@dataclass
class _Block:
    convs: list[tuple[torch.Tensor, torch.Tensor, int]]  # folded (weight, bias, stride) per convolution
    fc1: torch.nn.Linear
    fc2: torch.nn.Linear


def _fold(
    conv: torch.nn.Conv2d, norm: torch.nn.BatchNorm2d, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, int]:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    weight = (conv.weight * scale[:, None, None, None]).contiguous(memory_format=torch.channels_last)
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return weight.detach().to(dtype), bias.detach().to(dtype), int(conv.stride[0])


def _od_table() -> np.ndarray:
    """Optical density of each 8-bit value, computed exactly as ``calibration.image_statistics`` does per pixel."""
    return calibration.optical_density(torch.arange(256, dtype=torch.float32) / 255.0).double().numpy()


_OD = _od_table()
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
    statistics: np.ndarray  # (21,) the row ``calibration.image_statistics`` gives for these pixels


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


class FastSECNN(BatchPredictor):
    """Folded, channels-last copy of a trained :class:`SECNNClassifier` for batch inference on the CPU."""

    def __init__(self, model: SECNNClassifier, threads: int | None = None, precision: str | None = None) -> None:
        if model.net is None or model.feature_ood is None or model.image_ood is None:
            raise ValueError("the fast path needs a trained SE-CNN with its OOD scores")
        self.precision = precision or default_precision()
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.precision == "bfloat16" and not bfloat16_supported():
            raise ValueError("this CPU has no bfloat16 units: use precision='float32'")
        self.dtype = getattr(torch, self.precision)
        super().__init__(model)
        self.model = model
        net = model.net.eval()
        self.blocks: list[_Block] = []
        for block in net.blocks:
            layers = list(block.convs)
            convs = [_fold(layers[i], layers[i + 1], self.dtype) for i in range(0, len(layers), 3)]
            self.blocks.append(_Block(convs, block.se.fc1, block.se.fc2))
        self.head = net.head
        self.size = model.image_size
        self.mask = bool(model.options["mask_corner"])
        self.standardise = model.options["normalise"] == "image"
        self.corner = (max(1, round(self.size * CORNER_BOX[1])), max(1, round(self.size * CORNER_BOX[0])))
        self.threads = threads or inference_threads()

    # ---- per image, in the decoding threads --------------------------------------------------------------------
    def resized(self, image: Image.Image) -> Image.Image:
        """The image at the network's input size, as ``SECNNClassifier.prepare`` resizes it."""
        image = image.convert("RGB")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.BILINEAR)
        return image

    def pixels(self, image: Image.Image) -> np.ndarray:
        """Same uint8 (S, S, 3) as ``SECNNClassifier.prepare``, with the corner's median read from a histogram."""
        return self._masked(image)[0]

    def prepare(self, image: Image.Image) -> Prepared:
        return describe(*self._masked(image))

    def _masked(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """The network's uint8 pixels and their channel histograms, corner masked in both."""
        array = np.array(self.resized(image), dtype=np.uint8)
        counts = channel_counts(array)
        if self.mask:
            height, width = self.corner
            corner = array[-height:, -width:]
            median = _median_colour(counts)
            counts -= channel_counts(corner)
            corner[...] = median
            counts[np.arange(3), median] += corner.shape[0] * corner.shape[1]
        return array, counts

    # ---- per batch ---------------------------------------------------------------------------------------------
    def infer(self, prepared: Sequence[Prepared]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logits, pooled features and image statistics (float64) of prepared images."""
        if not prepared:
            return np.zeros((0, 4)), np.zeros((0, self.head.in_features)), np.zeros((0, 21))
        # The thread count is per calling thread: this leaves the GUI's and the training's settings alone.
        threads = torch.get_num_threads()
        if threads != self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                logits, features = [], []
                for start in range(0, len(prepared), BATCH):
                    chunk = prepared[start : start + BATCH]
                    out_logits, out_features = self._forward(self._input(chunk))
                    logits.append(out_logits.double().numpy())
                    features.append(out_features.double().numpy())
        finally:
            if threads != self.threads:
                torch.set_num_threads(threads)
        statistics = np.stack([item.statistics for item in prepared])
        return np.concatenate(logits), np.concatenate(features), statistics

    def predict_prepared(self, prepared: Sequence[Prepared]) -> list[Prediction]:
        """Predictions (calibrated probabilities, review flags, OOD scores) as ``SECNNClassifier.predict`` gives."""
        model = self.model
        logits, features, statistics = self.infer(prepared)
        probabilities = calibration.softmax(logits, model.temperature)
        assert model.feature_ood is not None and model.image_ood is not None
        ood = np.maximum(
            model.feature_ood.score(features) / model.ood_scales[0],
            model.image_ood.score(statistics) / model.ood_scales[1],
        )
        return [model._review(row, float(ood[i])) for i, row in enumerate(probabilities)]

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        return self.predict_prepared([self.prepare(image) for image in images])

    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        logits = self.infer([self.prepare(image) for image in images])[0]
        return calibration.softmax(logits, self.model.temperature)

    # ---- internals ---------------------------------------------------------------------------------------------
    def _input(self, chunk: Sequence[Prepared]) -> torch.Tensor:
        """The network input, as ``SECNNClassifier._normalise`` makes it, channels-last float32."""
        pixels = torch.from_numpy(np.stack([item.pixels for item in chunk]))
        x = pixels.permute(0, 3, 1, 2).float() / 255.0  # a channels-last view of (N, 3, S, S)
        if not self.standardise:
            return (x - 0.5) / 0.25
        shape = (len(chunk), 3, 1, 1)
        mean = torch.from_numpy(np.stack([item.mean for item in chunk])).float().view(shape)
        std = torch.from_numpy(np.stack([item.std for item in chunk])).float().view(shape)
        return (x - mean) / (std + 0.02)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.dtype)
        for block in self.blocks:
            for weight, bias, stride in block.convs:
                x = _conv_relu(x, weight, bias, stride)
            squeezed = x.mean(dim=(2, 3), dtype=torch.float32)
            excitation = torch.sigmoid(block.fc2(F.relu(block.fc1(squeezed)))).to(self.dtype)
            if min(x.shape[-2:]) >= 2:
                x = F.max_pool2d(x, 2)
            x = x * excitation[:, :, None, None]
        features = x.mean(dim=(2, 3), dtype=torch.float32)
        return self.head(features), features


@functools.cache
def bfloat16_supported() -> bool:
    """Whether this CPU has bfloat16 units (AMX or AVX-512-BF16) that oneDNN uses.

    oneDNN also runs bfloat16 on plain AVX-512 by emulation, 3-4 times slower than float32: that does not count.
    """
    try:
        hardware = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
        return bool(hardware and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_precision() -> str:
    """bfloat16 where the CPU has the units for it; ``ALLGUI_INFERENCE_PRECISION`` can ask for float32."""
    wanted = os.environ.get("ALLGUI_INFERENCE_PRECISION", "").strip().lower()
    if wanted and wanted not in PRECISIONS:
        log.warning("ALLGUI_INFERENCE_PRECISION=%r is not one of %s; ignored", wanted, ", ".join(PRECISIONS))
    if wanted == "float32":
        return "float32"
    if bfloat16_supported():
        return "bfloat16"
    if wanted == "bfloat16":
        log.warning("ALLGUI_INFERENCE_PRECISION=bfloat16, but this CPU has no bfloat16 units: using float32")
    return "float32"


def inference_threads() -> int:
    """Torch threads for batch inference: half the cores, the other half decode (oversubscribing costs 4x)."""
    return max(1, (os.cpu_count() or 1) // 2)


def _conv_relu_plain(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int = 1) -> torch.Tensor:
    return F.relu_(F.conv2d(x, weight, bias, stride=stride, padding=1))


def _conv_relu_fused(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int = 1) -> torch.Tensor:
    # oneDNN's convolution with the ReLU applied as it writes (the op torch.compile uses on CPUs).
    return torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, [1, 1], [stride, stride], [1, 1], 1, "relu", [None], ""
    )


def _pick_conv_relu() -> Callable[..., torch.Tensor]:
    """The fused op where this torch build has it and it gives the plain result; else convolution then ReLU."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=generator).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4, 3, 3, 3, generator=generator).contiguous(memory_format=torch.channels_last)
    bias = torch.randn(4, generator=generator)
    try:
        with torch.inference_mode():
            same = all(
                torch.allclose(
                    _conv_relu_fused(x, weight, bias, stride), _conv_relu_plain(x, weight, bias, stride), atol=1e-5
                )
                for stride in (1, 2)
            )
            if same:
                return _conv_relu_fused
    except (AttributeError, RuntimeError):
        pass
    return _conv_relu_plain


_conv_relu = _pick_conv_relu()


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


def fast_path(classifier: SECNNClassifier) -> FastSECNN | None:
    """The fast path for ``classifier`` (what its :meth:`~SECNNClassifier.batch_predictor` returns), or None where
    it would not give the same predictions (untrained, TTA, on a GPU)."""
    if classifier.options.get("tta"):
        return None
    if classifier.net is None or classifier.feature_ood is None or classifier.image_ood is None:
        return None
    if next(classifier.net.parameters()).device.type != "cpu":
        return None  # on a GPU the plain path is already fast and uses mixed precision
    return FastSECNN(classifier)
