"""The model store: complete manifests, atomic saves, shipped + user models in one list, a persisted active model,
verified imports, and refusal of changed, missing, extra and code-running files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from allgui.core.classes import CLASS_NAMES
from allgui.core.models.classical import ColorBaselineClassifier, SVMClassifier
from allgui.core.models.store import (
    ACTIVE_FILE,
    MANIFEST,
    ModelActivationError,
    ModelFilesError,
    ModelLoadError,
    ModelNotFoundError,
    ModelStore,
    ModelWeightsError,
    load_model,
    save_model,
    sha256_of,
)
from allgui.core.paths import user_data_dir
from tests.realsubset import Subset


@pytest.fixture(scope="module")
def subset(data_dir: Path) -> Subset:
    return Subset.load(data_dir, per_class=20)


@pytest.fixture(scope="module")
def svm(subset: Subset) -> SVMClassifier:
    model = SVMClassifier(image_size=12, pca_components=12, C=[1.0], cv_folds=2)
    model.fit(subset.train_paths, subset.train_labels, groups=subset.groups[subset.train])
    return model


@pytest.fixture(scope="module")
def baseline(subset: Subset) -> ColorBaselineClassifier:
    model = ColorBaselineClassifier(image_size=32)
    model.fit(subset.train_paths, subset.train_labels)
    return model


def test_user_data_dir_follows_allgui_home(isolated_home: Path) -> None:
    assert user_data_dir() == isolated_home
    assert ModelStore().user_dir == isolated_home / "models"


def test_manifest_describes_the_model_and_every_file(svm: SVMClassifier, tmp_path: Path) -> None:
    manifest = save_model(svm, tmp_path / "m", model_id="m1", training={"images": 60}, metrics={"accuracy": 0.7})
    on_disk = json.loads((tmp_path / "m" / MANIFEST).read_text())
    assert on_disk == manifest
    assert manifest["id"] == "m1" and manifest["kind"] == "svm" and manifest["title"]
    assert manifest["class_names"] == list(CLASS_NAMES)
    assert manifest["input_size"] == [12, 12] and "pixels" in manifest["normalisation"]
    assert manifest["created"].endswith("+00:00")
    assert {"python", "scikit-learn", "skops", "numpy"} <= set(manifest["library_versions"])
    assert manifest["training"] == {"images": 60} and manifest["metrics"] == {"accuracy": 0.7}
    assert manifest["review"] == svm.review.to_dict()
    files = sorted(p.name for p in (tmp_path / "m").iterdir() if p.name != MANIFEST)
    assert sorted(manifest["files"]) == files
    assert all(manifest["files"][n] == sha256_of(tmp_path / "m" / n) for n in files)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_failed_save_leaves_the_previous_model_untouched(svm: SVMClassifier, tmp_path: Path) -> None:
    save_model(svm, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}

    class Broken(SVMClassifier):
        def save_files(self, folder: Path) -> dict:
            (folder / "half-written.bin").write_bytes(b"x" * 100)
            raise OSError("disk full")

    broken = Broken()
    broken.pipeline = svm.pipeline
    with pytest.raises(OSError, match="disk full"):
        save_model(broken, tmp_path / "m")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    load_model(tmp_path / "m")


def test_shipped_and_user_models_form_one_list_with_a_persisted_active_one(
    svm: SVMClassifier, baseline: ColorBaselineClassifier, tmp_path: Path
) -> None:
    shipped = tmp_path / "shipped"
    save_model(svm, shipped / "shipped-svm", model_id="shipped-svm")
    store = ModelStore(tmp_path / "home", shipped)
    assert store.active_id() == "shipped-svm"  # nothing chosen yet: the shipped model
    store.save(svm, "my-svm")
    store.save(baseline, "my-baseline")
    listed = {m.id: m for m in store.list()}
    assert set(listed) == {"shipped-svm", "my-svm", "my-baseline"}
    assert listed["shipped-svm"].source == "shipped" and listed["my-svm"].source == "user"
    assert not listed["my-baseline"].offered
    with pytest.raises(ModelActivationError):
        store.activate("my-baseline")
    store.activate("my-svm")
    saved = json.loads((tmp_path / "home" / ACTIVE_FILE).read_text())
    assert saved == {"version": 1, "active_model": "my-svm"}
    assert ModelStore(tmp_path / "home", shipped).active_id() == "my-svm"  # survives a restart
    assert store.load().id == "my-svm"
    with pytest.raises(ModelNotFoundError):
        store.activate("no-such-model")
    assert store.active_id() == "my-svm"


def test_import_verifies_then_copies(svm: SVMClassifier, subset: Subset, tmp_path: Path) -> None:
    save_model(svm, tmp_path / "outside", model_id="from-a-colleague")
    store = ModelStore(tmp_path / "home", tmp_path / "none")
    info = store.import_folder(tmp_path / "outside")
    assert info.folder == store.user_dir / "from-a-colleague"
    images = subset.test_images()[:4]
    np.testing.assert_array_equal(
        store.load("from-a-colleague").classifier.predict_proba(images), svm.predict_proba(images)
    )
    with pytest.raises(ModelActivationError, match="already"):
        store.import_folder(tmp_path / "outside")


def _tamper_changed(folder: Path) -> None:
    path = folder / SVMClassifier.file_name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(data))


def _tamper_missing(folder: Path) -> None:
    (folder / SVMClassifier.file_name).unlink()


def _tamper_extra(folder: Path) -> None:
    (folder / "notes.py").write_text("print('hello')\n")


@pytest.mark.parametrize(
    ("tamper", "words"),
    [(_tamper_changed, "changed"), (_tamper_missing, "missing"), (_tamper_extra, "not listed")],
)
def test_tampered_folders_are_refused(svm: SVMClassifier, tmp_path: Path, tamper, words: str) -> None:
    save_model(svm, tmp_path / "m")
    tamper(tmp_path / "m")
    with pytest.raises(ModelFilesError, match=words):
        load_model(tmp_path / "m")


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch '{self.marker}'",))


def test_pickle_that_would_run_code_is_refused_even_with_a_matching_digest(svm: SVMClassifier, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    save_model(svm, folder)
    marker = tmp_path / "ran"
    (folder / SVMClassifier.file_name).write_bytes(pickle.dumps(_RunsCode(marker)))
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][SVMClassifier.file_name] = sha256_of(folder / SVMClassifier.file_name)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelWeightsError, match="not a skops archive"):
        load_model(folder)
    assert not marker.exists()
    with pytest.raises(ModelLoadError):
        ModelStore(tmp_path / "home", tmp_path / "none").import_folder(folder)
    assert not marker.exists()
