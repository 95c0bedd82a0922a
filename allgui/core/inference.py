"""The fast torch forward pass of an SE-CNN on the CPU: what ``SECNN.outputs`` gives, sooner (heat maps aside).

What makes it faster (all exact up to float rounding, apart from bfloat16; ``tests/test_fast_path.py`` checks it):

* BatchNorm folded into the convolution weights, and every map kept channels-last, where oneDNN's convolutions and
  max pooling are several times faster than in the default layout (pooling was 40% of the plain forward pass).
* ``torch.inference_mode`` and the fused convolution + ReLU of oneDNN.
* On CPUs with bfloat16 units (AMX, AVX-512-BF16) the convolutions run in bfloat16, about a third faster; the SE
  excitations, pooled features and head stay in float32. Probabilities move by up to about 0.04 (0.11 over 20
  trained models) and a class changes for about 1 image in 900, so this is the one part that is not exact:
  ``training/precision_check.py`` measured it on held-out blocks (docs/performance.md) and
  ``ALLGUI_INFERENCE_PRECISION=float32`` turns it off. ONNX Runtime (the default engine) is exact in float32;
  on such CPUs this network pass is faster than ONNX Runtime's, end to end the two were level in one run here
  (docs/performance.md), so the torch engine keeps it.

:class:`allgui.core.models.secnn.torch_engine.TorchEngine` runs it on the CPU where the heat maps are not asked for.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from allgui.core.models.secnn.engines import Outputs
from allgui.core.models.secnn.net import SECNN

# Images per forward pass: large enough to amortise per-call overhead, small enough that the first block's maps
# (32 x 16 x 96 x 96 floats) stay in cache; 64 was a quarter slower.
BATCH = 32
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


class FastSECNN:
    """Folded, channels-last copy of a trained :class:`SECNN` for batch inference on the CPU."""

    def __init__(self, net: SECNN, threads: int, precision: str | None = None) -> None:
        self.precision = precision or default_precision()
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.precision == "bfloat16" and not bfloat16_supported():
            raise ValueError("this CPU has no bfloat16 units: use precision='float32'")
        self.dtype = getattr(torch, self.precision)
        net = net.eval()
        self.blocks: list[_Block] = []
        for block in net.blocks:
            layers = list(block.convs)
            convs = [_fold(layers[i], layers[i + 1], self.dtype) for i in range(0, len(layers), 3)]
            self.blocks.append(_Block(convs, block.se.fc1, block.se.fc2))
        self.head = net.head
        self.threads = threads

    def run(self, x: np.ndarray) -> Outputs:
        """Logits, pooled features and excitations of the float32 (n, 3, S, S) input (no heat maps)."""
        # The thread count is per calling thread: this leaves the GUI's and the training's settings alone.
        threads = torch.get_num_threads()
        if threads != self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                logits, features, excitations = self._forward(
                    torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
                )
        finally:
            if threads != self.threads:
                torch.set_num_threads(threads)
        return Outputs(logits.double().numpy(), features.double().numpy(), [e.float().numpy() for e in excitations])

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        x = x.to(self.dtype)
        excitations = []
        for block in self.blocks:
            for weight, bias, stride in block.convs:
                x = _conv_relu(x, weight, bias, stride)
            squeezed = x.mean(dim=(2, 3), dtype=torch.float32)
            excitation = torch.sigmoid(block.fc2(F.relu(block.fc1(squeezed))))
            excitations.append(excitation)
            excitation = excitation.to(self.dtype)
            if min(x.shape[-2:]) >= 2:
                x = F.max_pool2d(x, 2)
            x = x * excitation[:, :, None, None]
        features = x.mean(dim=(2, 3), dtype=torch.float32)
        return self.head(features), features, excitations


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
