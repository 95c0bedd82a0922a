"""The shipped SE-CNN loads, is intact, classifies real images well and flags pictures that are not smears.

A regression guard: the shipped model was trained on all of the data, so accuracy here is on images it saw. The
model card's figures come from held-out capture blocks (``training/evaluate_recipe.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from allgui.core.dataset import LabelledDataset
from allgui.core.models import store
from allgui.core.models.secnn import SECNNClassifier
from allgui.resources import shipped_models_dir
from tests.foreign_images import generated_images, library_images

FOLDER = shipped_models_dir() / "secnn-default"


@pytest.fixture(scope="module")
def shipped() -> store.LoadedModel:
    assert (FOLDER / store.MANIFEST).is_file(), f"the shipped default model is missing from {FOLDER}"
    return store.load_model(FOLDER)


def test_manifest_checksums_match_the_files(shipped: store.LoadedModel) -> None:
    manifest = store.read_manifest(FOLDER)
    files = sorted(p.name for p in FOLDER.iterdir() if p.is_file() and p.name != store.MANIFEST)
    assert files == sorted(manifest["files"])
    for name, digest in manifest["files"].items():
        assert store.sha256_of(FOLDER / name) == digest, name
    assert "MODEL_CARD.md" in manifest["files"]
    assert manifest["kind"] == "secnn" and manifest["default"] is True
    assert isinstance(shipped.classifier, SECNNClassifier)
    assert shipped.classifier.review.ood_threshold is not None


def test_model_card_is_up_to_date() -> None:
    """The card is what training.model_card renders from the manifest and the measurement files in
    training/results: no figure on it is stale or typed in by hand."""
    from training.model_card import CARD, card_size, render

    manifest = store.read_manifest(FOLDER)
    manifest["files"].pop(CARD)
    speed = {int(k): v for k, v in manifest["metrics"].pop("speed_ms_per_image_cpu").items()}
    results = Path(__file__).resolve().parents[1] / "training" / "results" / "heldout.json"
    heldout = json.loads(results.read_text(encoding="utf-8"))
    expected = render(manifest, heldout, card_size(FOLDER, manifest), speed)
    assert (FOLDER / CARD).read_text(encoding="utf-8") == expected


def test_shipped_models_stay_small() -> None:
    total = sum(p.stat().st_size for p in shipped_models_dir().rglob("*") if p.is_file())
    assert total < 50e6, f"shipped models take {total / 1e6:.1f} MB"


@pytest.fixture(scope="module")
def block(data_dir: Path, shipped: store.LoadedModel) -> tuple[list, np.ndarray]:
    """40 consecutive captures from the middle of each class: images the shipped model trained on (its validation
    part is the last 15% of each class)."""
    dataset = LabelledDataset.from_folder(data_dir)
    chosen = []
    for label in range(4):
        members = np.flatnonzero(dataset.labels == label)
        ordered = members[np.argsort(dataset.numbers[members], kind="stable")]
        chosen += list(ordered[len(ordered) // 2 : len(ordered) // 2 + 40])
    return [shipped.classifier.read(dataset.paths[i]) for i in chosen], dataset.labels[chosen]


def test_classifies_a_block_of_real_images(shipped: store.LoadedModel, block: tuple[list, np.ndarray]) -> None:
    images, truth = block
    predictions = shipped.classifier.predict(images)
    predicted = np.array([p.predicted for p in predictions])
    accuracy = float((predicted == truth).mean())
    assert accuracy >= 0.99, f"accuracy {accuracy:.3f}"
    assert f1_score(truth, predicted, average="macro") >= 0.99
    assert float((predicted[truth == 0] == 0).mean()) >= 0.97
    # Real smears from this laboratory are rarely sent for review.
    assert np.mean([p.needs_review for p in predictions]) <= 0.10


def test_does_not_need_the_stain_colour(shipped: store.LoadedModel, block: tuple[list, np.ndarray]) -> None:
    """Colour alone predicts much of the label in this data; the shipped model must also work without it."""
    from training.heldout import greyscale, od_statistics, stain_normalise

    images, truth = block
    target_mean, target_std = od_statistics(images)
    for change in (greyscale, lambda image: stain_normalise(image, target_mean, target_std)):
        predicted = shipped.classifier.predict_proba([change(image) for image in images]).argmax(axis=1)
        assert float((predicted == truth).mean()) >= 0.9


def test_non_smear_images_need_review(shipped: store.LoadedModel) -> None:
    """Generated pictures and real ones (scikit-image's sample data: tissue, cells, retina, photographs)."""
    real = library_images()
    assert len(real) >= 30
    foreign = generated_images(per_kind=5, seed=7) + real
    predictions = shipped.classifier.predict([image for _, image in foreign])
    missed = [kind for (kind, _), p in zip(foreign, predictions, strict=True) if not p.needs_review]
    assert len(missed) <= 0.05 * len(foreign), f"not flagged: {missed}"


def test_tampered_copy_is_refused(tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "secnn-default"
    shutil.copytree(FOLDER, copy)
    weights = copy / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(store.ModelFilesError, match="weights.pt"):
        store.load_model(copy)


def test_a_batch_from_a_differently_lit_session_is_called_unreliable(
    data_dir: Path, shipped: store.LoadedModel, tmp_path: Path
) -> None:
    """A lamp or white-balance change of about 10% in the colour channels makes most images unlike the training
    images; the batch summary must then say that the whole batch is unreliable, and not for the same images as
    they are (re-encoded too, so that the JPEG step is not what it reacts to)."""
    from PIL import Image

    from allgui.core.classify import classify_paths, unlike_training_warning

    dataset = LabelledDataset.from_folder(data_dir)
    # the newest 10 captures of each class: not learnt by the shipped weights (its validation part)
    chosen = []
    for label in range(4):
        members = np.flatnonzero(dataset.labels == label)
        chosen += [int(i) for i in members[np.argsort(dataset.numbers[members], kind="stable")][-10:]]
    gains = np.array([0.9, 1.05, 1.1])
    for name, factors in (("same", np.ones(3)), ("relit", gains)):
        (tmp_path / name).mkdir()
        for i in chosen:
            pixels = np.asarray(Image.open(dataset.paths[i]).convert("RGB"), dtype=np.float64) * factors
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                tmp_path / name / dataset.paths[i].name, quality=95
            )
    originals = classify_paths([dataset.paths[i] for i in chosen], shipped)
    same = classify_paths(sorted((tmp_path / "same").iterdir()), shipped)
    relit = classify_paths(sorted((tmp_path / "relit").iterdir()), shipped)
    assert unlike_training_warning(originals) is None
    assert unlike_training_warning(same) is None
    warning = unlike_training_warning(relit)
    assert warning is not None and "unreliable" in warning, [r.codes for r in relit]
