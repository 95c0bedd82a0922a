"""The SE-CNN classifier: input preparation, calibrated prediction, OOD scores, attention and its model files.

Training is mixed in from :mod:`.trainer`; the options are a :class:`~.options.SECNNOptions`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from allgui.core.classes import CLASS_NAMES
from allgui.core.models import calibration
from allgui.core.models.base import Attention, BatchPredictor, Classifier, Prediction, ReviewPolicy
from allgui.core.models.manifest import InvalidManifest, check_options
from allgui.core.models.secnn.net import SECNN, NetConfig
from allgui.core.models.secnn.options import DEFAULTS, MAX_WIDTH_PIXELS, OPTION_BOUNDS, SECNNOptions
from allgui.core.models.secnn.trainer import FitSummary, SECNNTraining
from allgui.core.models.torch_device import (
    choose_device,
    cuda_failure_message,
    device_label,
    fallback_to_cpu,
    is_cuda_failure,
)
from allgui.core.progress import LogCallback
from allgui.core.statefile import read_state_json

_T = TypeVar("_T")

WEIGHTS_FILE = "weights.pt"
CALIBRATION_FILE = "calibration.pt"
CONFIG_FILE = "secnn.json"

# Bottom-right box holding the microscope's scale-bar label (fractions of width and height).
CORNER_BOX = (0.16, 0.12)


def _dihedral(x: torch.Tensor, index: int) -> torch.Tensor:
    x = torch.rot90(x, index % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if index >= 4 else x


class SECNNClassifier(SECNNTraining, Classifier):
    kind = "secnn"
    title = "SE-CNN (squeeze-and-excitation network)"
    options: SECNNOptions  # a mapping too, as Classifier.options is for the other kinds

    def __init__(self, **options: Any) -> None:
        settings = SECNNOptions.from_options(options)
        super().__init__()
        self.options = settings
        self.net: SECNN | None = None
        self.temperature = 1.0
        self.feature_ood: calibration.Mahalanobis | None = None
        self.image_ood: calibration.Mahalanobis | None = None
        self.ood_scales = (1.0, 1.0)
        self.fit_summary: FitSummary = {}
        self._device: torch.device | None = None

    # ---- device ------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        if self._device is None:
            self._device = choose_device(self.options.device)
        return self._device

    def set_device(self, preference: str, log: LogCallback | None = None) -> None:
        self.options.device = preference
        self._device = choose_device(preference, log)
        if self.net is not None:
            self.net.to(self._device)

    @property
    def device_name(self) -> str:
        return device_label(self.device)

    def batch_predictor(self) -> BatchPredictor:
        """The fast batched path (allgui.core.inference) where it gives these predictions, else the plain one."""
        from allgui.core import inference  # imports this module, and is needed only for batches

        return inference.fast_path(self) or super().batch_predictor()

    # ---- input -------------------------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.options.image_size)

    @property
    def decode_draft(self) -> tuple[int, int] | None:
        return (self.image_size, self.image_size) if self.options.jpeg_draft else None

    def reduce(self, image: Image.Image) -> Image.Image:
        """The image at the network's input size, as :meth:`prepare` resizes it."""
        image = image.convert("RGB")
        size = self.image_size
        return image if image.size == (size, size) else image.resize((size, size), Image.BILINEAR)

    def prepare(self, image: Image.Image) -> np.ndarray:
        """uint8 (S, S, 3) at the input size, with the scale-bar corner filled with the image's median colour."""
        size = self.image_size
        array = np.array(self.reduce(image), dtype=np.uint8)
        if self.options.mask_corner:
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
        if self.options.normalise == "image":
            mean = x.mean(dim=(2, 3), keepdim=True)
            std = x.std(dim=(2, 3), keepdim=True)
            return (x - mean) / (std + 0.02)
        return (x - 0.5) / 0.25

    # ---- inference ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _infer(self, images: torch.Tensor, net: SECNN | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Logits and penultimate features for uint8 images (N, 3, S, S), in batches, in eval mode."""
        net = net or self.net
        if net is None:
            raise RuntimeError("the SE-CNN has not been trained or loaded")
        net.eval()
        device = next(net.parameters()).device
        views = range(8) if self.options.tta else range(1)
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
            self.options.device = "cpu"  # stay there: a GPU that failed once is not retried mid-batch
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

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
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

    # ---- model files -------------------------------------------------------------------------------------------
    def save_files(self, folder: Path) -> dict[str, Any]:
        if self.net is None or self.feature_ood is None or self.image_ood is None:
            raise RuntimeError("only a trained SE-CNN can be saved")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        torch.save(state, folder / WEIGHTS_FILE)
        torch.save({**self.feature_ood.state("feature"), **self.image_ood.state("image")}, folder / CALIBRATION_FILE)
        config = {
            "options": {**self.options.to_dict(), "device": "auto"},
            "network": self.net.config.to_dict(),
            "temperature": self.temperature,
            "ood_scales": list(self.ood_scales),
        }
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return {
            "input_size": [self.image_size, self.image_size],
            "normalisation": (
                "per-image channel standardisation" if self.options.normalise == "image" else "(x - 0.5) / 0.25"
            )
            + (", scale-bar corner masked" if self.options.mask_corner else ""),
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
        # Options of a newer or older version that this one does not know are left out.
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
