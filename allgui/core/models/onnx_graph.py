"""ONNX graphs of the shipped networks: checked like any other file another laboratory hands over, then run by ONNX
Runtime on the CPU.

A graph is data that a runtime interprets, so before a session is made of it the graph must hold nothing that the
app's own exports never contain: only operators of the standard domain from :data:`ALLOWED_OPS` (no custom or
vendor domains, no control flow or functions that could hide other operators, none that grow tensors from
numbers inside the graph, such as ``Expand`` or ``ConstantOfShape``, which could exhaust memory), no tensor stored
in an external file (ONNX Runtime would read any path the graph names), and sizes within the bounds the caller
derives from the model's manifest. The bytes are checked and run from memory, so the file cannot change between
the checksum and the session.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

# Every operator that torch.onnx.export writes for the SE-CNN (allgui.core.models.secnn.torch_engine.export_graph).
ALLOWED_OPS = frozenset(
    {"Constant", "Conv", "Einsum", "Gemm", "MatMul", "MaxPool", "Mul", "ReduceMean", "Relu", "Sigmoid", "Unsqueeze"}
)
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
# 32 million numbers (128 MB of float32): some ten times the largest network the option bounds allow.
MAX_PARAMETERS = 32_000_000
MAX_NODES = 2_000


class InvalidGraph(ValueError):
    """An ONNX graph that AllGUI will not run; ``str()`` says why."""


def _tensors(graph: object) -> Iterator[object]:
    yield from graph.initializer  # type: ignore[attr-defined]
    for node in graph.node:  # type: ignore[attr-defined]
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors


def _dims(value_info: object) -> list[int | str]:
    shape = value_info.type.tensor_type.shape  # type: ignore[attr-defined]
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def check_graph(
    data: bytes,
    *,
    inputs: Mapping[str, Sequence[int | None]],
    outputs: Sequence[str],
    sha256: str | None = None,
) -> None:
    """Raise :class:`InvalidGraph` unless ``data`` is a graph AllGUI may run.

    ``inputs`` maps each input's name to its shape (None: a free batch dimension); ``outputs`` are the output
    names in order; ``sha256`` (from the manifest) is checked against these very bytes.
    """
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidGraph("the graph was changed since the model was saved (SHA-256 differs)")
    import onnx  # only where a graph is opened

    try:
        model = onnx.load_from_string(data)
    except Exception as error:  # noqa: BLE001 - a protobuf parse error of any kind means "not a graph"
        raise InvalidGraph(f"not an ONNX graph ({type(error).__name__})") from None
    domains = {entry.domain for entry in model.opset_import}
    if foreign := sorted(domains - STANDARD_DOMAINS):
        raise InvalidGraph(f"uses operator domain(s) {', '.join(map(repr, foreign))}; only the standard one is run")
    if len(model.functions):
        raise InvalidGraph("defines its own functions; AllGUI's graphs have none")
    graph = model.graph
    if len(graph.node) > MAX_NODES:
        raise InvalidGraph(f"has {len(graph.node)} operators; an AllGUI network has at most {MAX_NODES}")
    for node in graph.node:
        if node.domain not in STANDARD_DOMAINS:
            raise InvalidGraph(f"operator {node.op_type!r} comes from the custom domain {node.domain!r}")
        if node.op_type not in ALLOWED_OPS:
            raise InvalidGraph(f"uses the operator {node.op_type!r}, which AllGUI's networks never contain")
        if any(attribute.HasField("g") or len(attribute.graphs) for attribute in node.attribute):
            raise InvalidGraph(f"operator {node.name or node.op_type!r} carries a subgraph; AllGUI's graphs have none")
    if len(graph.sparse_initializer):
        raise InvalidGraph("holds sparse tensors; AllGUI's graphs have none")
    parameters = 0
    for tensor in _tensors(graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise InvalidGraph(f"tensor {tensor.name!r} is stored in an external file; graphs must be self-contained")
        parameters += int(np.prod(tensor.dims, dtype=np.int64)) if len(tensor.dims) else 1
    if parameters > MAX_PARAMETERS:
        raise InvalidGraph(f"holds {parameters:,} numbers; an AllGUI network has at most {MAX_PARAMETERS:,}")
    initializers = {tensor.name for tensor in graph.initializer}
    found_inputs = {value.name: _dims(value) for value in graph.input if value.name not in initializers}
    if set(found_inputs) != set(inputs):
        raise InvalidGraph(f"takes input(s) {sorted(found_inputs)}, not {sorted(inputs)}")
    for name, expected in inputs.items():
        dims = found_inputs[name]
        fixed = [d for d, want in zip(dims, expected, strict=False) if want is not None]
        wanted = [want for want in expected if want is not None]
        if len(dims) != len(expected) or fixed != wanted:
            raise InvalidGraph(f"input {name!r} has shape {dims}; the manifest's model needs {list(expected)}")
    found_outputs = [value.name for value in graph.output]
    if found_outputs != list(outputs):
        raise InvalidGraph(f"gives output(s) {found_outputs}, not {list(outputs)}")


def session(data: bytes, threads: int) -> object:
    """An ONNX Runtime session of checked graph bytes on the CPU with ``threads`` threads that do not spin (the
    decoding threads need the other cores)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: the graph's own warnings mean nothing to a technician
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
