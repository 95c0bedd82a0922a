"""The SE-CNN's two engines: ONNX Runtime (the default, no torch) and torch give the same answers, models saved
before the graphs still load through torch, and a graph that is not one AllGUI wrote is refused before it runs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import external_data_helper, helper
from safetensors.numpy import load_file

from allgui.core.classify import classify_paths
from allgui.core.imageio import read_rgb
from allgui.core.models import runtime
from allgui.core.models.onnx_graph import InvalidGraph, check_graph
from allgui.core.models.secnn import SECNNClassifier
from allgui.core.models.secnn.classifier import CALIBRATION_FILE, LEGACY_CALIBRATION_FILE
from allgui.core.models.secnn.engines import GRAPH_FILE, check_network_graph, graph_outputs
from allgui.core.models.store import (
    MANIFEST,
    LoadedModel,
    ModelFilesError,
    ModelLoadError,
    load_model,
    save_model,
    sha256_of,
)
from allgui.resources import shipped_models_dir
from tests.hidden_torch import HIDE_TORCH

SECNN = shipped_models_dir() / "secnn-default"
HASH_SVM = shipped_models_dir() / "cnn-hash-svm-taleqani"
ROW_FIELDS = ("path", "error", "predicted", "needs_review", "reasons", "duplicate_group", "phash")


@pytest.fixture(autouse=True)
def float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch engine in float32: its bfloat16 convolutions are not exact by design (tests/test_fast_path.py)."""
    monkeypatch.setenv("ALLGUI_INFERENCE_PRECISION", "float32")


@pytest.fixture(scope="module")
def paths(data_dir: Path) -> list[Path]:
    """200 real images of every class, spread over the capture order."""
    chosen = sorted(data_dir.rglob("*.jpg"))[::13][:200]
    assert len(chosen) == 200 and len({p.parent.name for p in chosen}) == 4
    return chosen


def _in_engine(folder: Path, engine: str) -> LoadedModel:
    loaded = load_model(folder)
    loaded.classifier.set_engine(engine)
    return loaded


# ---- the same answers ------------------------------------------------------------------------------------------
def test_secnn_rows_are_the_same_in_onnx_runtime_and_torch(paths: list[Path], tmp_path: Path) -> None:
    again = tmp_path / "again.png"  # a copy of one image in another format: a duplicate group in the export
    read_rgb(paths[0]).save(again)
    rows = {}
    for engine, name in (("onnx", "ONNX Runtime"), ("torch", "torch")):
        loaded = _in_engine(SECNN, engine)
        rows[engine] = classify_paths([*paths, again], loaded)
        assert loaded.classifier.engine_name == name
    onnx_rows, torch_rows = rows["onnx"], rows["torch"]
    assert not any(row.error for row in onnx_rows)
    for field in ROW_FIELDS:
        assert [getattr(row, field) for row in onnx_rows] == [getattr(row, field) for row in torch_rows], field
    difference = np.abs(np.array([r.probabilities for r in onnx_rows]) - [r.probabilities for r in torch_rows])
    assert difference.max() < 1e-4
    # The comparison covers both answers of each kind: several classes, flagged and unflagged images.
    assert len({row.predicted for row in onnx_rows}) == 4
    assert 0 < sum(row.needs_review for row in onnx_rows) < len(onnx_rows)
    assert onnx_rows[0].duplicate_group is not None and onnx_rows[0].duplicate_group == onnx_rows[-1].duplicate_group


