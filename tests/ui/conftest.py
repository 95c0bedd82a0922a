"""GUI test fixtures: small real models trained once per session, real image folders, and a thread-leak check."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QThreadPool

from allgui.core.dataset import LabelledDataset
from allgui.core.models import registry
from allgui.core.models.store import ModelStore, save_model
from allgui.resources import shipped_models_dir
from allgui.ui.workers import live_pools
from tests.imagefactory import smear_like

# Sizes that train in seconds on two cores; the models are poor, the code paths are the real ones.
SVM_OPTIONS = {"image_size": 16, "C": [1.0], "cv_folds": 2, "pca_components": 16}
SECNN_OPTIONS = {"image_size": 32, "width": 8, "blocks": 3, "epochs": 2, "batch_size": 16, "patience": 2}


def spread(dataset: LabelledDataset, per_class: int, offset: int = 0) -> LabelledDataset:
    """``per_class`` images of each class spread over the capture order."""
    keep: list[int] = []
    for label in range(4):
        members = np.flatnonzero(dataset.labels == label)
        positions = np.linspace(offset, len(members) - 1, per_class).astype(int)
        keep += members[positions].tolist()
    return dataset.subset(keep)


# The shipped models the tests use under their own ids (copies: a test may damage its store's files).
SHIPPED = {"test-svm": ("svm-taleqani", "svm", SVM_OPTIONS), "test-secnn": ("secnn-default", "secnn", SECNN_OPTIONS)}


def real_data(request: pytest.FixtureRequest) -> Path | None:
    """The real images when ALLGUI_TEST_DATA is set; None otherwise (the GUI tests then use generated images)."""
    try:
        return request.getfixturevalue("data_dir")
    except pytest.skip.Exception:
        return None


@pytest.fixture(scope="session")
def ui_models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding an SVM and an SE-CNN (used as the store's 'shipped' models): copies of the shipped models,
    or, in a checkout without them, tiny ones trained here on real images."""
    folder = tmp_path_factory.mktemp("ui-models")
    training: LabelledDataset | None = None
    for model_id, (shipped_id, kind, options) in SHIPPED.items():
        source = shipped_models_dir() / shipped_id
        if (source / "manifest.json").is_file():
            shutil.copytree(source, folder / model_id)
            manifest_path = folder / model_id / "manifest.json"
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            manifest.update(id=model_id, title=f"Test {kind} (shipped {shipped_id})", default=False)
            manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            continue
        training = training or spread(LabelledDataset.from_folder(request.getfixturevalue("data_dir")), 10)
        model = registry.create(kind, **options)
        model.fit(training.paths, training.labels)
        save_model(model, folder / model_id, model_id=model_id, title=f"Test {kind}")
    return folder


@pytest.fixture
def store(isolated_home: Path, ui_models: Path) -> ModelStore:
    return ModelStore(isolated_home, ui_models)


@pytest.fixture
def image_folder(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """20 real images (5 per class, copied, never into the repo) plus a byte copy of the first one. Without
    ALLGUI_TEST_DATA, 20 generated smear-like JPEGs in their place: the GUI's code paths are tested all the same,
    and tests that need real image content ask for ``data_dir`` too (and skip)."""
    folder = tmp_path / "smears"
    folder.mkdir()
    data = real_data(request)
    if data is None:
        for number in range(20):
            smear_like(number, 96).save(folder / f"WBC-Generated-{number + 1:03d}.jpg", quality=92)
        first = folder / "WBC-Generated-001.jpg"
        shutil.copy(first, folder / "WBC-Generated-001-copy.jpg")
        return folder
    picked = spread(LabelledDataset.from_folder(data), 5, offset=3)
    for path in picked.paths:
        shutil.copy(path, folder / path.name)
    first = picked.paths[0]
    shutil.copy(first, folder / f"{first.stem}-copy{first.suffix}")
    return folder


@pytest.fixture
def labelled_folder(data_dir: Path, tmp_path: Path) -> Path:
    """A small labelled folder (12 per class) in the layout of the real release."""
    root = tmp_path / "labelled"
    dataset = LabelledDataset.from_folder(data_dir)
    picked = spread(dataset, 12, offset=5)
    names = {index: folder for folder, index in dataset.folder_to_class.items()}
    for path, label in zip(picked.paths, picked.labels, strict=True):
        target = root / names[int(label)]
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    return root


def _running_pools() -> list[QThreadPool]:
    pools = [*live_pools(), QThreadPool.globalInstance()]
    return [pool for pool in pools if pool.activeThreadCount() > 0]


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves a Qt thread pool busy or a Python thread running.

    Replaces the suite-wide check for GUI tests: Python lists every Qt pool thread that ever ran Python code as a
    permanent "dummy" thread, so those are judged by their pool's active count instead.
    """
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        pools = _running_pools()
        leaked = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and not isinstance(t, threading._DummyThread)  # noqa: SLF001
        ]
        if (not pools and not leaked) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not pools, f"test left {sum(p.activeThreadCount() for p in pools)} Qt worker thread(s) running"
    assert not leaked, f"test left threads running: {[t.name for t in leaked]}"
