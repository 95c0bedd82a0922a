"""The SE-CNN trains on a small real subset, beats chance on a later block, round-trips, explains, and stops."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from allgui.core.dataset import LabelledDataset
from allgui.core.duplicates import find_groups, group_ids
from allgui.core.hashing import hash_images
from allgui.core.imageio import read_rgb
from allgui.core.metrics import expected_calibration_error
from allgui.core.models import calibration
from allgui.core.models.secnn import SECNNClassifier
from allgui.core.models.secnn.augmentation import augmenter
from allgui.core.models.torch_device import DeviceWarning, choose_device
from allgui.core.progress import Cancelled, CancelToken
from allgui.core.splits import block_split
from tests.foreign_images import generated_images

# Small and fast: 40 px, three blocks, one thread (the CI machine is shared), light augmentation.
SMALL = dict(
    image_size=40,
    width=16,
    blocks=3,
    convs_per_block=1,
    epochs=20,
    batch_size=16,
    lr=5e-3,
    dropout=0.1,
    ema_decay=0.9,
    normalise="fixed",
    grey_prob=0.0,
    scale_aug=0.0,
    blur_prob=0.0,
    stain_jitter=0.05,
    colour_jitter=0.1,
    threads=1,
    device="cpu",
)


class Subset:
    def __init__(self, data_dir: Path) -> None:
        dataset = LabelledDataset.from_folder(data_dir)
        chosen = []
        for label in range(4):
            members = np.flatnonzero(dataset.labels == label)
            members = members[np.argsort(dataset.numbers[members], kind="stable")]
            chosen += list(members[np.linspace(0, len(members) - 1, 40).astype(int)])
        self.data = dataset.subset(chosen)
        records = hash_images(self.data.paths)
        self.groups = group_ids(len(records), find_groups(records))
        # Later captures of each class are held out, as in the real evaluation.
        self.train, self.test = block_split(self.data.labels, self.data.numbers, self.groups, 0.25)
        self.test_images = [read_rgb(self.data.paths[i]) for i in self.test]
        self.test_labels = self.data.labels[self.test]

    def fit(self, model: SECNNClassifier, **kwargs) -> dict:
        return model.fit(
            [self.data.paths[i] for i in self.train],
            self.data.labels[self.train],
            groups=self.groups[self.train],
            **kwargs,
        )


@pytest.fixture(scope="module")
def subset(data_dir: Path) -> Subset:
    return Subset(data_dir)


@pytest.fixture(scope="module")
def trained(subset: Subset) -> tuple[SECNNClassifier, dict, list[str]]:
    lines: list[str] = []
    model = SECNNClassifier(**SMALL)
    summary = subset.fit(model, log=lines.append)
    return model, summary, lines


def test_trains_and_beats_chance_on_later_block(trained, subset: Subset) -> None:
    model, summary, lines = trained
    probabilities = model.predict_proba(subset.test_images)
    assert probabilities.shape == (len(subset.test), 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    accuracy = float((probabilities.argmax(axis=1) == subset.test_labels).mean())
    # Chance is 0.25 on four balanced classes.
    assert accuracy >= 0.5, f"held-out accuracy {accuracy:.2f}"
    history = summary["history"]
    assert 1 <= len(history) <= SMALL["epochs"]
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc"}
    assert summary["best_epoch"] in [h["epoch"] for h in history]
    # One log line per epoch.
    assert sum(line.startswith("epoch ") for line in lines) == len(history)
    assert model.temperature > 0 and model.review.ood_threshold == 1.0
    assert 0.5 <= model.review.min_confidence <= 0.99
    assert 0.0 <= model.review.benign_alert < 1.0


def test_save_load_gives_identical_outputs(trained, subset: Subset, tmp_path: Path) -> None:
    model, _, _ = trained
    fields = model.save_files(tmp_path)
    assert fields["input_size"] == [SMALL["image_size"]] * 2
    for name in fields["files"]:
        assert (tmp_path / name).is_file()
    loaded = SECNNClassifier.load_files(tmp_path, {"review": model.review.to_dict()})
    np.testing.assert_array_equal(loaded.predict_proba(subset.test_images), model.predict_proba(subset.test_images))
    np.testing.assert_array_equal(loaded.ood_scores(subset.test_images), model.ood_scores(subset.test_images))
    assert loaded.review == model.review
    # Weights load without unpickling arbitrary objects.
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_attention_has_every_block_and_a_heatmap_at_image_size(trained, subset: Subset) -> None:
    model, _, _ = trained
    image = subset.test_images[0]
    attention = model.attention(image)
    assert len(attention.excitations) == SMALL["blocks"] == len(attention.block_names)
    widths = [SMALL["width"] * 2**i for i in range(SMALL["blocks"])]
    assert [e.shape for e in attention.excitations] == [(w,) for w in widths]
    assert all(((e >= 0) & (e <= 1)).all() for e in attention.excitations)
    assert attention.heatmap.shape == (image.height, image.width)
    assert attention.heatmap.min() >= 0 and attention.heatmap.max() <= 1 and attention.heatmap.max() > 0
    odd = image.resize((100, 70))
    assert model.attention(odd).heatmap.shape == (70, 100)


def test_features_and_predictions_agree(trained, subset: Subset) -> None:
    model, _, _ = trained
    features = model.features(subset.test_images[:5])
    assert features.shape == (5, model.net.feature_size)
    predictions = model.predict(subset.test_images[:5])
    probabilities = model.predict_proba(subset.test_images[:5])
    for prediction, row in zip(predictions, probabilities, strict=True):
        np.testing.assert_allclose(prediction.probabilities, row)
        assert prediction.ood_score is not None
        benign_alert = prediction.predicted != 0 and prediction.probabilities[0] >= model.review.benign_alert
        assert prediction.needs_review == (
            prediction.confidence < model.review.min_confidence or prediction.ood_score > 1.0 or benign_alert
        )


def test_generated_non_smear_images_are_flagged(trained, subset: Subset) -> None:
    model, _, _ = trained
    foreign = [image for _, image in generated_images(per_kind=3, seed=1)]
    own = model.ood_scores(subset.test_images)
    other = model.ood_scores(foreign)
    flagged = np.mean([p.needs_review for p in model.predict(foreign)])
    assert flagged >= 0.9, f"only {flagged:.0%} of generated non-smear images flagged"
    assert np.median(other) > np.median(own)


def test_cancel_keeps_best_checkpoint(subset: Subset) -> None:
    token = CancelToken()

    def progress(done: int, total: int, message: str) -> None:
        if message.startswith("epoch 3/"):
            token.cancel()

    model = SECNNClassifier(**{**SMALL, "epochs": 10})
    with pytest.raises(Cancelled):
        subset.fit(model, progress=progress, cancel=token)
    # The best of the two finished epochs is installed and calibrated, so it can still be saved and used.
    assert model.net is not None and model.fit_summary["cancelled"] is True
    assert len(model.fit_summary["history"]) == 2
    assert model.predict_proba(subset.test_images[:3]).shape == (3, 4)


def test_training_is_reproducible_on_cpu(subset: Subset) -> None:
    options = {**SMALL, "epochs": 2}
    first, second = SECNNClassifier(**options), SECNNClassifier(**options)
    subset.fit(first)
    subset.fit(second)
    np.testing.assert_array_equal(first.predict_proba(subset.test_images), second.predict_proba(subset.test_images))


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ValueError, match="imagesize"):
        SECNNClassifier(imagesize=64)


def test_cuda_request_without_gpu_falls_back_with_warning() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the fallback path is not reachable here")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        device = choose_device("cuda")
    assert device.type == "cpu"
    assert any(issubclass(w.category, DeviceWarning) for w in caught)
    assert choose_device("cpu").type == "cpu"
    with pytest.raises(ValueError):
        choose_device("tpu")


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 4))
    true_temperature = 2.5
    labels = np.array([rng.choice(4, p=p) for p in calibration.softmax(logits, true_temperature)])
    fitted = calibration.fit_temperature(logits, labels)
    assert abs(fitted - true_temperature) < 0.25
    assert expected_calibration_error(labels, calibration.softmax(logits, fitted)) < 0.03
    assert expected_calibration_error(labels, calibration.softmax(logits, 1.0)) > 0.05


def test_mahalanobis_scores_far_points_higher() -> None:
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (200, 8)), rng.normal(4, 1, (200, 8))])
    labels = np.repeat([0, 1], 200)
    model = calibration.Mahalanobis.fit(features, labels)
    near = model.score(rng.normal(0, 1, (50, 8)))
    far = model.score(rng.normal(12, 1, (50, 8)))
    assert far.min() > near.max()


def test_training_crops_are_the_crop_size_and_prediction_sees_the_whole_image() -> None:
    model = SECNNClassifier(image_size=48, train_crop=32, blocks=3, width=8)
    augment = augmenter(model.options)
    torch.manual_seed(0)
    assert {tuple(augment(torch.rand(3, 48, 48)).shape) for _ in range(10)} == {(3, 32, 32)}
    assert model.pixels(read_rgb_like(60)).shape == (48, 48, 3)


def read_rgb_like(size: int):
    from PIL import Image

    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8), "RGB")


def test_augmentation_workers_give_the_batches_in_order() -> None:
    from torch import nn

    from allgui.core.models.secnn.augmentation import _augmented_batches, _EpochBatches

    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    batches = _EpochBatches()
    for workers in (0, 2):
        loader = _augmented_batches(images, nn.Identity(), batches, workers)
        for epoch in range(2):  # the worker processes persist; each epoch brings its own order
            batches.batches = [np.array([3, 1, 4]), np.array([9, 0]), np.array([5 + epoch])]
            got = list(loader)
            assert len(got) == 3
            for rows, batch in zip(batches.batches, got, strict=True):
                torch.testing.assert_close(batch, images[torch.from_numpy(rows)].float() / 255.0)


def test_training_with_augmentation_workers(subset: Subset) -> None:
    model = SECNNClassifier(**{**SMALL, "epochs": 1, "loader_workers": 1})
    summary = subset.fit(model)
    assert summary["epochs_run"] == 1
    assert model.predict_proba(subset.test_images[:2]).shape == (2, 4)


def test_stain_transfer_gives_a_real_smear_another_smears_stain(data_dir: Path) -> None:
    from allgui.core.models.secnn.augmentation import _StainTransfer, stain_statistics
    from training.heldout import stain_normalise

    benign = next((data_dir / "Benign").glob("*.jpg"))
    pro = sorted((data_dir / "Pro").glob("*.jpg"))[-1]
    images = torch.stack([torch.from_numpy(np.array(read_rgb(p))).permute(2, 0, 1) for p in (benign, pro)])
    stains = stain_statistics(images)
    assert stains.shape == (2, 2, 3) and not torch.allclose(stains[0], stains[1], atol=0.02)
    source = images[0].float() / 255.0
    restained = _StainTransfer(1.0, stains[1:])(source)
    # The same pixels as the held-out stain-normalisation test gives with that stain as its target.
    expected = np.asarray(stain_normalise(read_rgb(benign), stains[1, 0].numpy(), stains[1, 1].numpy()))
    got = (restained * 255).round().permute(1, 2, 0).numpy()
    assert np.abs(got - expected).mean() < 1.0
    assert torch.allclose(stain_statistics((restained * 255).round().to(torch.uint8)[None])[0], stains[1], atol=0.03)
    assert torch.equal(_StainTransfer(0.0, stains)(source), source)
