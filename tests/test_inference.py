"""The fast SE-CNN path gives the plain path's predictions: same pixels, statistics, probabilities and review flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from allgui.core import classify, inference
from allgui.core.imageio import read_rgb
from allgui.core.inference import (
    FastSECNN,
    _median_colour,
    bfloat16_supported,
    channel_counts,
    default_precision,
    describe,
    fast_path,
)
from allgui.core.models import calibration
from allgui.core.models.base import BatchPredictor, Classifier
from allgui.core.models.classical import ColorBaselineClassifier
from allgui.core.models.secnn import SECNNClassifier
from allgui.core.models.store import load_model, save_model
from tests.realsubset import Subset

# Two convolutions per block so that folding is tested on stacked convolutions; an odd size for the odd-count median.
TINY = dict(image_size=33, width=8, blocks=3, convs_per_block=2, epochs=2, batch_size=16, threads=1, device="cpu")


@pytest.fixture(scope="module")
def trained(data_dir: Path) -> tuple[SECNNClassifier, list[Path]]:
    subset = Subset.load(data_dir, per_class=12)
    model = SECNNClassifier(**TINY)
    model.fit(subset.data.paths, subset.data.labels, groups=subset.groups)
    return model, list(subset.data.paths)


def test_median_colour_matches_numpy_for_even_and_odd_pixel_counts() -> None:
    rng = np.random.default_rng(0)
    for size in (1, 2, 7, 32, 33, 96):
        for _ in range(20):
            array = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            if rng.random() < 0.5:  # few distinct values: ties around the middle
                array = (array // 64 * 64).astype(np.uint8)
            expected = np.median(array.reshape(-1, 3), axis=0).astype(np.uint8)
            assert np.array_equal(_median_colour(channel_counts(array)), expected)


def test_describe_gives_the_image_statistics_of_real_images(data_dir: Path) -> None:
    paths = sorted(data_dir.rglob("*.jpg"))[::97]
    model = SECNNClassifier(image_size=96)
    arrays = np.stack([model.prepare(read_rgb(p)) for p in paths])
    expected = calibration.image_statistics(torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous())
    got = np.stack([describe(a).statistics for a in arrays])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0
    np.testing.assert_allclose(np.stack([describe(a).mean for a in arrays]), x.mean(dim=(2, 3)).numpy(), atol=1e-6)
    np.testing.assert_allclose(np.stack([describe(a).std for a in arrays]), x.std(dim=(2, 3)).numpy(), atol=1e-6)


def test_fast_predictions_equal_the_plain_ones(trained: tuple[SECNNClassifier, list[Path]]) -> None:
    model, paths = trained
    images = [read_rgb(p) for p in paths]
    fast = FastSECNN(model, precision="float32")
    assert all(np.array_equal(fast.pixels(i), model.prepare(i)) for i in images)
    # The histograms updated for the masked corner are those of the masked pixels.
    assert all(np.array_equal(counts, channel_counts(pixels)) for pixels, counts in map(fast._masked, images))
    plain, quick = model.predict(images), fast.predict(images)
    np.testing.assert_allclose([p.probabilities for p in quick], [p.probabilities for p in plain], atol=1e-5)
    np.testing.assert_allclose([p.ood_score for p in quick], [p.ood_score for p in plain], rtol=1e-4)
    assert [p.predicted for p in quick] == [p.predicted for p in plain]
    assert [p.needs_review for p in quick] == [p.needs_review for p in plain]
    np.testing.assert_allclose(fast.predict_proba(images), model.predict_proba(images), atol=1e-5)
    assert fast.predict([]) == [] and fast.predict_proba([]).shape == (0, 4)


def test_fast_path_only_for_models_it_reproduces(trained: tuple[SECNNClassifier, list[Path]]) -> None:
    model, _ = trained
    assert isinstance(fast_path(model), FastSECNN)
    assert fast_path(SECNNClassifier(**TINY)) is None  # untrained
    assert type(ColorBaselineClassifier().batch_predictor()) is BatchPredictor  # other kinds: the plain one
    with_tta = SECNNClassifier(**{**TINY, "tta": True})
    with_tta.net, with_tta.feature_ood, with_tta.image_ood = model.net, model.feature_ood, model.image_ood
    assert fast_path(with_tta) is None


@pytest.mark.parametrize("hash_at_input_size", [False, True])
def test_classify_rows_are_the_same_with_and_without_the_fast_path(
    trained: tuple[SECNNClassifier, list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    hash_at_input_size: bool,
) -> None:
    model, paths = trained
    if hash_at_input_size:  # as for the shipped 96-px model: the fast path hashes the image it resized already
        monkeypatch.setattr(classify, "HASH_SIZE", model.image_size)
    save_model(model, tmp_path / "model", model_id="tiny")
    loaded = load_model(tmp_path / "model")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    files = [*paths, broken]
    monkeypatch.setenv("ALLGUI_INFERENCE_PRECISION", "float32")
    fast_rows = classify.classify_paths(files, loaded, batch_size=7)
    monkeypatch.setattr(SECNNClassifier, "batch_predictor", Classifier.batch_predictor)
    plain_rows = classify.classify_paths(files, loaded, batch_size=7)
    assert [r["path"] for r in fast_rows] == [r["path"] for r in plain_rows]
    assert [r["error"] for r in fast_rows] == [r["error"] for r in plain_rows] and fast_rows[-1]["error"]
    for fast_row, plain_row in zip(fast_rows[:-1], plain_rows[:-1], strict=True):
        assert fast_row["predicted"] == plain_row["predicted"]
        assert fast_row["needs_review"] == plain_row["needs_review"]
        assert fast_row["duplicate_group"] == plain_row["duplicate_group"]
        assert fast_row["phash"] == plain_row["phash"]
        np.testing.assert_allclose(fast_row["probabilities"], plain_row["probabilities"], atol=1e-5)


def test_fast_path_follows_a_strided_first_convolution(data_dir: Path) -> None:
    subset = Subset.load(data_dir, per_class=8)
    model = SECNNClassifier(**{**TINY, "image_size": 34, "stem_stride": 2})
    model.fit(subset.data.paths, subset.data.labels, groups=subset.groups)
    assert model.net is not None and model.net.blocks[0].convs[0].stride == (2, 2)
    images = [read_rgb(p) for p in subset.data.paths]
    fast = FastSECNN(model, precision="float32")
    np.testing.assert_allclose(fast.predict_proba(images), model.predict_proba(images), atol=1e-5)


def test_precision_follows_the_environment_and_rejects_unknown_names(
    trained: tuple[SECNNClassifier, list[Path]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model, _ = trained
    monkeypatch.setenv("ALLGUI_INFERENCE_PRECISION", "float32")
    assert default_precision() == "float32" and FastSECNN(model).precision == "float32"
    monkeypatch.delenv("ALLGUI_INFERENCE_PRECISION")
    assert default_precision() == ("bfloat16" if bfloat16_supported() else "float32")
    monkeypatch.setenv("ALLGUI_INFERENCE_PRECISION", "fp32")  # a misspelling is reported, not obeyed silently
    with caplog.at_level("WARNING", logger="allgui.core.inference"):
        assert default_precision() == ("bfloat16" if bfloat16_supported() else "float32")
    assert "not one of float32, bfloat16" in caplog.text
    with pytest.raises(ValueError, match="precision"):
        FastSECNN(model, precision="float16")
    # A CPU without bfloat16 units: asking for it falls back (environment) or is refused (argument).
    monkeypatch.setattr(inference, "bfloat16_supported", lambda: False)
    monkeypatch.setenv("ALLGUI_INFERENCE_PRECISION", "bfloat16")
    assert default_precision() == "float32"
    with pytest.raises(ValueError, match="no bfloat16 units"):
        FastSECNN(model, precision="bfloat16")


@pytest.mark.skipif(not bfloat16_supported(), reason="this CPU has no bfloat16 units (the fast path stays float32)")
def test_bfloat16_keeps_the_shipped_models_answers_on_real_images(data_dir: Path) -> None:
    from allgui.resources import shipped_models_dir

    model = load_model(shipped_models_dir() / "secnn-default").classifier
    assert isinstance(model, SECNNClassifier)
    images = [model.read(p) for p in sorted(data_dir.rglob("*.jpg"))[::11]]  # 252 images from every class
    full = FastSECNN(model, precision="float32").predict(images)
    half = FastSECNN(model, precision="bfloat16").predict(images)
    change = np.abs(np.stack([p.probabilities for p in half]) - np.stack([p.probabilities for p in full]))
    assert change.max() < 0.15 and change.mean() < 0.005
    same = sum(a.predicted == b.predicted for a, b in zip(half, full, strict=True))
    assert same >= len(images) - 2


def test_a_jpeg_draft_model_sees_files_decoded_as_in_its_training(
    trained: tuple[SECNNClassifier, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``jpeg_draft`` the files are decoded at reduced scale for training, ``classify`` (both paths) and
    ``Classifier.read``; other formats and other models are decoded at full size."""
    from allgui.core.progress import no_progress

    model, paths = trained
    save_model(model, tmp_path / "model", model_id="tiny")
    loaded = load_model(tmp_path / "model")
    drafted = loaded.classifier
    assert isinstance(drafted, SECNNClassifier)
    drafted.options["jpeg_draft"] = True
    files = paths[::6]
    png = tmp_path / "copy.png"
    read_rgb(files[0]).save(png)
    assert model.read(files[0]).size == (224, 224) and drafted.read(png).size == (224, 224)
    assert drafted.read(files[0]).size == (56, 56)  # 1/4 scale: the smallest that keeps at least 33 px
    expected = np.stack([drafted.prepare(drafted.read(p)) for p in files])
    loaded_pixels = drafted._load(files, no_progress, None, len(files)).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(loaded_pixels, expected)
    assert not np.array_equal(expected, np.stack([model.prepare(read_rgb(p)) for p in files]))

    monkeypatch.setenv("ALLGUI_INFERENCE_PRECISION", "float32")
    wanted = drafted.predict_proba([drafted.read(p) for p in [*files, png]])
    full = model.predict_proba([read_rgb(p) for p in [*files, png]])
    assert np.abs(wanted - full)[:-1].max() > 1e-4 and np.abs(wanted - full)[-1].max() < 1e-5
    for use_fast in (True, False):
        if not use_fast:
            monkeypatch.setattr(SECNNClassifier, "batch_predictor", Classifier.batch_predictor)
        rows = classify.classify_paths([*files, png], loaded)
        np.testing.assert_allclose([r["probabilities"] for r in rows], wanted, atol=1e-5)
