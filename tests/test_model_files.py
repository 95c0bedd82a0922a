"""Loading a model folder never runs code from it, and every tampered folder is refused with a clear error while
the active model stays active.

The attacker here controls the whole folder, so the malicious cases also rewrite manifest.json with matching
SHA-256 digests: the checksum check alone must not be what saves us. A control test proves each payload really
runs code when unpickled the unsafe way, so the refusals below are not refusals of a dud.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import torch
from PIL import Image

from allgui.core.models.classical import SVMClassifier
from allgui.core.models.manifest import protected_digest
from allgui.core.models.secnn import CALIBRATION_FILE, WEIGHTS_FILE, SECNNClassifier
from allgui.core.models.store import (
    MANIFEST,
    ManifestError,
    ModelClassesError,
    ModelFilesError,
    ModelLoadError,
    ModelStore,
    ModelWeightsError,
    load_model,
    sha256_of,
)
from tests.imagefactory import smear_like

PIPELINE_FILE = SVMClassifier.file_name


class RunsCode:
    """Unpickling this object runs ``os.system``: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch '{self.marker}'",))


def synthetic_training_set(folder: Path) -> tuple[list[Path], np.ndarray]:
    """Ten small images per class, told apart by a channel shift (enough to fit real models, in a second)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for label in range(4):
        for index in range(10):
            array = np.asarray(smear_like(100 * label + index, 32)).astype(int)
            array[..., label % 3] += 30 * (1 + label // 3)
            path = folder / f"class{label}-{index}.png"
            Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(path)
            paths.append(path)
            labels.append(label)
    return paths, np.array(labels)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    torch.set_num_threads(1)
    paths, labels = synthetic_training_set(tmp_path_factory.mktemp("images"))
    svm = SVMClassifier(image_size=16, pca_components=8, C=[1.0], cv_folds=2)
    svm.fit(paths, labels)
    secnn = SECNNClassifier(
        image_size=24, width=8, blocks=2, convs_per_block=1, epochs=1, batch_size=16, threads=1, device="cpu"
    )
    secnn.fit(paths, labels)
    other_svm = SVMClassifier(image_size=20, pca_components=8, C=[1.0], cv_folds=2)
    other_svm.fit(paths, labels)
    probe = [Image.open(p).convert("RGB") for p in paths[::10]]
    return {"svm": svm, "secnn": secnn, "svm20": other_svm, "probe": probe}


@pytest.fixture
def store(tmp_path: Path, trained: dict[str, object]) -> ModelStore:
    """A store with a good SVM ("good-svm", active) and a good SE-CNN ("good-secnn"), no shipped models."""
    store = ModelStore(tmp_path / "home", tmp_path / "no-shipped-models")
    store.save(trained["svm"], "good-svm")
    store.save(trained["secnn"], "good-secnn")
    store.activate("good-svm")
    return store


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "CODE-RAN"
    yield path
    assert not path.exists(), "a model file ran code while being loaded"


def copy_model(store: ModelStore, model_id: str, new_id: str) -> Path:
    """A copy of a stored model under a new id, for tampering (the original stays intact)."""
    source = store.find(model_id).folder
    target = store.user_dir / new_id
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["id"] = new_id
    (target / MANIFEST).write_text(json.dumps(manifest))
    return target


def rewrite_manifest(folder: Path, **changes: object) -> None:
    """What an attacker who controls the folder does: fix every digest so the checksum check passes."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST]
    manifest["files"] = {name: sha256_of(folder / name) for name in names}
    manifest["protected_sha256"] = protected_digest(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def assert_refused_and_active_kept(store: ModelStore, model_id: str, error: type[Exception], words: str) -> None:
    folder = store.user_dir / model_id  # a folder whose manifest is refused is not even listed
    with pytest.raises(error) as caught:
        load_model(folder)
    message = str(caught.value)
    assert str(folder) in message and words in message.lower(), message
    with pytest.raises(ModelLoadError):
        store.activate(model_id)
    with pytest.raises(ModelLoadError):
        store.import_folder(folder)
    assert store.active_id() == "good-svm"
    assert store.load().id == "good-svm"  # the active model still loads and works


def evil_torch_file(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"net.weight": RunsCode(marker)}, buffer)
    return buffer.getvalue()


