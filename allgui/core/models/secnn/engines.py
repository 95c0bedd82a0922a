"""The engines that run an SE-CNN: one interface, ONNX Runtime here and torch in :mod:`.torch_engine`.

An engine takes the float32 network input (:func:`.preparation.network_input`) and gives back :class:`Outputs`;
calibration, the OOD scores, the review flags and the heat map are computed from those by the classifier, in numpy,
the same way whichever engine ran. The outputs are those of ``SECNN.outputs`` (the ONNX graph is that method).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from allgui.core.models import onnx_graph
from allgui.core.models.secnn.options import NetConfig

GRAPH_FILE = "model.onnx"
GRAPH_INPUT = "image"


def graph_outputs(config: NetConfig) -> list[str]:
    """The graph's output names, in the order of ``SECNN.outputs``."""
    excitations = [f"excitation_{index + 1}" for index in range(config.blocks)]
    return ["logits", "features", *excitations, "class_maps", "mean_map"]


@dataclass
class Outputs:
    logits: np.ndarray  # (n, 4) float64
    features: np.ndarray  # (n, F) float64: pooled features, read by the feature OOD score
    excitations: list[np.ndarray]  # per block, (n, C_i) float32 in [0, 1]
    # Each class's Grad-CAM map of the last block, unscaled, (n, 4, h, w) float32; and the last block's mean
    # activation (n, h, w), the heat map where no class map is positive. None where the engine was not asked.
    class_maps: np.ndarray | None = None
    mean_map: np.ndarray | None = None

    @classmethod
    def of(cls, values: Sequence[np.ndarray], config: NetConfig) -> Outputs:
        """From the engine's arrays in graph order, checked against the network's shape (a graph that passed its
        checks but computes something else is refused, not shown)."""
        logits, features, *excitations, class_maps, mean_map = (np.asarray(value) for value in values)
        n = len(logits)
        expected = [(n, config.num_classes), (n, config.channels[-1])] + [(n, c) for c in config.channels]
        found = [logits.shape, features.shape] + [e.shape for e in excitations]
        if (
            found != expected
            or class_maps.shape[:2] != (n, config.num_classes)
            or mean_map.shape != (n, *class_maps.shape[2:])
        ):
            raise onnx_graph.InvalidGraph(f"the network gave outputs of shapes {found}, not {expected}")
        return cls(
            logits.astype(np.float64),
            features.astype(np.float64),
            [e.astype(np.float32) for e in excitations],
            class_maps.astype(np.float32),
            mean_map.astype(np.float32),
        )


class Engine(Protocol):
    name: str  # "ONNX Runtime" or "torch"
    batch: int  # images per run

    @property
    def device_name(self) -> str: ...

    def run(self, x: np.ndarray, maps: bool = False) -> Outputs:
        """Outputs for the float32 (n, 3, S, S) input; ``maps``: the attention view needs the maps exactly (the
        fast torch path leaves them out)."""
        ...


def check_network_graph(data: bytes, config: NetConfig, size: int, sha256: str | None) -> None:
    """The checks of :func:`onnx_graph.check_graph` for an SE-CNN of ``config`` at ``size`` pixels."""
    onnx_graph.check_graph(
        data, inputs={GRAPH_INPUT: (None, 3, size, size)}, outputs=graph_outputs(config), sha256=sha256
    )


class OnnxEngine:
    """An SE-CNN's ONNX graph in ONNX Runtime on the CPU."""

    name = "ONNX Runtime"
    batch = 32  # 64 was no faster; 32 keeps the first block's maps in cache

    def __init__(self, graph: bytes, config: NetConfig, threads: int) -> None:
        self.config = config
        self.session = onnx_graph.session(graph, threads)

    @property
    def device_name(self) -> str:
        return "CPU"

    def run(self, x: np.ndarray, maps: bool = False) -> Outputs:
        del maps  # the graph always computes them; they cost under 1% of a run
        return Outputs.of(self.session.run(None, {GRAPH_INPUT: x}), self.config)  # type: ignore[attr-defined]
