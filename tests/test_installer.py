"""The desktop installer: the self-test, the desktop entry and icon, and a real PyInstaller build whose frozen
executable must pass its own ``--self-test``."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from allgui import selftest
from allgui.cli.main import main as cli_main
from allgui.core.models import registry, runtime
from allgui.core.models.store import MANIFEST, save_model
from allgui.resources import resources_dir, shipped_models_dir
from tests.imagefactory import smear_like

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """The suite's thread check, adapted for the main window as in tests/ui/conftest.py: Python lists every Qt pool
    thread that ever ran Python code as a permanent "dummy" thread, so those are judged by their pool instead."""
    from allgui.ui.workers import live_pools

    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        busy = [pool for pool in live_pools() if pool.activeThreadCount() > 0]
        leaked = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and not isinstance(t, threading._DummyThread)  # noqa: SLF001
        ]
        if (not busy and not leaked) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not busy, "the self-test left Qt worker threads running"
    assert not leaked, f"the self-test left threads running: {[t.name for t in leaked]}"


@pytest.fixture(scope="module")
def tiny_shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shipped-models folder holding one small SVM fitted on generated images (seconds, no torch training)."""
    root = tmp_path_factory.mktemp("tiny-shipped")
    paths, labels = [], []
    for label in range(4):
        for i in range(12):
            path = root / "images" / f"{label}-{i}.png"
            path.parent.mkdir(exist_ok=True)
            smear_like(100 * label + i, 32).save(path)
            paths.append(path)
            labels.append(label)
    classifier = registry.create("svm", image_size=16, pca_components=8, C=[1.0], cv_folds=2)
    classifier.fit(paths, np.array(labels))
    save_model(classifier, root / "models" / "svm-tiny", model_id="svm-tiny")
    return root / "models"


def test_self_test_opens_the_window_and_classifies_with_every_shipped_model(
    tiny_shipped: Path, tmp_path: Path, isolated_home: Path
) -> None:
    report_file = tmp_path / "report.json"
    status, report = selftest.run_self_test(report_file, shipped_dir=tiny_shipped)
    assert status == 0, report["failures"]
    assert json.loads(report_file.read_text(encoding="utf-8")) == report
    assert report["passed"] and report["failures"] == []
    assert report["frozen"] is False
    window = report["window"]
    assert window["passed"] and window["tabs"] == 3 and window["model_loaded"] == "svm-tiny"
    assert "not a diagnosis" in window["title"]
    assert Image.open(window["screenshot"]).size[0] > 400  # a picture a person can look at
    (model,) = report["models"]
    assert model["id"] == "svm-tiny" and model["passed"] and model["device"] == "CPU"
    assert model["engine"] == "scikit-learn" and "attention" not in model  # no network, no heat map
    probabilities = model["prediction"]["probabilities"]
    assert len(probabilities) == 4 and abs(sum(probabilities) - 1) < 1e-3
    assert model["prediction"]["class"] in ("Benign", "Early Pre-B", "Pre-B", "Pro-B")
    # The batch run (classify_paths, as `allgui classify` and the Batch tab) agrees with the direct prediction.
    assert model["batch"]["class"] == model["prediction"]["class"] and model["batch"]["largest_difference"] < 1e-3
    assert set(model["seconds"]) == {"load", "engine", "classify", "attention", "batch"}
    # A tiny SVM and Random Forest were trained, saved and reloaded; networks train wherever torch is installed.
    training = report["training"]
    assert training["passed"] and set(training["trained"]) == {"svm", "rf"}
    assert ("secnn" in training["cannot_train"]) is not runtime.torch_installed()
    for name in ("onnxruntime", "onnx", "safetensors", "sklearn", "imblearn", "skops", "PySide6", "pyqtgraph"):
        assert report["versions"][name][0].isdigit(), (name, report["versions"][name])
    assert report["torch"]["installed"] is runtime.torch_installed()
    if runtime.torch_installed():  # torch and CUDA details only where torch is there (not in the lab bundle)
        assert report["versions"]["torch"][0].isdigit() and "cuda_available" in report["device"]
        assert report["torch"]["imported"] is True  # the device probe imports it on purpose
    assert report["device"]["passed"] and report["device"]["auto"] == "CPU"
    assert "CPUExecutionProvider" in report["device"]["onnxruntime_providers"]
    # The self-test used a throw-away user folder: nothing was written to the user's own.
    assert not any(isolated_home.iterdir())


