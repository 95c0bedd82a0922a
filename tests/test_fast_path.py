"""The SE-CNN's numpy preparation and the fast torch path give what the plain computations give.

* :mod:`allgui.core.models.secnn.preparation` reads the median colour, the standardisation and the image OOD
  statistics off 8-bit histograms; here they are checked against numpy and against the sort-based torch formula
  the statistics were first defined by.
* :class:`allgui.core.inference.FastSECNN` (folded BatchNorm, channels-last) equals ``SECNN.outputs`` in float32;
  the torch engine (which runs it on the CPU) and ONNX Runtime give the same rows in ``classify``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from allgui.core import classify, inference
from allgui.core.imageio import read_rgb
from allgui.core.inference import FastSECNN, bfloat16_supported, default_precision
from allgui.core.models import calibration
from allgui.core.models.secnn import SECNNClassifier, trainer
from allgui.core.models.secnn.preparation import _median_colour, channel_counts, describe, masked, network_input
from allgui.core.models.store import load_model, save_model
from allgui.core.progress import no_progress
from tests.realsubset import Subset

# Two convolutions per block so that folding is tested on stacked convolutions; an odd size for the odd-count median.
TINY = dict(image_size=33, width=8, blocks=3, convs_per_block=2, epochs=2, batch_size=16, threads=1, device="cpu")
FLOAT32 = "ALLGUI_INFERENCE_PRECISION"


@pytest.fixture(scope="module")
def trained(data_dir: Path) -> tuple[SECNNClassifier, list[Path]]:
    subset = Subset.load(data_dir, per_class=12)
    model = SECNNClassifier(**TINY)
    model.fit(subset.data.paths, subset.data.labels, groups=subset.groups)
    return model, list(subset.data.paths)


@pytest.fixture(scope="module")
def strided(data_dir: Path) -> tuple[SECNNClassifier, list[Path]]:
    subset = Subset.load(data_dir, per_class=8)
    model = SECNNClassifier(**{**TINY, "image_size": 34, "stem_stride": 2, "normalise": "image"})
    model.fit(subset.data.paths, subset.data.labels, groups=subset.groups)
    assert model.torch_net().blocks[0].convs[0].stride == (2, 2)
    return model, list(subset.data.paths)


def _reference_statistics(batch: torch.Tensor) -> np.ndarray:
    """The image OOD statistics as first defined (``calibration.image_statistics``): sort-based torch quantiles."""
    x = batch.float() / 255.0
    flat = (-torch.log((x * 255.0 + 1.0) / 256.0)).flatten(2)
    quantiles = torch.quantile(flat, torch.tensor([0.05, 0.5, 0.95]), dim=2).permute(1, 2, 0).flatten(1)
    high, low = x.max(dim=1).values, x.min(dim=1).values
    saturation = ((high - low) / high.clamp_min(1e-3)).flatten(1)
    grey = x.mean(dim=1)
    gradient = ((grey[:, 1:, :-1] - grey[:, :-1, :-1]).abs() + (grey[:, :-1, 1:] - grey[:, :-1, :-1]).abs()).flatten(1)
    columns = [
        flat.mean(dim=2),
        flat.std(dim=2),
        quantiles,
        saturation.mean(dim=1, keepdim=True),
        saturation.std(dim=1, keepdim=True),
        (grey > 0.8).float().flatten(1).mean(dim=1, keepdim=True),
        (grey < 0.35).float().flatten(1).mean(dim=1, keepdim=True),
        gradient.mean(dim=1, keepdim=True),
        gradient.std(dim=1, keepdim=True),
    ]
    return torch.cat(columns, dim=1).numpy().astype(np.float64)


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
    images = [read_rgb(p) for p in paths]
    arrays = np.stack([model.pixels(image) for image in images])
    expected = _reference_statistics(torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous())
    got = np.stack([describe(a).statistics for a in arrays])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).double() / 255.0
    np.testing.assert_allclose(np.stack([describe(a).mean for a in arrays]), x.mean(dim=(2, 3)).numpy(), atol=1e-9)
    np.testing.assert_allclose(np.stack([describe(a).std for a in arrays]), x.std(dim=(2, 3)).numpy(), atol=1e-9)
    # The histograms updated for the masked corner are those of the masked pixels, so prepare() reads the same.
    for image, array in zip(images, arrays, strict=True):
        pixels, counts = masked(image, model.image_size, True)
        assert np.array_equal(pixels, array) and np.array_equal(counts, channel_counts(pixels))
        np.testing.assert_array_equal(model.prepare(image).statistics, describe(array).statistics)


@pytest.mark.parametrize("which", ["stacked-convolutions", "strided-stem"])
def test_fast_outputs_equal_the_plain_network(request: pytest.FixtureRequest, which: str) -> None:
    model, paths = request.getfixturevalue("trained" if which == "stacked-convolutions" else "strided")
    net = model.torch_net()
    x = network_input([model.prepare(read_rgb(p)) for p in paths], model.options.normalise == "image")
    fast = FastSECNN(net, 1, "float32").run(x)
    with torch.inference_mode():
        plain = [value.numpy() for value in net.eval().outputs(torch.from_numpy(x))]
    assert fast.class_maps is None and len(fast.excitations) == model.config.blocks
    np.testing.assert_allclose(fast.logits, plain[0], atol=1e-5)
    np.testing.assert_allclose(fast.features, plain[1], atol=1e-5)
    for got, want in zip(fast.excitations, plain[2:-2], strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.ptp(fast.logits, axis=0).max() > 1e-3  # the images do not all give the same logits


def test_classify_rows_are_the_same_in_both_engines(
    trained: tuple[SECNNClassifier, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, paths = trained
    monkeypatch.setenv(FLOAT32, "float32")
    model.set_engine("torch")
    before = model.predict_proba([read_rgb(p) for p in paths])  # the trained network, before it is saved
    save_model(model, tmp_path / "model", model_id="tiny")
    loaded = load_model(tmp_path / "model")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    files = [*paths, broken]
    rows = {}
    for engine, name in (("onnx", "ONNX Runtime"), ("torch", "torch")):
        loaded.classifier.set_engine(engine)
        rows[engine] = classify.classify_paths(files, loaded, batch_size=7)
        assert loaded.classifier.engine_name == name
    onnx_rows, torch_rows = rows["onnx"], rows["torch"]
    assert [r.path for r in onnx_rows] == [r.path for r in torch_rows]
    assert [r.error for r in onnx_rows] == [r.error for r in torch_rows] and onnx_rows[-1].error
    for onnx_row, torch_row in zip(onnx_rows[:-1], torch_rows[:-1], strict=True):
        for key in ("predicted", "needs_review", "reasons", "duplicate_group", "phash"):
            assert getattr(onnx_row, key) == getattr(torch_row, key), key
        np.testing.assert_allclose(onnx_row.probabilities, torch_row.probabilities, atol=1e-5)
    np.testing.assert_allclose([r.probabilities for r in onnx_rows[:-1]], before, atol=1e-5)


def test_precision_follows_the_environment_and_rejects_unknown_names(
    trained: tuple[SECNNClassifier, list[Path]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    net = trained[0].torch_net()
    monkeypatch.setenv(FLOAT32, "float32")
    assert default_precision() == "float32" and FastSECNN(net, 1).precision == "float32"
    monkeypatch.delenv(FLOAT32)
    assert default_precision() == ("bfloat16" if bfloat16_supported() else "float32")
    monkeypatch.setenv(FLOAT32, "fp32")  # a misspelling is reported, not obeyed silently
    with caplog.at_level("WARNING", logger="allgui.core.inference"):
        assert default_precision() == ("bfloat16" if bfloat16_supported() else "float32")
    assert "not one of float32, bfloat16" in caplog.text
    with pytest.raises(ValueError, match="precision"):
        FastSECNN(net, 1, precision="float16")
    # A CPU without bfloat16 units: asking for it falls back (environment) or is refused (argument).
    monkeypatch.setattr(inference, "bfloat16_supported", lambda: False)
    monkeypatch.setenv(FLOAT32, "bfloat16")
    assert default_precision() == "float32"
    with pytest.raises(ValueError, match="no bfloat16 units"):
        FastSECNN(net, 1, precision="bfloat16")


@pytest.mark.skipif(not bfloat16_supported(), reason="this CPU has no bfloat16 units (the fast path stays float32)")
def test_bfloat16_keeps_the_shipped_models_answers_on_real_images(data_dir: Path) -> None:
    from allgui.resources import shipped_models_dir

    model = load_model(shipped_models_dir() / "secnn-default").classifier
    assert isinstance(model, SECNNClassifier)
    prepared = [model.prepare(model.read(p)) for p in sorted(data_dir.rglob("*.jpg"))[::11]]  # 252, every class
    x = network_input(prepared, model.options.normalise == "image")
    net = model.torch_net()
    full = calibration.softmax(FastSECNN(net, 1, "float32").run(x).logits, model.temperature)
    half = calibration.softmax(FastSECNN(net, 1, "bfloat16").run(x).logits, model.temperature)
    change = np.abs(half - full)
    assert 0 < change.max() < 0.15 and change.mean() < 0.005
    assert np.count_nonzero(half.argmax(axis=1) != full.argmax(axis=1)) <= 2


def test_a_jpeg_draft_model_sees_files_decoded_as_in_its_training(
    trained: tuple[SECNNClassifier, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``jpeg_draft`` the files are decoded at reduced scale for training, ``classify`` (both engines) and
    ``Classifier.read``; other formats and other models are decoded at full size."""
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
    expected = np.stack([drafted.pixels(drafted.read(p)) for p in files])
    loaded_pixels = trainer._load(drafted, files, no_progress, None, len(files)).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(loaded_pixels, expected)
    assert not np.array_equal(expected, np.stack([model.pixels(read_rgb(p)) for p in files]))

    monkeypatch.setenv(FLOAT32, "float32")
    model.set_engine("onnx")
    wanted = drafted.predict_proba([drafted.read(p) for p in [*files, png]])
    full = model.predict_proba([read_rgb(p) for p in [*files, png]])
    assert np.abs(wanted - full)[:-1].max() > 1e-4 and np.abs(wanted - full)[-1].max() < 1e-5
    for engine in ("onnx", "torch"):
        drafted.set_engine(engine)
        rows = classify.classify_paths([*files, png], loaded)
        np.testing.assert_allclose([r.probabilities for r in rows], wanted, atol=1e-5)
