"""The SE-CNN in torch: its weights file, its ONNX export, and the torch engine (a GPU, or models without a graph).

Everything here imports torch; the classifier imports this module only when torch is wanted (training, saving,
``--engine torch``, a GPU), so that review and batch classification run without it.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from allgui.core.models.runtime import inference_threads
from allgui.core.models.secnn.engines import GRAPH_INPUT, Outputs, graph_outputs
from allgui.core.models.secnn.net import SECNN
from allgui.core.models.secnn.options import NetConfig
from allgui.core.models.torch_device import (
    choose_device,
    cuda_failure_message,
    device_label,
    fallback_to_cpu,
    is_cuda_failure,
)

if TYPE_CHECKING:
    from allgui.core.models.secnn.classifier import SECNNClassifier

_T = TypeVar("_T")
OPSET = 18


def weights_bytes(net: SECNN) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, buffer)
    return buffer.getvalue()


def load_net(weights: bytes, config: NetConfig) -> SECNN:
    """The network from ``weights.pt`` bytes, loaded without running code (``weights_only``)."""
    net = SECNN(config)
    net.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
    return net.eval()


def load_legacy_calibration(data: bytes) -> dict[str, np.ndarray]:
    """The OOD statistics of a model saved before ``calibration.safetensors`` (a torch file of plain tensors)."""
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError("calibration.pt does not hold named tensors")
    return {str(k): v.double().numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}


class _Graph(torch.nn.Module):
    def __init__(self, net: SECNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net.outputs(x)


def export_graph(net: SECNN, size: int) -> bytes:
    """The ONNX graph of ``net.outputs`` at ``size`` pixels, any batch size (torch's TorchScript-based exporter:
    the SE-CNN is a plain feed-forward network, and it needs no further packages)."""
    net = copy.deepcopy(net).eval().cpu()  # the model's own network stays where it is
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes and tracer warnings on shape checks
        torch.onnx.export(
            _Graph(net),
            (torch.zeros(1, 3, size, size),),
            buffer,
            input_names=[GRAPH_INPUT],
            output_names=graph_outputs(net.config),
            dynamic_axes={GRAPH_INPUT: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def normalise(x: torch.Tensor, standardise: bool) -> torch.Tensor:
    """Float network input from uint8 (or [0, 1] float) images (N, 3, S, S), as ``preparation.network_input``."""
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    if standardise:
        return (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 0.02)
    return (x - 0.5) / 0.25


class TorchEngine:
    """A model's network in torch on the device its options ask for; a failing GPU hands over to the CPU."""

    name = "torch"

    def __init__(self, model: SECNNClassifier, log: Callable[[str], None] | None = None) -> None:
        self.model = model
        self.device = choose_device(model.options.device, log)
        self.net = model.torch_net().to(self.device)
        self._fast: object | None = None

    @property
    def batch(self) -> int:
        return 64 if self.device.type == "cuda" else 32

    @property
    def device_name(self) -> str:
        return device_label(self.device)

    def run(self, x: np.ndarray, maps: bool = False) -> Outputs:
        if not maps and self.device.type == "cpu":
            return self._fast_path().run(x)
        return self._on_device(lambda: self._plain(x))

    def _fast_path(self):  # noqa: ANN202 - FastSECNN, imported on first use
        from allgui.core.inference import FastSECNN

        if self._fast is None:
            self._fast = FastSECNN(self.net, inference_threads())
        return self._fast

    def _plain(self, x: np.ndarray) -> Outputs:
        cuda = self.device.type == "cuda"
        with torch.inference_mode(), torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=cuda):
            values = self.net.eval().outputs(torch.from_numpy(x).to(self.device))
        return Outputs.of([value.float().cpu().numpy() for value in values], self.net.config)

    def _on_device(self, run: Callable[[], _T]) -> _T:
        """``run()`` on the device; a CUDA error or out-of-memory moves the network to the CPU (with a DeviceWarning
        and the model's ``device_notice``) and runs it again there, so a failing GPU never fails a batch."""
        try:
            return run()
        except Exception as error:
            if self.device.type != "cuda" or not is_cuda_failure(error):
                raise
            self.device = fallback_to_cpu(error)
            self.net.to(self.device)
            self.model.options.device = "cpu"  # stay there: a GPU that failed once is not retried mid-batch
            self.model.device_notice = f"{cuda_failure_message(error)} (slower, same results)"
            return run()


@torch.no_grad()
def infer(model: SECNNClassifier, images: torch.Tensor, net: SECNN) -> tuple[np.ndarray, np.ndarray]:
    """Logits and pooled features of uint8 images (N, 3, S, S) through ``net`` on its device, in eval mode: what
    training reads on the validation part (the batch of augmented images aside)."""
    net.eval()
    device = next(net.parameters()).device
    views = range(8) if model.options.tta else range(1)
    standardise = model.options.normalise == "image"
    all_logits, all_features = [], []
    for start in range(0, len(images), 64):
        x = normalise(images[start : start + 64], standardise).to(device)
        logits = features = 0
        for view in views:
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                out_logits, out_features = net.outputs(_dihedral(x, view))[:2]
            logits = logits + out_logits.float()
            features = features + out_features.float()
        all_logits.append((logits / len(views)).cpu().numpy())
        all_features.append((features / len(views)).cpu().numpy())
    if not all_logits:
        return np.zeros((0, 4)), np.zeros((0, net.feature_size))
    return np.concatenate(all_logits).astype(np.float64), np.concatenate(all_features).astype(np.float64)


def _dihedral(x: torch.Tensor, index: int) -> torch.Tensor:
    x = torch.rot90(x, index % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if index >= 4 else x
