"""SE-CNN inference on a failing GPU: a CUDA error or out-of-memory moves the torch engine to the CPU with a warning.

There is no GPU here, so the torch engine is made to believe it is on CUDA (``choose_device`` gives "cuda", and a
``to("cuda")`` of the network or of a tensor keeps it where it is) and the network's first run raises CUDA's
errors; the results must equal a plain CPU run's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from allgui.core.dataset import LabelledDataset
from allgui.core.imageio import read_rgb
from allgui.core.models.secnn import SECNNClassifier, torch_engine
from allgui.core.models.store import load_model
from allgui.core.models.torch_device import DeviceWarning
from allgui.resources import shipped_models_dir

# torch's autocast notes that CUDA is not there (it is pretended): not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore:.*CUDA is not available:UserWarning")


@pytest.fixture(autouse=True)
def float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch engine's fast CPU path in float32, so that it equals the plain network up to rounding."""
    monkeypatch.setenv("ALLGUI_INFERENCE_PRECISION", "float32")


def _shipped() -> SECNNClassifier:
    folder = shipped_models_dir() / "secnn-default"
    assert (folder / "manifest.json").is_file(), f"the shipped SE-CNN is missing from {folder}"
    classifier = load_model(folder).classifier
    assert isinstance(classifier, SECNNClassifier)
    classifier.set_engine("torch")
    classifier.set_device("cpu")
    return classifier


@pytest.fixture(scope="module")
def images(data_dir: Path) -> list:
    dataset = LabelledDataset.from_folder(data_dir)
    picked = [int(np.flatnonzero(dataset.labels == label)[7]) for label in range(4)]
    return [read_rgb(dataset.paths[i]) for i in picked]


def _pretend_cuda(classifier: SECNNClassifier, monkeypatch: pytest.MonkeyPatch, error: Exception) -> list[str]:
    """The classifier's torch engine believes it is on CUDA; the network's first ``outputs`` raises ``error``.

    Returns the engine's device type at each call of the network's ``outputs``."""
    net = classifier.torch_net()
    calls: list[str] = []
    real_to, real_outputs, real_tensor_to = net.to, net.outputs, torch.Tensor.to

    def on_cuda(args: tuple, kwargs: dict) -> bool:
        device = kwargs.get("device", args[0] if args else None)
        return isinstance(device, str | torch.device) and torch.device(device).type == "cuda"

    def to(*args, **kwargs):
        return net if on_cuda(args, kwargs) else real_to(*args, **kwargs)  # "moved": the weights stay on the CPU

    def tensor_to(self, *args, **kwargs):
        return self if on_cuda(args, kwargs) else real_tensor_to(self, *args, **kwargs)

    def outputs(*args, **kwargs):
        calls.append(classifier.engine.device.type)  # type: ignore[attr-defined]
        if len(calls) == 1:
            raise error
        return real_outputs(*args, **kwargs)

    monkeypatch.setattr(torch_engine, "choose_device", lambda preference, log=None: torch.device("cuda"))
    monkeypatch.setattr(net, "to", to)
    monkeypatch.setattr(net, "outputs", outputs)
    monkeypatch.setattr(torch.Tensor, "to", tensor_to)
    classifier.set_device("cuda")
    assert classifier.engine.device.type == "cuda"  # type: ignore[attr-defined]
    return calls


CUDA_ERRORS = [
    RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronous"),
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
]


@pytest.mark.parametrize("error", CUDA_ERRORS, ids=["cuda-error", "out-of-memory"])
def test_predict_falls_back_to_the_cpu_with_the_cpu_results(images, monkeypatch, error) -> None:
    reference = _shipped()
    expected = reference.predict(images)

    classifier = _shipped()
    calls = _pretend_cuda(classifier, monkeypatch, error)
    with pytest.warns(DeviceWarning, match="CUDA failed .*continuing on the CPU"):
        predictions = classifier.predict(images)
    assert calls == ["cuda", "cpu"]  # one failed try on "CUDA", then the CPU
    assert classifier.engine.device.type == "cpu" and classifier.options.device == "cpu"  # type: ignore[attr-defined]
    assert classifier.device_notice and "continuing on the CPU" in classifier.device_notice
    for got, want in zip(predictions, expected, strict=True):
        assert got.predicted == want.predicted and got.needs_review == want.needs_review
        np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-5)
        np.testing.assert_allclose(got.ood_score, want.ood_score, rtol=1e-4)
    # Later calls stay on the CPU (the fast path) without another warning or another try on CUDA.
    np.testing.assert_allclose(classifier.predict_proba(images), reference.predict_proba(images), atol=1e-5)
    np.testing.assert_allclose(classifier.ood_scores(images), reference.ood_scores(images), rtol=1e-4)
    np.testing.assert_allclose(classifier.features(images), reference.features(images), rtol=1e-4, atol=1e-5)
    assert calls.count("cuda") == 1


@pytest.mark.parametrize("method", ["predict_proba", "ood_scores", "features"])
def test_every_inference_entry_falls_back(images, monkeypatch, method) -> None:
    reference = getattr(_shipped(), method)(images)
    classifier = _shipped()
    calls = _pretend_cuda(classifier, monkeypatch, CUDA_ERRORS[0])
    with pytest.warns(DeviceWarning):
        got = getattr(classifier, method)(images)
    assert calls == ["cuda", "cpu"]
    assert classifier.device_notice
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5)


def test_attention_falls_back(images, monkeypatch) -> None:
    reference = _shipped().attention(images[0])
    classifier = _shipped()
    calls = _pretend_cuda(classifier, monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory"))
    with pytest.warns(DeviceWarning):
        got = classifier.attention(images[0])
    assert calls == ["cuda", "cpu"]  # attention is one run
    assert classifier.device_notice
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
    assert classifier.engine.device.type == "cuda" and classifier.device_notice is None  # type: ignore[attr-defined]

    on_cpu = _shipped()
    calls = _pretend_cuda(on_cpu, monkeypatch, RuntimeError("CUDA error: device-side assert"))
    on_cpu.engine.device = torch.device("cpu")  # type: ignore[attr-defined] - a CPU engine never "falls back"
    with pytest.raises(RuntimeError, match="device-side assert"):
        on_cpu.attention(images[0])  # the maps: the plain network, which raises
    assert calls == ["cpu"] and on_cpu.device_notice is None
