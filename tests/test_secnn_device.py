"""SE-CNN inference on a failing GPU: a CUDA error or out-of-memory moves the model to the CPU with a warning.

There is no GPU here, so the model is made to believe it is on CUDA (its device and a ``to`` that keeps the weights
where they are for "cuda") and its forward raises CUDA's errors; the results must equal a plain CPU run's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from allgui.core.dataset import LabelledDataset
from allgui.core.imageio import read_rgb
from allgui.core.inference import fast_path
from allgui.core.models.secnn import SECNNClassifier
from allgui.core.models.store import load_model
from allgui.core.models.torch_device import DeviceWarning
from allgui.resources import shipped_models_dir


def _shipped() -> SECNNClassifier:
    folder = shipped_models_dir() / "secnn-default"
    assert (folder / "manifest.json").is_file(), f"the shipped SE-CNN is missing from {folder}"
    classifier = load_model(folder).classifier
    classifier.set_device("cpu")
    return classifier


@pytest.fixture(scope="module")
def images(data_dir: Path) -> list:
    dataset = LabelledDataset.from_folder(data_dir)
    picked = [int(np.flatnonzero(dataset.labels == label)[7]) for label in range(4)]
    return [read_rgb(dataset.paths[i]) for i in picked]


def _pretend_cuda(classifier: SECNNClassifier, monkeypatch: pytest.MonkeyPatch, error: Exception) -> list[str]:
    """The classifier believes it is on CUDA; its network's first forward (either entry) raises ``error``."""
    net = classifier.net
    assert net is not None
    calls: list[str] = []
    real_to, real_features, real_forward_all = net.to, net.features, net.forward_all

    def to(device, *args, **kwargs):
        if torch.device(device).type == "cuda":
            return net  # "moved": the weights stay on the CPU, which is all this machine has
        return real_to(device, *args, **kwargs)

    def failing(real):
        def call(*args, **kwargs):
            calls.append(str(classifier.device))
            if len(calls) == 1:
                raise error
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(net, "to", to)
    monkeypatch.setattr(net, "features", failing(real_features))
    monkeypatch.setattr(net, "forward_all", failing(real_forward_all))
    classifier._device = torch.device("cuda")  # noqa: SLF001 - what choose_device gives on a machine with a GPU
    return calls


CUDA_ERRORS = [
    RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronous"),
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
]


@pytest.mark.parametrize("error", CUDA_ERRORS, ids=["cuda-error", "out-of-memory"])
def test_predict_falls_back_to_the_cpu_with_the_cpu_results(images, monkeypatch, error) -> None:
    reference = _shipped()
    expected = reference.predict(images)
    expected_proba = reference.predict_proba(images)

    classifier = _shipped()
    calls = _pretend_cuda(classifier, monkeypatch, error)
    with pytest.warns(DeviceWarning, match="CUDA failed .*continuing on the CPU"):
        predictions = classifier.predict(images)
    assert calls[0] == "cuda" and set(calls[1:]) == {"cpu"}  # one failed try on "CUDA", then the CPU
    assert classifier.device.type == "cpu"
    assert classifier.device_notice and "continuing on the CPU" in classifier.device_notice
    for got, want in zip(predictions, expected, strict=True):
        assert got.predicted == want.predicted
        np.testing.assert_allclose(got.probabilities, want.probabilities, rtol=1e-6, atol=1e-7)
        assert got.needs_review == want.needs_review
    # Later calls stay on the CPU without another warning.
    np.testing.assert_allclose(classifier.predict_proba(images), expected_proba, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(classifier.ood_scores(images), reference.ood_scores(images), rtol=1e-6)
    np.testing.assert_allclose(classifier.features(images), reference.features(images), rtol=1e-6, atol=1e-7)
    assert calls.count("cuda") == 1


@pytest.mark.parametrize("method", ["predict_proba", "ood_scores", "features"])
def test_every_inference_entry_falls_back(images, monkeypatch, method) -> None:
    reference = getattr(_shipped(), method)(images)
    classifier = _shipped()
    calls = _pretend_cuda(classifier, monkeypatch, CUDA_ERRORS[0])
    with pytest.warns(DeviceWarning):
        got = getattr(classifier, method)(images)
    assert calls[0] == "cuda" and set(calls[1:]) == {"cpu"}
    np.testing.assert_allclose(got, reference, rtol=1e-6, atol=1e-7)


def test_attention_falls_back(images, monkeypatch) -> None:
    reference = _shipped().attention(images[0])
    classifier = _shipped()
    calls = _pretend_cuda(classifier, monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory"))
    with pytest.warns(DeviceWarning):
        got = classifier.attention(images[0])
    assert calls == ["cuda", "cpu"]  # attention is one forward
    assert got.block_names == reference.block_names
    np.testing.assert_allclose(got.heatmap, reference.heatmap, rtol=1e-5, atol=1e-6)
    for a, b in zip(got.excitations, reference.excitations, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_other_errors_are_not_hidden(images, monkeypatch) -> None:
    """Only CUDA failures fall back: a plain bug on the GPU, or any error on the CPU, still fails loudly."""
    classifier = _shipped()
    _pretend_cuda(classifier, monkeypatch, RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        classifier.predict(images)
    assert classifier.device.type == "cuda" and classifier.device_notice is None

    on_cpu = _shipped()
    calls = _pretend_cuda(on_cpu, monkeypatch, RuntimeError("CUDA error: device-side assert"))
    on_cpu._device = torch.device("cpu")  # noqa: SLF001 - a CPU model never "falls back"
    with pytest.raises(RuntimeError, match="device-side assert"):
        on_cpu.predict(images)
    assert calls[0] == "cpu"


def test_fast_cpu_path_is_unaffected(images, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast batched path (CPU only, float32) gives the same predictions as the plain path after the change."""
    monkeypatch.setenv("ALLGUI_INFERENCE_PRECISION", "float32")
    classifier = _shipped()
    fast = fast_path(classifier)
    assert fast is not None
    plain = classifier.predict(images)
    quick = fast.predict(images)
    for a, b in zip(quick, plain, strict=True):
        assert a.predicted == b.predicted
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-4, atol=1e-5)