def test_self_test_without_torch_reports_no_torch_details(
    tiny_shipped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where torch is not installed (the lab bundle), the report says so instead of failing to import it."""
    monkeypatch.setattr(runtime, "torch_installed", lambda: False)
    status, report = selftest.run_self_test(tmp_path / "report.json", shipped_dir=tiny_shipped)
    assert status == 0, report["failures"]
    assert report["versions"]["torch"] == report["versions"]["torchvision"] == "not installed"
    assert report["torch"]["installed"] is False
    assert report["device"]["auto"] == "CPU" and "cuda_available" not in report["device"]
    assert set(report["training"]["cannot_train"]) == {"secnn", "cnn-hash-svm"}


def test_self_test_fails_for_a_shipped_folder_that_is_not_a_model(tiny_shipped: Path, tmp_path: Path) -> None:
    """The store skips such a folder when it lists models; the self-test checks every folder, so it fails."""
    shipped = tmp_path / "models"
    shutil.copytree(tiny_shipped, shipped)
    (shipped / "half-copied").mkdir()
    (shipped / "half-copied" / MANIFEST).write_text("{", encoding="utf-8")
    with pytest.warns(UserWarning, match="not listed as a model"):  # the store's word on it, for the window
        status, report = selftest.run_self_test(tmp_path / "report.json", shipped_dir=shipped)
    assert status == 1
    assert [(m["id"], m["passed"]) for m in report["models"]] == [("half-copied", False), ("svm-tiny", True)]
    assert any(line.startswith("model half-copied: load:") for line in report["failures"])


def test_self_test_fails_when_a_shipped_model_is_damaged(tiny_shipped: Path, tmp_path: Path) -> None:
    broken = tmp_path / "models"
    shutil.copytree(tiny_shipped, broken)
    with open(broken / "svm-tiny" / "pipeline.skops", "ab") as handle:
        handle.write(b"tampered")
    status, report = selftest.run_self_test(tmp_path / "report.json", shipped_dir=broken)
    assert status == 1 and not report["passed"]
    (model,) = report["models"]
    assert not model["passed"] and "SHA-256" in model["error"] and set(model["seconds"]) == {"load"}
    assert any("svm-tiny" in line for line in report["failures"])


def test_cli_self_test_fails_and_says_so_without_shipped_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    monkeypatch.setattr("allgui.resources.shipped_models_dir", lambda: empty)
    report_file = tmp_path / "report.json"
    assert cli_main(["--self-test", "--report", str(report_file)]) == 1
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert report["window"]["passed"] and report["models"] == []
    assert report["failures"] == [f"no shipped model found in {empty}: the installation has nothing to classify with"]
    assert "self-test FAILED" in capsys.readouterr().err


def test_missing_std_streams_of_a_windowed_app_are_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    selftest.ensure_std_streams()
    assert sys.stdout is not None and sys.stderr is not None
    print("goes nowhere", file=sys.stderr)  # would raise AttributeError on None through .write in libraries
    sys.stdout.write("goes nowhere\n")
    sys.stdout.close()
    sys.stderr.close()


def test_resources_resolve_to_the_checkout_when_not_frozen() -> None:
    """The editable install maps the package allgui.assets onto the checkout's resources/ folder."""
    assert resources_dir() == ROOT / "resources"
    assert shipped_models_dir() == ROOT / "resources" / "models"


def test_desktop_entry_and_icons() -> None:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive
    entry.read(ROOT / "resources" / "allgui.desktop", encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application" and section["Name"] == "AllGUI"
    assert section["Exec"].split()[0] == "allgui" and section["Terminal"] == "false"
    assert section["Icon"] == "allgui" and section["Categories"].endswith(";")
    png = Image.open(ROOT / "resources" / "icons" / "allgui.png")
    assert png.size == (512, 512) and png.mode == "RGBA"
    ico = Image.open(ROOT / "resources" / "icons" / "allgui.ico")
    assert (256, 256) in ico.info["sizes"] and (16, 16) in ico.info["sizes"]
    # The committed icon is the one the script draws.
    sys.path.insert(0, str(ROOT / "resources" / "icons"))
    try:
        import make_icon
    finally:
        sys.path.pop(0)
    drawn = np.asarray(make_icon.draw(), dtype=np.int16)
    assert np.abs(drawn - np.asarray(png, dtype=np.int16)).max() <= 2


def _bundle_files(bundle: Path) -> list[str]:
    return [p.relative_to(bundle).as_posix() for p in bundle.rglob("*")]


# The lab bundle must stay small enough to copy onto a laboratory PC (3.2 GB with torch; docs/bundle-sizes.md).
LAB_BUNDLE_LIMIT = 400 * 2**20
# Anything of torch or CUDA, at any depth of the bundle.
TORCH_PARTS = ("torch", "torchvision", "nvidia", "triton", "functorch", "torchgen")
TORCH_LIBRARIES = ("libtorch", "libc10", "libcudnn", "libcublas", "libcudart", "libnvrtc", "libnccl", "libcusparse")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_lab_bundle_builds_without_torch_and_passes_its_self_test(tmp_path: Path, record_property) -> None:
    """The default target of installer.spec: the lab bundle, without torch. (The full bundle, `-- --full`, is not
    built here: 3 GB, too big and slow for CI; docs/bundle-sizes.md says how it was checked.)"""
    import PyInstaller  # the build tool is part of the test extra: missing, this test fails rather than skips

    shipped_ids = sorted(
        json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["id"]
        for folder in shipped_models_dir().iterdir()
        if (folder / MANIFEST).is_file()
    )
    network_ids = {
        json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["id"]
        for folder in shipped_models_dir().iterdir()
        if (folder / MANIFEST).is_file()
        and registry.kind_info(json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["kind"]).has_network
    }
    assert network_ids  # the shipped SE-CNNs run in ONNX Runtime in this bundle
    dist, work = tmp_path / "dist", tmp_path / "work"
    started = time.perf_counter()
    build = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
         "--distpath", str(dist), "--workpath", str(work), str(ROOT / "installer.spec")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    build_seconds = time.perf_counter() - started
    assert build.returncode == 0, build.stderr[-4000:]
    bundle = dist / "allgui"
    try:
        size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink())
        record_property("build_seconds", round(build_seconds))
        record_property("bundle_bytes", size)
        print(f"PyInstaller {PyInstaller.__version__}: built in {build_seconds:.0f} s, bundle {size / 2**20:.0f} MiB")

        files = _bundle_files(bundle)
        internal = bundle / "_internal"
        for unwanted in ("tkinter", "PyQt5", "PyQt6", "PySide2", "pytest", "hypothesis", "skimage", "sympy"):
            assert not (internal / unwanted).exists(), unwanted
        torch_files = [
            name
            for name in files
            if any(part in TORCH_PARTS for part in Path(name).parts) or Path(name).name.startswith(TORCH_LIBRARIES)
        ]
        assert torch_files == [], torch_files[:20]
        assert size < LAB_BUNDLE_LIMIT, f"the lab bundle is {size / 2**20:.0f} MiB"
        assert (
            (internal / "onnxruntime").is_dir() and (internal / "onnx").is_dir() and (internal / "safetensors").is_dir()
        )
        assert not any(name.endswith("make_icon.py") for name in files)
        assert [p for p in internal.iterdir() if p.is_symlink() and not p.exists()] == []
        assets = internal / "allgui" / "assets"  # where a wheel installs them: allgui.assets
        assert (assets / "icons" / "allgui.png").is_file() and (assets / "docs" / "USER_GUIDE.md").is_file()

        # Run it as a lab would: no virtual environment, no Python paths, from another folder.
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path / "home"),
            "ALLGUI_HOME": str(tmp_path / "allgui-home"),
            "QT_QPA_PLATFORM": "offscreen",
            "OMP_NUM_THREADS": "2",
        }
        report_file = tmp_path / "frozen-report.json"
        run = subprocess.run(
            [str(bundle / "allgui"), "--self-test", "--report", str(report_file)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        report = json.loads(report_file.read_text(encoding="utf-8"))
        assert report["frozen"] is True and report["bundle"] == "lab"
        assert Path(report["resources_dir"]) == assets  # found with importlib.resources, frozen too
        assert report["window"]["passed"], report["window"]
        assert sorted(m["id"] for m in report["models"]) == shipped_ids
        assert run.returncode == 0, (report["failures"], run.stderr[-3000:])
        assert report["passed"] and all(m["passed"] for m in report["models"])
        assert report["window"]["model_loaded"] in shipped_ids
        # Every shipped model classified without torch: the networks in ONNX Runtime, with their heat maps.
        for model in report["models"]:
            assert model["device"] == "CPU", model
            if model["id"] in network_ids:
                assert model["engine"].startswith("ONNX Runtime"), model
            assert model["batch"]["largest_difference"] < 1e-3, model
        assert any("attention" in m for m in report["models"])
        assert report["torch"] == {
            "installed": False, "imported_before": False, "imported_by_checks": False, "imported": False
        }  # fmt: skip
        assert report["versions"]["torch"] == "not installed" and report["versions"]["onnxruntime"][0].isdigit()
        assert report["device"]["auto"] == "CPU" and "cuda_available" not in report["device"]
        # The classical models retrain here; training a network says to use the full bundle.
        assert report["training"]["passed"] and set(report["training"]["trained"]) == {"svm", "rf"}
        refusal = report["training"]["cannot_train"]["secnn"]
        assert "torch" in refusal and "full" in refusal  # it names what is missing and where to get it
        # The CLI works frozen too.
        version = subprocess.run([str(bundle / "allgui"), "--version"], env=env, capture_output=True, text=True)
        assert version.returncode == 0 and version.stdout.strip().startswith("allgui ")
        train = subprocess.run(
            [str(bundle / "allgui"), "train", "--model", "secnn", str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert train.returncode == 2 and refusal in train.stderr, train.stderr[-2000:]
    finally:
        shutil.rmtree(dist, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
