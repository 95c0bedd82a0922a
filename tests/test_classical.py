"""Each model kind trains on a small real subset, beats chance on later captures, and round-trips exactly;
SMOTE only ever sees training folds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from imblearn.over_sampling import SMOTE
from sklearn.base import clone

from allgui.core.models import registry
from allgui.core.models.classical import SVMClassifier
from allgui.core.models.features import color_features, dihedral_augment, load_arrays
from allgui.core.models.store import load_model, save_model
from tests.realsubset import Subset

SMALL_CNN = dict(
    image_size=32,
    width=12,
    blocks=3,
    convs_per_block=1,
    epochs=10,
    batch_size=16,
    lr=5e-3,
    dropout=0.1,
    ema_decay=0.9,
    normalise="fixed",
    grey_prob=0.0,
    scale_aug=0.0,
    blur_prob=0.0,
    hue_jitter=0.0,
    threads=1,
)
OPTIONS = {
    "svm": dict(image_size=16, pca_components=32, C=[1.0, 10.0]),
    "rf": dict(image_size=16, n_estimators=60),
    "color-baseline": dict(image_size=48),
    "cnn-hash-svm": dict(cnn=SMALL_CNN, n_bits=32, C=[1.0], device="cpu"),
}


@pytest.fixture(scope="module")
def subset(data_dir: Path) -> Subset:
    return Subset.load(data_dir)


@pytest.fixture(scope="module")
def fitted(subset: Subset) -> dict[str, tuple[registry.Classifier, np.ndarray]]:
    images = subset.test_images()
    models = {}
    for kind, options in OPTIONS.items():
        model = registry.create(kind, **options)
        model.fit(subset.train_paths, subset.train_labels, groups=subset.groups[subset.train])
        models[kind] = (model, model.predict_proba(images))
    return models


@pytest.mark.parametrize("kind", list(OPTIONS))
def test_kind_beats_chance_on_later_captures(kind: str, fitted, subset: Subset) -> None:
    _, probabilities = fitted[kind]
    assert probabilities.shape == (len(subset.test), 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    accuracy = float((probabilities.argmax(axis=1) == subset.test_labels).mean())
    # Chance is 25% on four classes (the held-out part is roughly balanced).
    assert accuracy >= 0.5, f"{kind}: held-out accuracy {accuracy:.2f}"


@pytest.mark.parametrize("kind", list(OPTIONS))
def test_save_load_gives_identical_probabilities(kind: str, fitted, subset: Subset, tmp_path: Path) -> None:
    model, probabilities = fitted[kind]
    manifest = save_model(model, tmp_path / kind, metrics={"accuracy": 0.5})
    assert manifest["kind"] == kind and manifest["files"]
    loaded = load_model(tmp_path / kind)
    assert type(loaded.classifier) is type(model)
    np.testing.assert_array_equal(loaded.classifier.predict_proba(subset.test_images()), probabilities)


def test_cnn_hash_codes_are_compact_bits(fitted, subset: Subset) -> None:
    model, _ = fitted["cnn-hash-svm"]
    codes = model.hash_codes(subset.test_images()[:5])
    assert codes.dtype == np.uint8 and codes.shape == (5, 32 // 8)
    assert len({bytes(c) for c in codes}) > 1  # different images, different codes


class RecordingSMOTE(SMOTE):
    """SMOTE that keeps a copy of every matrix it is asked to resample."""

    seen: list[np.ndarray] = []

    def fit_resample(self, X, y, **params):  # noqa: N803 - scikit-learn's argument name
        RecordingSMOTE.seen.append(np.array(X, copy=True))
        return super().fit_resample(X, y, **params)


class RecordingSVM(SVMClassifier):
    def make_search(self, labels, n_features, grouped, cancel=None):
        search = super().make_search(labels, n_features, grouped, cancel)
        smote = search.estimator.named_steps["smote"]
        search.estimator.set_params(smote=RecordingSMOTE(k_neighbors=smote.k_neighbors, random_state=0))
        return search


def test_smote_only_ever_sees_training_folds(subset: Subset, monkeypatch: pytest.MonkeyPatch) -> None:
    RecordingSMOTE.seen = []
    # The recording class is (rightly) not a trusted type, so skip the in-memory skops round trip for this model.
    monkeypatch.setattr("allgui.core.models.classical.canonical", lambda pipeline: pipeline)
    model = RecordingSVM(image_size=16, pca_components=16, C=[1.0, 10.0], cv_folds=3)
    groups = subset.groups[subset.train]
    model.fit(subset.train_paths, subset.train_labels, groups=groups)
    search = model.last_search
    features = model.features(load_arrays(subset.train_paths, 16))
    labels = subset.train_labels
    splits = list(search.cv.split(features, labels, groups))
    assert len(RecordingSMOTE.seen) == 2 * len(splits) + 1  # two candidates x folds, then the refit on everything
    fold_calls = 0
    for seen in RecordingSMOTE.seen:
        matched = False
        for train_idx, val_idx in [*splits, (np.arange(len(labels)), np.zeros(0, dtype=int))]:
            # Rebuild the fold's own scaling + PCA, fitted on its training rows only, as the pipeline did.
            before = clone(search.estimator[:2]).fit(features[train_idx], labels[train_idx])
            if seen.shape[0] == len(train_idx) and np.allclose(seen, before.transform(features[train_idx]), atol=1e-4):
                matched = True
                fold_calls += len(val_idx) > 0
                if len(val_idx):
                    validation = before.transform(features[val_idx])
                    distances = np.abs(seen[:, None, :] - validation[None, :, :]).max(axis=2)
                    assert distances.min() > 1e-6, "a validation row reached SMOTE"
                break
        assert matched, "SMOTE saw rows that are not exactly one training fold"
    assert fold_calls == 2 * len(splits)


def test_augmentation_copies_are_flips_and_rotations_of_training_images(subset: Subset) -> None:
    arrays = load_arrays(subset.train_paths[:3], 16)
    augmented, labels = dihedral_augment(arrays, subset.train_labels[:3], copies=3)
    assert len(augmented) == 12 and list(labels) == list(subset.train_labels[:3]) * 4
    np.testing.assert_array_equal(augmented[3], arrays[0][:, ::-1])
    np.testing.assert_array_equal(augmented[9], np.rot90(arrays[0]))


def test_color_features_ignore_where_colours_are(subset: Subset) -> None:
    arrays = load_arrays(subset.train_paths[:2], 32)
    shuffled = arrays.reshape(2, -1, 3)[:, np.random.default_rng(0).permutation(32 * 32)].reshape(arrays.shape)
    np.testing.assert_allclose(color_features(arrays), color_features(shuffled), atol=1e-5)
    assert color_features(arrays).shape == (2, 6 + 64)


def test_color_baseline_is_not_offered_and_registry_imports_no_torch() -> None:
    assert "color-baseline" not in registry.kinds(offered_only=True)
    assert set(registry.kinds()) == {"secnn", "svm", "rf", "cnn-hash-svm", "color-baseline"}
    with pytest.raises(registry.UnknownKindError):
        registry.create("knn")
    code = (
        "import sys; from allgui.core.models import registry; registry.kinds(); registry.kind_info('secnn'); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_review_reason_tells_confidence_and_threshold_apart() -> None:
    from allgui.core.models.base import ReviewPolicy
    from allgui.core.models.classical import ColorBaselineClassifier
    from allgui.core.result import ReviewCode, ReviewReason

    model = ColorBaselineClassifier()
    model.review = ReviewPolicy(min_confidence=0.99)
    flagged = model._review(np.array([0.9851, 0.0149, 0.0, 0.0]), None)
    low = ReviewCode.LOW_CONFIDENCE
    assert flagged.needs_review and flagged.review_reasons == [ReviewReason(low, "confidence 0.985 below 0.990")]
    half = model._review(np.array([0.5, 0.5, 0.0, 0.0]), None).review_reasons
    assert half == [ReviewReason(low, "confidence 0.50 below 0.99")]
    assert not model._review(np.array([0.995, 0.005, 0.0, 0.0]), None).needs_review


def test_benign_alert_flags_confident_malignant_calls_that_keep_some_benign_probability() -> None:
    from allgui.core.models.base import ReviewPolicy
    from allgui.core.models.calibration import benign_alert_threshold
    from allgui.core.models.classical import ColorBaselineClassifier
    from allgui.core.result import ReviewCode, ReviewReason

    # Validation: 100 malignant calls with Benign probabilities 1e-6 ... 1e-2 and one Benign call, ignored.
    benign = np.geomspace(1e-6, 1e-2, 100)
    validation = np.column_stack([benign, 1 - benign, np.zeros(100), np.zeros(100)])
    validation = np.vstack([validation, [0.9, 0.1, 0.0, 0.0]])
    level = benign_alert_threshold(validation, 0.02)
    assert 8e-3 < level < 9e-3  # the 98th percentile of the malignant calls' Benign probabilities
    assert benign_alert_threshold(validation, 0.0) is None
    model = ColorBaselineClassifier()
    model.review = ReviewPolicy(min_confidence=0.9, benign_alert=level)
    rows = np.array([[0.0095, 0.9905, 0, 0], [0.0005, 0.9995, 0, 0], [0.95, 0.05, 0, 0], [0.05, 0.0, 0.0, 0.95]])
    predictions = [model._review(row, None) for row in rows]
    assert [p.needs_review for p in predictions] == [True, False, False, True]
    alert = "Benign (hematogones) not ruled out: probability 0.95%, alert level 0.83%"
    assert predictions[0].review_reasons == [ReviewReason(ReviewCode.BENIGN_ALERT, alert)]
    np.testing.assert_array_equal(model.review.flags(rows, None), [p.needs_review for p in predictions])
    model.review.benign_alert = 6.8e-07  # a very confident network's level: shown without an exponent
    assert model._review(rows[1], None).review_reasons == [
        ReviewReason(
            ReviewCode.BENIGN_ALERT, "Benign (hematogones) not ruled out: probability 0.05%, alert level 0.000068%"
        )
    ]
    assert ReviewPolicy.from_dict(model.review.to_dict()) == model.review
    assert ReviewPolicy.from_dict({"min_confidence": 0.9}).benign_alert is None  # manifests written before it
