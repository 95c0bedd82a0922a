"""The SE-CNN classifier: input preparation, calibrated prediction, OOD scores, attention and its model files.

The network runs in an engine (:mod:`.engines`): ONNX Runtime by default, torch (:mod:`.torch_engine`) for a GPU,
for models saved without a graph, or when picked. This module imports neither torch nor ONNX Runtime itself, so a
model loads and classifies without torch. Training (:mod:`.trainer`) needs torch; the options are a
:class:`~.options.SECNNOptions`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from allgui.core.classes import CLASS_NAMES
from allgui.core.models import calibration
from allgui.core.models.base import Attention, BatchPredictor, Classifier, Prediction, ReviewPolicy
from allgui.core.models.manifest import InvalidManifest, check_options
from allgui.core.models.runtime import check_engine, inference_threads, require_torch, uses_torch
from allgui.core.models.secnn.engines import GRAPH_FILE, Engine, OnnxEngine, Outputs, check_network_graph
from allgui.core.models.secnn.options import DEFAULTS, MAX_WIDTH_PIXELS, OPTION_BOUNDS, NetConfig, SECNNOptions
from allgui.core.models.secnn.preparation import CORNER_BOX, Prepared, describe, masked, network_input
from allgui.core.models.torch_file import check_state, tensor_shapes
from allgui.core.progress import LogCallback
from allgui.core.statefile import read_state_json

WEIGHTS_FILE = "weights.pt"
CALIBRATION_FILE = "calibration.safetensors"
LEGACY_CALIBRATION_FILE = "calibration.pt"  # a torch file: models saved before the ONNX graphs
CONFIG_FILE = "secnn.json"
IMAGE_STATISTICS = 21  # columns of Prepared.statistics

__all__ = ["CALIBRATION_FILE", "CONFIG_FILE", "CORNER_BOX", "GRAPH_FILE", "WEIGHTS_FILE", "SECNNClassifier"]


class SECNNClassifier(Classifier):
    kind = "secnn"
    title = "SE-CNN (squeeze-and-excitation network)"
    options: SECNNOptions  # a mapping too, as Classifier.options is for the other kinds

    def __init__(self, **options: Any) -> None:
        settings = SECNNOptions.from_options(options)
        super().__init__()
        self.options = settings
        self.net: Any = None  # the torch SECNN: set by training, or loaded from `weights` for the torch engine
        self.weights: bytes | None = None  # weights.pt of a loaded model
        self.graph: bytes | None = None  # its checked ONNX graph
        self.config: NetConfig = settings.net_config()
        self.temperature = 1.0
        self.feature_ood: calibration.Mahalanobis | None = None
        self.image_ood: calibration.Mahalanobis | None = None
        self.ood_scales = (1.0, 1.0)
        self.fit_summary: dict[str, Any] = {}
        self.engine_choice = "auto"
        self._engine: Engine | None = None
        self._log: LogCallback | None = None

    # ---- engine and device -------------------------------------------------------------------------------------
    def set_device(self, preference: str, log: LogCallback | None = None) -> None:
        self.options.device = preference
        self._log = log
        self._engine = None

    def set_engine(self, engine: str) -> None:
        self.engine_choice = check_engine(engine)
        self._engine = None

    @property
    def trained(self) -> bool:
        return self.net is not None or self.graph is not None or self.weights is not None

    @property
    def engine(self) -> Engine:
        """The engine that runs the network, chosen on first use (:func:`allgui.core.models.runtime.uses_torch`)."""
        if self._engine is None:
            if not self.trained:
                raise RuntimeError("the SE-CNN has not been trained or loaded")
            if uses_torch(self.engine_choice, self.options.device, self.graph is not None):
                why = "this model has no ONNX graph (it was saved by an earlier AllGUI)" if self.graph is None else ""
                require_torch(why or "the torch engine was chosen")
                from allgui.core.models.secnn.torch_engine import TorchEngine

                self._engine = TorchEngine(self, self._log)
            else:
                assert self.graph is not None
                if self.options.device == "cuda":
                    warnings.warn("ONNX Runtime runs on the CPU here; the torch engine runs on a GPU", stacklevel=2)
                self._engine = OnnxEngine(self.graph, self.config, inference_threads())
        return self._engine

    def torch_net(self) -> Any:
        """The torch network (training's, or loaded from the weights file on first use)."""
        if self.net is None:
            if self.weights is None:
                raise RuntimeError("the SE-CNN has not been trained or loaded")
            from allgui.core.models.secnn.torch_engine import load_net

            self.net = load_net(self.weights, self.config)
        return self.net

    @property
    def device_name(self) -> str:
        return self.engine.device_name if self.trained else "CPU"

    @property
    def engine_name(self) -> str:
        return self.engine.name if self.trained else "not trained"

    def batch_predictor(self) -> BatchPredictor:
        return _Predictor(self)

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

    def pixels(self, image: Image.Image) -> np.ndarray:
        """uint8 (S, S, 3) at the input size, with the scale-bar corner filled with the image's median colour."""
        return masked(image, self.image_size, bool(self.options.mask_corner))[0]

    def prepare(self, image: Image.Image) -> Prepared:
        """What the network and the OOD scores read of one image (thread-safe, numpy only)."""
        return describe(*masked(image, self.image_size, bool(self.options.mask_corner)))

    # ---- inference ---------------------------------------------------------------------------------------------
    def outputs(self, prepared: Sequence[Prepared], maps: bool = False) -> Outputs:
        """The network's outputs for prepared images, in the engine's batches; test-time augmentation averages the
        logits and features over the 8 flips and rotations (the maps are the image's own)."""
        engine = self.engine
        views = range(8) if self.options.tta and not maps else range(1)
        parts: list[Outputs] = []
        for start in range(0, len(prepared), engine.batch):
            x = network_input(prepared[start : start + engine.batch], self.options.normalise == "image")
            runs = [engine.run(np.ascontiguousarray(_dihedral(x, view)), maps) for view in views]
            out = runs[0]
            if len(runs) > 1:
                out.logits = np.mean([run.logits for run in runs], axis=0)
                out.features = np.mean([run.features for run in runs], axis=0)
            parts.append(out)
        if not parts:
            return Outputs(np.zeros((0, 4)), np.zeros((0, self.config.channels[-1])), [])
        if len(parts) == 1:
            return parts[0]
        return Outputs(
            np.concatenate([p.logits for p in parts]),
            np.concatenate([p.features for p in parts]),
            [np.concatenate(e) for e in zip(*(p.excitations for p in parts), strict=True)],
        )

    def _ood(self, features: np.ndarray, prepared: Sequence[Prepared]) -> np.ndarray | None:
        if self.feature_ood is None or self.image_ood is None:
            return None
        statistics = np.stack([item.statistics for item in prepared]) if prepared else np.zeros((0, 21))
        return np.maximum(
            self.feature_ood.score(features) / self.ood_scales[0],
            self.image_ood.score(statistics) / self.ood_scales[1],
        )

    def predict_prepared(self, prepared: Sequence[Prepared]) -> list[Prediction]:
        out = self.outputs(prepared)
        probabilities = calibration.softmax(out.logits, self.temperature)
        ood = self._ood(out.features, prepared)
        return [self._review(row, None if ood is None else float(ood[i])) for i, row in enumerate(probabilities)]

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        return self.predict_prepared([self.prepare(image) for image in images])

    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Uncalibrated logits (for evaluation and temperature fitting)."""
        return self.outputs([self.prepare(image) for image in images]).logits

    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        return calibration.softmax(self.logits(images), self.temperature)

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Penultimate (globally pooled) features, shape (n, feature_size)."""
        return self.outputs([self.prepare(image) for image in images]).features

    def ood_scores(self, images: Sequence[Image.Image]) -> np.ndarray | None:
        prepared = [self.prepare(image) for image in images]
        return self._ood(self.outputs(prepared).features, prepared)

    def attention(self, image: Image.Image) -> Attention:
        """SE excitations of every block and the Grad-CAM map of the last block for the predicted class."""
        out = self.outputs([self.prepare(image)], maps=True)
        assert out.class_maps is not None and out.mean_map is not None
        cam = np.maximum(out.class_maps[0, int(out.logits[0].argmax())], 0.0)
        if float(cam.max()) <= 0:
            # Nothing pushes towards the class: fall back to the SE-weighted activation.
            cam = np.maximum(out.mean_map[0], 0.0)
        width, height = image.size
        heat = _resize_bilinear(cam.astype(np.float32), height, width)
        heat = heat - heat.min()
        heat = heat / heat.max() if float(heat.max()) > 0 else heat
        return Attention(
            block_names=self.config.block_names,
            excitations=[e[0] for e in out.excitations],
            heatmap=heat.astype(np.float32),
        )

    # ---- training (torch) --------------------------------------------------------------------------------------
    def fit(self, paths: Sequence[Path], labels: np.ndarray, **kwargs: Any) -> dict[str, Any]:
        require_torch("training an SE-CNN")
        from allgui.core.models.secnn import trainer

        return dict(trainer.fit(self, paths, labels, **kwargs))

    def trained_network(self, net: Any) -> None:
        """Install a network that training produced, with its ONNX graph: the trained model runs as it will once
        saved and loaded (the same engine, the same numbers)."""
        from allgui.core.models.secnn.torch_engine import export_graph, weights_bytes

        self.net = net.eval()
        self.config = net.config
        self.weights, self.graph = weights_bytes(net), export_graph(net, self.image_size)
        self._engine = None

    # ---- model files -------------------------------------------------------------------------------------------
    def save_files(self, folder: Path) -> dict[str, Any]:
        if not self.trained or self.feature_ood is None or self.image_ood is None:
            raise RuntimeError("only a trained SE-CNN can be saved")
        require_torch("saving an SE-CNN (its weights file and ONNX graph are written by torch)")
        from safetensors.numpy import save

        from allgui.core.models.secnn.torch_engine import export_graph, weights_bytes

        net = self.torch_net()
        weights = self.weights or weights_bytes(net)
        graph = self.graph or export_graph(net, self.image_size)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / WEIGHTS_FILE).write_bytes(weights)
        (folder / GRAPH_FILE).write_bytes(graph)
        state = {**self.feature_ood.state("feature"), **self.image_ood.state("image")}
        (folder / CALIBRATION_FILE).write_bytes(save(state))
        config = {
            "options": {**self.options.to_dict(), "device": "auto"},
            "network": self.config.to_dict(),
            "temperature": self.temperature,
            "ood_scales": list(self.ood_scales),
        }
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        self.weights, self.graph, self._engine = weights, graph, None  # from now on run as it will be loaded
        return {
            "input_size": [self.image_size, self.image_size],
            "normalisation": (
                "per-image channel standardisation" if self.options.normalise == "image" else "(x - 0.5) / 0.25"
            )
            + (", scale-bar corner masked" if self.options.mask_corner else ""),
            "architecture": self.config.to_dict(),
            "temperature": self.temperature,
            "engines": {"onnx": GRAPH_FILE, "torch": WEIGHTS_FILE},
            "files": [WEIGHTS_FILE, GRAPH_FILE, CALIBRATION_FILE, CONFIG_FILE],
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
        model.config = network
        digests = manifest.get("files", {}) if isinstance(manifest, dict) else {}
        if (folder / GRAPH_FILE).exists():
            graph = (folder / GRAPH_FILE).read_bytes()
            check_network_graph(graph, network, size, digests.get(GRAPH_FILE))
            model.graph = graph
        else:
            require_torch("this model has no ONNX graph (it was saved by an earlier AllGUI)")
        model.weights = (folder / WEIGHTS_FILE).read_bytes()
        # Read by torch only later, if ever: a file that would run code, or does not fit the network, is refused now.
        check_state(tensor_shapes(model.weights), network.state_shapes())
        if (folder / CALIBRATION_FILE).exists():
            from safetensors.numpy import load

            try:
                state = load((folder / CALIBRATION_FILE).read_bytes())
            except Exception as error:  # noqa: BLE001 - safetensors' own error types
                raise ValueError(f"{CALIBRATION_FILE} is not a safetensors file of arrays ({error})") from None
        else:
            require_torch(f"this model's {LEGACY_CALIBRATION_FILE} was written by an earlier AllGUI")
            from allgui.core.models.secnn.torch_engine import load_legacy_calibration

            state = load_legacy_calibration((folder / LEGACY_CALIBRATION_FILE).read_bytes())
        model.feature_ood = calibration.Mahalanobis.from_state(state, "feature", network.channels[-1])
        model.image_ood = calibration.Mahalanobis.from_state(state, "image", IMAGE_STATISTICS)
        model.temperature = float(config["temperature"])
        model.ood_scales = (float(config["ood_scales"][0]), float(config["ood_scales"][1]))
        if manifest and "review" in manifest:
            model.review = ReviewPolicy.from_dict(manifest["review"])
        return model


class _Predictor(BatchPredictor):
    """The SE-CNN in the batch pipeline: :meth:`prepare` (numpy) in the decoding threads, the engine on batches."""

    classifier: SECNNClassifier

    def resized(self, image: Image.Image) -> Image.Image:
        return self.classifier.reduce(image)

    def prepare(self, image: Image.Image) -> Prepared:
        return self.classifier.prepare(image)

    def predict_prepared(self, prepared: Sequence[Any]) -> list[Prediction]:
        return self.classifier.predict_prepared(prepared)


def _dihedral(x: np.ndarray, index: int) -> np.ndarray:
    """The ``index``-th of the 8 flips and rotations of (n, 3, S, S) images (``index`` 0: the images)."""
    x = np.rot90(x, index % 4, axes=(-2, -1))
    return np.flip(x, axis=-1) if index >= 4 else x


def _resize_bilinear(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) float32 resized to (height, width) as ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` does: half-pixel centres, edges clamped."""

    def axis(out: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.maximum((np.arange(out, dtype=np.float32) + np.float32(0.5)) * np.float32(size / out) - 0.5, 0)
        low = np.minimum(source.astype(np.int64), size - 1)
        high = np.minimum(low + 1, size - 1)
        return low, high, (source - low).astype(np.float32)

    rows_low, rows_high, row_weight = axis(height, values.shape[0])
    cols_low, cols_high, col_weight = axis(width, values.shape[1])
    top = values[rows_low] * (1 - row_weight[:, None]) + values[rows_high] * row_weight[:, None]
    return top[:, cols_low] * (1 - col_weight[None, :]) + top[:, cols_high] * col_weight[None, :]