def test_control_the_payloads_really_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "control-marker"
    path = tmp_path / "evil.pt"
    path.write_bytes(evil_torch_file(marker))
    torch.load(path, weights_only=False)  # the unsafe way, never used by AllGUI
    assert marker.exists()
    marker.unlink()
    pickle.loads(pickle.dumps(RunsCode(marker)))
    assert marker.exists()


def test_good_models_load_and_predict(store: ModelStore, trained: dict[str, object]) -> None:
    for model_id, name in (("good-svm", "svm"), ("good-secnn", "secnn")):
        loaded = load_model(store.find(model_id).folder)
        expected = trained[name].predict_proba(trained["probe"])
        assert np.allclose(loaded.classifier.predict_proba(trained["probe"]), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("file_name", "words"), [(WEIGHTS_FILE, "may contain code"), (CALIBRATION_FILE, "not a safetensors file")]
)
def test_torch_pickle_that_runs_code_is_refused(store: ModelStore, marker: Path, file_name: str, words: str) -> None:
    folder = copy_model(store, "good-secnn", "evil-secnn")
    (folder / file_name).write_bytes(evil_torch_file(marker))
    rewrite_manifest(folder)
    assert_refused_and_active_kept(store, "evil-secnn", ModelWeightsError, words)
    with pytest.raises(ModelWeightsError) as caught:
        load_model(folder)
    assert "weights_only" not in str(caught.value)  # torch's advice to load it unsafely is never passed on


def test_torch_pickle_with_stale_digest_is_refused_before_reading(store: ModelStore, marker: Path) -> None:
    folder = copy_model(store, "good-secnn", "evil-secnn")
    (folder / WEIGHTS_FILE).write_bytes(evil_torch_file(marker))
    assert_refused_and_active_kept(store, "evil-secnn", ModelFilesError, "changed")


def test_plain_pickle_as_skops_file_is_refused(store: ModelStore, marker: Path) -> None:
    folder = copy_model(store, "good-svm", "evil-svm")
    (folder / PIPELINE_FILE).write_bytes(pickle.dumps(RunsCode(marker)))
    rewrite_manifest(folder)
    assert_refused_and_active_kept(store, "evil-svm", ModelWeightsError, "not a skops archive")


def test_skops_archive_naming_an_untrusted_function_is_refused(store: ModelStore, marker: Path) -> None:
    folder = copy_model(store, "good-svm", "evil-svm")
    (folder / PIPELINE_FILE).write_bytes(sio.dumps({"run": os.system, "argument": f"touch '{marker}'"}))
    rewrite_manifest(folder)
    assert_refused_and_active_kept(store, "evil-svm", ModelWeightsError, "does not trust")


def test_skops_archive_with_a_pickle_inside_is_refused(store: ModelStore, marker: Path) -> None:
    """A skops zip whose schema points at an unknown class, with a pickle smuggled in beside it."""
    folder = copy_model(store, "good-svm", "evil-svm")
    path = folder / PIPELINE_FILE
    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
        members = {name: archive.read(name) for name in archive.namelist() if name != "schema.json"}
    schema.update({"__class__": "RunsCode", "__module__": "tests.test_model_files", "__loader__": "ReduceNode"})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr("payload.pkl", pickle.dumps(RunsCode(marker)))
    rewrite_manifest(folder)
    assert_refused_and_active_kept(store, "evil-svm", ModelWeightsError, "usable")