def test_secnn_scores_and_attention_are_the_same_in_both_engines(paths: list[Path]) -> None:
    onnx_model, torch_model = (_in_engine(SECNN, engine).classifier for engine in ("onnx", "torch"))
    assert isinstance(onnx_model, SECNNClassifier) and isinstance(torch_model, SECNNClassifier)
    prepared = [onnx_model.prepare(onnx_model.read(p)) for p in paths[::4]]
    onnx_out, torch_out = onnx_model.outputs(prepared), torch_model.outputs(prepared)
    np.testing.assert_allclose(onnx_out.logits, torch_out.logits, atol=1e-4)
    np.testing.assert_allclose(onnx_out.features, torch_out.features, rtol=1e-4, atol=1e-4)
    for a, b in zip(onnx_out.excitations, torch_out.excitations, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    onnx_ood = [p.ood_score for p in onnx_model.predict_prepared(prepared)]
    np.testing.assert_allclose(onnx_ood, [p.ood_score for p in torch_model.predict_prepared(prepared)], rtol=1e-4)
    for path in {p.parent.name: p for p in paths}.values():  # one image of each class
        image = read_rgb(path)
        onnx_attention, torch_attention = onnx_model.attention(image), torch_model.attention(image)
        assert onnx_attention.heatmap.shape == image.size[::-1] and onnx_attention.heatmap.max() == 1
        np.testing.assert_allclose(onnx_attention.heatmap, torch_attention.heatmap, atol=1e-4)
        for a, b in zip(onnx_attention.excitations, torch_attention.excitations, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4)


def test_cnn_hash_svm_answers_are_the_same_in_both_engines(paths: list[Path]) -> None:
    onnx_model, torch_model = (_in_engine(HASH_SVM, engine).classifier for engine in ("onnx", "torch"))
    assert onnx_model.engine_name == "ONNX Runtime + scikit-learn" and torch_model.engine_name == "torch + scikit-learn"
    images = [onnx_model.read(p) for p in paths]
    onnx_features, torch_features = onnx_model.cnn.features(images), torch_model.cnn.features(images)
    np.testing.assert_allclose(onnx_features, torch_features, rtol=1e-4, atol=1e-4)
    onnx_answers, torch_answers = onnx_model.predict(images), torch_model.predict(images)
    assert [p.predicted for p in onnx_answers] == [p.predicted for p in torch_answers]
    assert [p.needs_review for p in onnx_answers] == [p.needs_review for p in torch_answers]
    assert [p.review_reasons for p in onnx_answers] == [p.review_reasons for p in torch_answers]
    difference = np.abs(np.stack([p.probabilities for p in onnx_answers]) - [p.probabilities for p in torch_answers])
    assert difference.max() < 1e-4
    assert len({p.predicted for p in onnx_answers}) == 4


# ---- without torch ---------------------------------------------------------------------------------------------
def _python(code: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


# A finder, first on sys.meta_path, that notes where torch is first imported from (and lets the import go on).
TRACE_TORCH = """
import sys, traceback
class _Trace:
    first = None
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and _Trace.first is None:
            frames = [f for f in traceback.extract_stack() if not f.filename.startswith("<")]
            _Trace.first = [f"{f.filename}:{f.lineno}" for f in frames[-8:]]
        return None
sys.meta_path.insert(0, _Trace())
"""


@pytest.mark.skipif(runtime.gpu_present(), reason="with a GPU, the default engine is torch on it")
@pytest.mark.parametrize("folder", [SECNN, HASH_SVM], ids=lambda folder: folder.name)
def test_a_shipped_model_classifies_in_onnx_runtime_without_importing_torch(paths: list[Path], folder: Path) -> None:
    few = [str(p) for p in paths[::25]]
    code = TRACE_TORCH + (
        "import json\n"
        "from allgui.core.classify import classify_paths\n"
        "from allgui.core.models.store import load_model\n"
        f"loaded = load_model({str(folder)!r})\n"
        f"rows = classify_paths({few!r}, loaded)\n"
        "out = [loaded.classifier.engine_name, [r.error or r.predicted for r in rows]]\n"
        "print(json.dumps({'out': out, 'torch': 'torch' in sys.modules, 'from': _Trace.first}))\n"
    )
    result = json.loads(_python(code).stdout.strip().splitlines()[-1])
    assert not result["torch"], "torch was imported from:\n" + "\n".join(result["from"] or [])
    engine = "ONNX Runtime" if folder == SECNN else "ONNX Runtime + scikit-learn"
    assert result["out"] == [engine, [row.predicted for row in classify_paths(few, _in_engine(folder, "onnx"))]]


def _legacy_copy(folder: Path, target: Path) -> Path:
    """``folder``'s SE-CNN as an earlier AllGUI saved it: no graph, the calibration a torch file."""
    shutil.copytree(folder, target)
    state = load_file(target / CALIBRATION_FILE)
    torch.save({name: torch.from_numpy(array).double() for name, array in state.items()}, target / "calibration.pt")
    (target / CALIBRATION_FILE).unlink()
    (target / GRAPH_FILE).unlink()
    manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    manifest.pop("engines", None)
    manifest["files"] = {
        p.relative_to(target).as_posix(): sha256_of(p) for p in sorted(target.rglob("*")) if p.name != MANIFEST
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    assert LEGACY_CALIBRATION_FILE in manifest["files"] and GRAPH_FILE not in manifest["files"]
    return target


def test_a_model_without_a_graph_runs_in_torch_with_the_same_answers(paths: list[Path], tmp_path: Path) -> None:
    legacy = load_model(_legacy_copy(SECNN, tmp_path / "legacy"))
    shipped = _in_engine(SECNN, "onnx")
    assert legacy.classifier.engine_name == "torch"
    legacy.classifier.set_engine("onnx")  # there is no graph to run: still torch
    assert legacy.classifier.engine_name == "torch"
    few = paths[::5]
    legacy_rows, shipped_rows = classify_paths(few, legacy), classify_paths(few, shipped)
    for field in ROW_FIELDS:
        assert [getattr(row, field) for row in legacy_rows] == [getattr(row, field) for row in shipped_rows], field
    np.testing.assert_allclose(
        [r.probabilities for r in legacy_rows], [r.probabilities for r in shipped_rows], atol=1e-4
    )


def test_without_torch_an_old_model_is_refused_clearly_and_the_shipped_ones_run(
    paths: list[Path], tmp_path: Path
) -> None:
    legacy = _legacy_copy(SECNN, tmp_path / "legacy")
    few = [str(p) for p in paths[::40]]
    code = HIDE_TORCH + (
        "import json\n"
        "from allgui.core.classify import classify_paths\n"
        "from allgui.core.models import runtime\n"
        "from allgui.core.models.store import ModelLoadError, load_model\n"
        "from allgui.resources import shipped_models_dir\n"
        "assert not runtime.torch_installed()\n"
        "out = {}\n"
        "try:\n"
        f"    load_model({str(legacy)!r})\n"
        "except ModelLoadError as error:\n"
        "    out['legacy'] = [type(error).__name__, str(error)]\n"
        "for name in ('cnn-hash-svm-taleqani', 'secnn-default'):\n"
        "    loaded = load_model(shipped_models_dir() / name)\n"
        f"    out[name] = [r.error or r.predicted for r in classify_paths({few!r}, loaded)]\n"
        "loaded.classifier.set_engine('torch')\n"
        "try:\n"
        f"    loaded.classifier.predict([loaded.classifier.read({few[0]!r})])\n"
        "except runtime.EngineUnavailable as error:\n"
        "    out['torch'] = str(error)\n"
        "print(json.dumps(out))\n"
    )
    result = _python(code)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    kind, message = out["legacy"]
    assert kind == "ModelWeightsError"
    assert message.startswith(str(legacy)) and "no ONNX graph" in message
    assert "torch is not installed" in message and "full AllGUI bundle" in message
    assert "Traceback" not in result.stderr and "torch/" not in message
    assert "torch engine was chosen" in out["torch"] and "full AllGUI bundle" in out["torch"]
    for folder in (SECNN, HASH_SVM):  # the laboratory bundle runs them
        assert out[folder.name] == [row.predicted for row in classify_paths(few, _in_engine(folder, "onnx"))]


# ---- saving ----------------------------------------------------------------------------------------------------
def test_a_saved_model_round_trips_with_its_graph(paths: list[Path], tmp_path: Path) -> None:
    shipped = _in_engine(SECNN, "onnx")
    manifest = save_model(shipped.classifier, tmp_path / "copy", model_id="copy")
    graph = tmp_path / "copy" / GRAPH_FILE
    assert manifest["files"][GRAPH_FILE] == sha256_of(graph) and manifest["engines"]["onnx"] == GRAPH_FILE
    assert json.loads((tmp_path / "copy" / MANIFEST).read_text(encoding="utf-8"))["files"] == manifest["files"]
    copy = _in_engine(tmp_path / "copy", "auto")
    assert isinstance(copy.classifier, SECNNClassifier) and copy.classifier.graph == graph.read_bytes()
    images = [shipped.classifier.read(p) for p in paths[::10]]
    before, after = shipped.classifier.predict(images), copy.classifier.predict(images)
    assert [p.predicted for p in after] == [p.predicted for p in before]
    assert [p.needs_review for p in after] == [p.needs_review for p in before]
    np.testing.assert_allclose([p.probabilities for p in after], [p.probabilities for p in before], atol=1e-6)
    np.testing.assert_allclose([p.ood_score for p in after], [p.ood_score for p in before], rtol=1e-6)


# ---- hostile graphs --------------------------------------------------------------------------------------------
def _relu(model: onnx.ModelProto) -> onnx.NodeProto:
    return next(node for node in model.graph.node if node.op_type == "Relu")


def _custom_node(model: onnx.ModelProto) -> None:
    _relu(model).domain = "com.example.evil"


def _custom_opset(model: onnx.ModelProto) -> None:
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _relu(model).domain = "com.microsoft"


def _external_data(model: onnx.ModelProto) -> None:
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    external_data_helper.set_external_data(tensor, location="../../../../etc/passwd")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL


def _grower(op: str):  # noqa: ANN202
    def mutate(model: onnx.ModelProto) -> None:
        shape = helper.make_node("Constant", [], ["huge_shape"], value=helper.make_tensor("s", 7, [1], [1 << 40]))
        inputs = ["huge_shape"] if op == "ConstantOfShape" else ["features", "huge_shape"]
        model.graph.node.extend([shape, helper.make_node(op, inputs, ["huge"])])

    return mutate


def _function(model: onnx.ModelProto) -> None:
    body = [helper.make_node("Relu", ["x"], ["y"])]
    model.functions.append(helper.make_function("local", "hidden", ["x"], ["y"], body, [helper.make_opsetid("", 18)]))


def _subgraph(model: onnx.ModelProto) -> None:
    _relu(model).attribute.append(helper.make_attribute("body", helper.make_graph([], "hidden", [], [])))


def _too_many_numbers(model: onnx.ModelProto) -> None:
    model.graph.initializer.append(onnx.TensorProto(name="big", data_type=onnx.TensorProto.FLOAT, dims=[40_000_000]))


def _input_size(model: onnx.ModelProto) -> None:
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_value = 128


def _renamed_output(model: onnx.ModelProto) -> None:
    model.graph.output[0].name = "scores"


HOSTILE = {
    "custom-domain-node": (_custom_node, "custom domain 'com.example.evil'"),
    "custom-domain-opset": (_custom_opset, "domain\\(s\\) 'com.microsoft'"),
    "external-data": (_external_data, "stored in an external file"),
    "expand": (_grower("Expand"), "operator 'Expand'"),
    "constant-of-shape": (_grower("ConstantOfShape"), "operator 'ConstantOfShape'"),
    "function": (_function, "defines its own functions"),
    "subgraph": (_subgraph, "carries a subgraph"),
    "too-many-numbers": (_too_many_numbers, "holds 4[0-9,]+ numbers"),
    "input-size": (_input_size, "input 'image' has shape \\['batch', 3, 128, 128\\]"),
    "renamed-output": (_renamed_output, "gives output\\(s\\) \\['scores'"),
    "garbage": (None, "not an ONNX graph"),
}


def _with_graph(source: Path, target: Path, name: str, graph: bytes) -> Path:
    """A copy of the model folder ``source`` with ``graph`` as its ``name`` and the manifest's SHA-256 to match."""
    shutil.copytree(source, target)
    (target / name).write_bytes(graph)
    manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"][name] = sha256_of(target / name)
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return target


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_graph_is_refused_with_the_reason(case: str, tmp_path: Path) -> None:
    mutate, reason = HOSTILE[case]
    shipped = load_model(SECNN).classifier
    assert isinstance(shipped, SECNNClassifier) and shipped.graph is not None
    model = onnx.load_from_string(shipped.graph)
    check_network_graph(model.SerializeToString(), shipped.config, 96, None)  # unchanged, it passes
    if mutate is None:
        graph = b"\x08\x07 not an ONNX graph, nor a protobuf"
    else:
        mutate(model)
        graph = model.SerializeToString()
    with pytest.raises(InvalidGraph, match=reason):
        check_network_graph(graph, shipped.config, 96, hashlib.sha256(graph).hexdigest())
    with pytest.raises(ModelLoadError, match=reason) as refused:
        load_model(_with_graph(SECNN, tmp_path / "model", GRAPH_FILE, graph))
    assert str(refused.value).startswith(str(tmp_path / "model"))


def test_a_changed_graph_is_refused_by_its_checksum(tmp_path: Path) -> None:
    data = (SECNN / GRAPH_FILE).read_bytes()
    recorded = json.loads((SECNN / MANIFEST).read_text(encoding="utf-8"))["files"][GRAPH_FILE]
    assert hashlib.sha256(data).hexdigest() == recorded
    model = onnx.load_from_string(data)
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    weight.raw_data = bytes([weight.raw_data[0] ^ 1]) + weight.raw_data[1:]  # one bit of one weight
    changed = model.SerializeToString()
    arguments = {"inputs": {"image": (None, 3, 96, 96)}, "outputs": graph_outputs(load_model(SECNN).classifier.config)}
    check_graph(changed, **arguments)  # a well-formed graph...
    with pytest.raises(InvalidGraph, match="changed since the model was saved \\(SHA-256 differs\\)"):
        check_graph(changed, **arguments, sha256=recorded)  # ...but not the one the manifest names
    folder = tmp_path / "model"
    shutil.copytree(SECNN, folder)
    (folder / GRAPH_FILE).write_bytes(changed)
    with pytest.raises(ModelFilesError, match=f"{GRAPH_FILE} was changed since the model was saved"):
        load_model(folder)


def test_a_graph_from_another_model_is_refused(tmp_path: Path) -> None:
    """The cnn-hash-svm's 48-px network with the 96-px default's graph (its SHA-256 recorded as if it belonged)."""
    folder = _with_graph(HASH_SVM, tmp_path / "model", f"cnn/{GRAPH_FILE}", (SECNN / GRAPH_FILE).read_bytes())
    with pytest.raises(ModelLoadError, match="input 'image' has shape .* needs \\[None, 3, 48, 48\\]"):
        load_model(folder)


# ---- which engine ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("engine", "device", "has_graph", "gpu", "torch_here", "expected"),
    [
        ("auto", "auto", True, False, True, False),  # a CPU machine: ONNX Runtime
        ("auto", "auto", True, True, True, True),  # a GPU and torch: torch on it
        ("auto", "auto", True, True, False, False),  # a GPU but the bundle without torch
        ("auto", "cpu", True, True, True, False),  # the CPU asked for
        ("auto", "cuda", True, False, True, True),  # CUDA asked for: torch (which says if there is none)
        ("auto", "cuda", True, True, False, False),
        ("AUTO", "auto", True, False, True, False),
        ("onnx", "cuda", True, True, True, False),
        ("torch", "cpu", True, False, True, True),
        ("torch", "auto", True, False, False, True),  # picked: torch, which then says it is not installed
        ("auto", "auto", False, False, True, True),  # no graph: only torch can run it
        ("onnx", "cpu", False, False, False, True),
    ],
)
def test_uses_torch_decisions(monkeypatch, engine, device, has_graph, gpu, torch_here, expected) -> None:
    monkeypatch.setattr(runtime, "gpu_present", lambda: gpu)
    monkeypatch.setattr(runtime, "torch_installed", lambda: torch_here)
    assert runtime.uses_torch(engine, device, has_graph) is expected


def test_unknown_engines_and_a_missing_torch_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="engine must be one of auto, onnx, torch, not 'tensorrt'"):
        runtime.uses_torch("tensorrt", "auto", True)
    classifier = load_model(SECNN).classifier
    with pytest.raises(ValueError, match="engine must be one of"):
        classifier.set_engine("tensorrt")
    monkeypatch.setattr(runtime, "torch_installed", lambda: False)
    classifier.set_engine("torch")
    with pytest.raises(runtime.EngineUnavailable, match="the torch engine was chosen, which needs torch; torch is not"):
        _ = classifier.engine_name