def test_changed_file_is_refused(store: ModelStore) -> None:
    folder = copy_model(store, "good-svm", "changed-svm")
    data = bytearray((folder / PIPELINE_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / PIPELINE_FILE).write_bytes(bytes(data))
    assert_refused_and_active_kept(store, "changed-svm", ModelFilesError, "changed")


@pytest.mark.parametrize("model_id", ["good-svm", "good-secnn"])
def test_missing_file_is_refused(store: ModelStore, model_id: str) -> None:
    folder = copy_model(store, model_id, "missing-file")
    victim = sorted(json.loads((folder / MANIFEST).read_text())["files"])[0]
    (folder / victim).unlink()
    assert_refused_and_active_kept(store, "missing-file", ModelFilesError, "missing")


@pytest.mark.parametrize("extra", ["notes.txt", "sub/hidden.pt", ".hidden"])
def test_extra_file_is_refused(store: ModelStore, extra: str) -> None:
    folder = copy_model(store, "good-secnn", "extra-file")
    (folder / extra).parent.mkdir(parents=True, exist_ok=True)
    (folder / extra).write_bytes(b"anything")
    assert_refused_and_active_kept(store, "extra-file", ModelFilesError, "not listed")


def test_file_linked_from_outside_is_refused(store: ModelStore, tmp_path: Path) -> None:
    folder = copy_model(store, "good-svm", "linked-svm")
    outside = tmp_path / "outside.skops"
    outside.write_bytes((folder / PIPELINE_FILE).read_bytes())
    (folder / PIPELINE_FILE).unlink()
    (folder / PIPELINE_FILE).symlink_to(outside)
    assert_refused_and_active_kept(store, "linked-svm", ModelFilesError, "link")


def test_manifest_naming_a_file_outside_the_folder_is_refused(store: ModelStore, tmp_path: Path) -> None:
    folder = copy_model(store, "good-svm", "escape-svm")
    outside = tmp_path / "home" / "escape.skops"
    outside.write_bytes((folder / PIPELINE_FILE).read_bytes())
    (folder / PIPELINE_FILE).unlink()
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {f"../../{outside.name}": sha256_of(outside)}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    # Refused at the manifest, before any file is looked for.
    assert_refused_and_active_kept(store, "escape-svm", ManifestError, "not a plain relative path")


@pytest.mark.parametrize(
    "classes",
    [
        ["Early Pre-B", "Benign", "Pre-B", "Pro-B"],  # right names, wrong order: every prediction would be mislabelled
        ["Benign", "Early Pre-B", "Pre-B"],
        ["Benign", "Early Pre-B", "Pre-B", "Pro-B", "Other"],
        ["cat", "dog", "bird", "fish"],
    ],
)
def test_manifest_with_wrong_classes_is_refused(store: ModelStore, classes: list[str]) -> None:
    folder = copy_model(store, "good-svm", "wrong-classes")
    rewrite_manifest(folder, class_names=classes)
    assert_refused_and_active_kept(store, "wrong-classes", ModelClassesError, "classes")


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2, 3]", b'{"id": "x"}', b"\xff\xfe\x00garbage"])
def test_broken_manifest_is_refused(store: ModelStore, content: bytes) -> None:
    folder = copy_model(store, "good-svm", "broken-manifest")
    (folder / MANIFEST).write_bytes(content)
    with pytest.raises(ManifestError) as caught:
        load_model(folder)
    assert str(folder) in str(caught.value)
    with pytest.raises(ModelLoadError):
        store.import_folder(folder)
    assert store.active_id() == "good-svm"


def test_secnn_weights_of_the_wrong_shape_are_refused(store: ModelStore) -> None:
    folder = copy_model(store, "good-secnn", "wrong-shape")
    state = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    name = next(k for k, v in state.items() if v.ndim == 4)  # a convolution kernel
    state[name] = torch.zeros(*state[name].shape[:-1], state[name].shape[-1] + 2)
    torch.save(state, folder / WEIGHTS_FILE)
    rewrite_manifest(folder)
    assert_refused_and_active_kept(store, "wrong-shape", ModelWeightsError, "size mismatch")


def test_secnn_weights_with_a_missing_tensor_are_refused(store: ModelStore) -> None:
    folder = copy_model(store, "good-secnn", "missing-tensor")
    state = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    state.pop(sorted(state)[-1])
    torch.save(state, folder / WEIGHTS_FILE)
    rewrite_manifest(folder)
    assert_refused_and_active_kept(store, "missing-tensor", ModelWeightsError, "missing key")


def test_pipeline_for_another_input_size_is_refused(store: ModelStore, trained: dict[str, object]) -> None:
    """A 20-px pipeline under a manifest that says 16 px: its feature count does not match."""
    folder = copy_model(store, "good-svm", "wrong-size")
    sio.dump(trained["svm20"].pipeline, folder / PIPELINE_FILE)
    rewrite_manifest(folder)
    assert_refused_and_active_kept(store, "wrong-size", ModelWeightsError, "features")


def test_weights_swapped_between_kinds_are_refused(store: ModelStore) -> None:
    """An SE-CNN manifest over an SVM's files: wrong file names, so the folder is refused as it stands."""
    folder = copy_model(store, "good-svm", "kind-swap")
    review = {"min_confidence": 0.9, "ood_threshold": 1.0, "benign_alert": None}  # what an SE-CNN manifest needs
    rewrite_manifest(folder, kind="secnn", review=review)
    assert_refused_and_active_kept(store, "kind-swap", ModelWeightsError, "usable")
