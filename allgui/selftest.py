"""`allgui --self-test [--report FILE]`: prove an installation works, frozen or not.

Opens the main window offscreen, loads every folder of the shipped models, classifies one generated test image with
each (directly and as a batch run, the way ``allgui classify`` and the Batch tab do), trains, saves and reloads a tiny
SVM and Random Forest (the classical models a lab retrains), and writes a JSON report. The report names the engine
that ran each model, and says whether torch is installed and whether the checks imported it: the laboratory bundle
leaves torch out, and its torch and CUDA details are read only where torch is installed. Exit status 0 only if the
window opened and every check passed; an installation with no shipped model fails, because a lab would have nothing
to classify with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Libraries whose versions identify a build; read from the modules, since a frozen bundle may lack their metadata.
# Every installation needs these ...
VERSION_MODULES = (
    "onnxruntime",
    "onnx",
    "safetensors",
    "sklearn",
    "imblearn",
    "skops",
    "numpy",
    "scipy",
    "PIL",
    "PySide6",
    "pyqtgraph",
)
# ... and these only where torch is installed (not in the laboratory bundle); importing them takes seconds.
TORCH_MODULES = ("torch", "torchvision")
NOT_INSTALLED = "not installed"
MODEL_LOAD_TIMEOUT_S = 300.0
# A batch run of the test image may differ from the direct prediction by resizing and float rounding, no more.
BATCH_TOLERANCE = 0.02


def ensure_std_streams() -> None:
    """A windowed (no console) frozen app starts with sys.stdout/sys.stderr set to None; libraries that write to
    them (warnings, progress bars, print with file=sys.stderr) would then crash, so point them at the null device."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - lives as long as the process


def test_image() -> Any:
    """A 224x224 RGB image drawn like a stained smear: pink background, pale red cells, one purple nucleus.

    Generated, so the bundle ships no patient image; deterministic, so reports from two runs compare.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(20240101)
    size = 224
    base = np.array([232, 196, 206], dtype=np.float64)
    noise = rng.normal(0, 6, (size, size, 3))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for x, y in rng.integers(10, size - 10, (9, 2)):
        r = int(rng.integers(14, 20))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(214, 150, 160))
    draw.ellipse((72, 70, 156, 150), fill=(196, 170, 214))  # cytoplasm
    draw.ellipse((84, 80, 146, 140), fill=(92, 48, 128))  # nucleus
    return image.filter(ImageFilter.GaussianBlur(1.2))


def torch_imported() -> bool:
    """Whether torch has been imported in this process (a None entry only blocks the import)."""
    return sys.modules.get("torch") is not None


def _versions(modules: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Each library's version, and one line per library that does not import (the app needs all of them)."""
    import importlib

    versions = {}
    problems = []
    for name in modules:
        try:
            versions[name] = str(getattr(importlib.import_module(name), "__version__", "unknown"))
        except Exception as error:  # noqa: BLE001 - a missing library is a finding for the report, not a crash
            versions[name] = "not importable"
            problems.append(f"library {name} does not import: {type(error).__name__}: {error}")
    return versions, problems


def _device() -> dict[str, Any]:
    """Where networks run by default. Without torch that is ONNX Runtime on the CPU; torch is asked (and imported)
    only where it is installed, for the GPU it would use."""
    import onnxruntime

    from allgui.core.models import runtime

    found: dict[str, Any] = {
        "torch_installed": runtime.torch_installed(),
        "gpu_driver": runtime.gpu_present(),
        "onnxruntime_providers": list(onnxruntime.get_available_providers()),
    }
    if not runtime.torch_installed():
        return {**found, "auto": "CPU"}
    import torch

    from allgui.core.models.torch_device import choose_device, device_label

    device = choose_device("auto")
    return {
        **found,
        "auto": device_label(device),
        "cuda_available": bool(torch.cuda.is_available()),
        "torch_cuda_build": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
    }


def _step(entry: dict[str, Any], name: str, action: Callable[[], Any]) -> Any:
    """Run one timed step; on failure record the error in ``entry`` and return None."""
    started = time.perf_counter()
    try:
        return action()
    except Exception as error:  # noqa: BLE001 - every failure must end up in the report, not as a traceback
        entry["passed"] = False
        entry["error"] = f"{name}: {type(error).__name__}: {error}"
        entry["traceback"] = traceback.format_exc(limit=8)
        return None
    finally:
        entry.setdefault("seconds", {})[name] = round(time.perf_counter() - started, 3)


# Qt's offscreen platform says this for every window it shows; it is about the platform, not about AllGUI.
OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints()"


def quiet_offscreen_messages() -> None:
    """Drop the offscreen platform's own notice; every other Qt message still reaches stderr."""
    from PySide6.QtCore import qInstallMessageHandler

    def handler(mode: Any, context: Any, message: str) -> None:
        if message != OFFSCREEN_NOISE and sys.stderr is not None:
            sys.stderr.write(f"{message}\n")

    qInstallMessageHandler(handler)


def _check_window(store: Any, settings_dir: Path, screenshot: Path | None) -> dict[str, Any]:
    """Open the real main window offscreen with its tabs, and wait until it has loaded its model in the background
    (the same worker threads a technician's session uses); then close it, which stops every worker."""
    entry: dict[str, Any] = {"passed": True}

    def open_window() -> Any:
        from PySide6.QtCore import QEventLoop, QTimer
        from PySide6.QtWidgets import QApplication

        from allgui.ui.main_window import MainWindow

        quiet_offscreen_messages()
        app = QApplication.instance() or QApplication([sys.argv[0]])
        window = MainWindow(store=store, settings_dir=settings_dir, build_now=False)
        window.show()
        app.processEvents()
        outcome: dict[str, Any] = {}
        loop = QEventLoop()
        window.models.loaded.connect(lambda loaded: (outcome.setdefault("model", loaded.id), loop.quit()))
        window.models.failed.connect(lambda message: (outcome.setdefault("error", message), loop.quit()))
        window.build_tabs()
        if window.models.models and not outcome:
            QTimer.singleShot(int(MODEL_LOAD_TIMEOUT_S * 1000), loop.quit)
            loop.exec()
        app.processEvents()
        entry.update(title=window.windowTitle(), platform=app.platformName(), tabs=window.tabs.count())
        entry["model_loaded"] = outcome.get("model")
        if screenshot is not None:
            window.grab().save(str(screenshot))
            entry["screenshot"] = str(screenshot)
        window.close()  # cancels and joins the window's workers
        window.deleteLater()
        app.processEvents()
        if "error" in outcome:
            raise RuntimeError(f"the window could not load its model: {outcome['error']}")
        if window.models.models and "model" not in outcome:
            raise RuntimeError(f"the window did not load its model within {MODEL_LOAD_TIMEOUT_S:.0f} s")
        return window

    _step(entry, "open", open_window)
    return entry


def _probabilities_problem(probabilities: Any) -> str | None:
    """Why ``probabilities`` are not one image's distribution over the four classes, or None."""
    import numpy as np

    values = np.asarray(probabilities, dtype=np.float64)
    if values.shape != (4,):
        return f"expected 4 probabilities, got shape {values.shape}"
    if not (np.all(np.isfinite(values)) and values.min() >= 0 and abs(values.sum() - 1) < 1e-3):
        return f"probabilities are not a distribution: {values.tolist()}"
    return None


def _check_model(folder: Path, image: Any, image_file: Path) -> dict[str, Any]:
    """Load one shipped model folder and classify the test image with it twice: with ``predict`` and as a batch run
    through :func:`allgui.core.classify.classify_paths` (decoding thread, the model's batch predictor, hashing); a
    network also draws its attention heat map, as the Review tab shows it."""
    from allgui.core.classify import classify_paths
    from allgui.core.models.store import load_model

    entry: dict[str, Any] = {"id": folder.name, "passed": True}
    loaded = _step(entry, "load", lambda: load_model(folder))
    if loaded is None:
        return entry
    entry.update(id=loaded.id, kind=loaded.kind, title=loaded.title)
    # The engine is chosen (an ONNX Runtime session made, or torch imported) on first use.
    engine = _step(entry, "engine", lambda: (loaded.classifier.engine_name, loaded.classifier.device_name))
    if engine is None:
        return entry
    entry["engine"], entry["device"] = engine
    predictions = _step(entry, "classify", lambda: loaded.classifier.predict([image]))
    if predictions is None:
        return entry
    if len(predictions) != 1 or (problem := _probabilities_problem(predictions[0].probabilities)):
        entry.update(passed=False, error=f"classify: {problem or f'{len(predictions)} predictions for one image'}")
        return entry
    prediction = predictions[0]
    entry["prediction"] = {
        "class": prediction.predicted_name,
        "confidence": round(prediction.confidence, 4),
        "probabilities": [round(float(p), 4) for p in prediction.probabilities],
        "needs_review": prediction.needs_review,
    }
    # The Review tab's heat map: the networks' attention, None for the classical models.
    attention = _step(entry, "attention", lambda: loaded.classifier.attention(image))
    if "error" in entry:
        return entry
    if attention is not None:
        import numpy as np

        heatmap = np.asarray(attention.heatmap)
        if heatmap.ndim != 2 or not np.all(np.isfinite(heatmap)):
            entry.update(passed=False, error=f"attention: a heat map of shape {heatmap.shape} with non-finite values")
            return entry
        entry["attention"] = {"blocks": len(attention.block_names), "heatmap": list(heatmap.shape)}
    rows = _step(entry, "batch", lambda: classify_paths([image_file], loaded, batch_size=1))
    if rows is None:
        return entry
    row = rows[0] if len(rows) == 1 else None
    problem = (
        f"{len(rows)} rows for one image" if row is None else row.error or _probabilities_problem(row.probabilities)
    )
    if problem is None and row is not None and row.probabilities is not None:
        difference = max(abs(a - float(b)) for a, b in zip(row.probabilities, prediction.probabilities, strict=True))
        entry["batch"] = {"class": row.predicted, "largest_difference": round(difference, 6)}
        if difference > BATCH_TOLERANCE:
            problem = f"its probabilities differ from the direct prediction's by {difference:.4f}"
    if problem is not None:
        entry.update(passed=False, error=f"batch: {problem}")
    entry["torch_imported"] = torch_imported()  # by now: this model's checks, and those before it
    return entry


def _training_images(folder: Path, per_class: int = 12, size: int = 24) -> tuple[list[Path], Any]:
    """Small generated images, one tint per class, so that a fit has something to separate."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(20240102)
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for label in range(4):
        tint = np.array([200 - 30 * label, 150 + 20 * label, 190], dtype=np.float64)
        for i in range(per_class):
            pixels = np.clip(tint + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{label}-{i}.png"
            Image.fromarray(pixels, "RGB").save(path)
            paths.append(path)
            labels.append(label)
    return paths, np.array(labels)


# Tiny versions of the classical kinds a laboratory retrains: seconds, yet every library of their training runs
# (scikit-learn's grid search and forest, imbalanced-learn's SMOTE, skops writing and reading the pipeline).
TINY_TRAINING = {
    "svm": {"image_size": 16, "pca_components": 8, "C": [1.0], "cv_folds": 2},
    "rf": {"image_size": 16, "pca_components": 8, "augment_copies": 1, "n_estimators": 20},
}


def _check_training(scratch: Path, image: Any) -> dict[str, Any]:
    """Train, save, reload and use each tiny classical model; say which kinds cannot be trained here and why
    (the networks without torch: the laboratory bundle)."""
    from allgui.core.models import registry
    from allgui.core.models.store import load_model, save_model

    entry: dict[str, Any] = {"passed": True}
    entry["cannot_train"] = {
        kind: why for kind in registry.kinds(offered_only=True) if (why := registry.cannot_train(kind))
    }
    images = _step(entry, "images", lambda: _training_images(scratch / "training-images"))
    if images is None:
        return entry
    paths, labels = images
    trained = {}
    for kind, options in TINY_TRAINING.items():

        def train_and_reload(kind: str = kind, options: dict[str, Any] = options) -> str:
            classifier = registry.create(kind, **options)
            classifier.fit(paths, labels)
            folder = scratch / "trained" / f"{kind}-self-test"
            save_model(classifier, folder, model_id=f"{kind}-self-test")
            (prediction,) = load_model(folder).classifier.predict([image])
            if problem := _probabilities_problem(prediction.probabilities):
                raise RuntimeError(f"the reloaded model's {problem}")
            return prediction.predicted_name

        predicted = _step(entry, kind, train_and_reload)
        if predicted is None:
            break
        trained[kind] = predicted
    entry["trained"] = trained
    return entry


def _model_folders(shipped: Path) -> list[Path]:
    """Every folder of the shipped models (a folder the store would skip, e.g. a damaged manifest, fails its load)."""
    if not shipped.is_dir():
        return []
    return sorted(p for p in shipped.iterdir() if p.is_dir() and not p.name.startswith("."))


def run_self_test(report_path: Path | None = None, shipped_dir: Path | None = None) -> tuple[int, dict[str, Any]]:
    """Run every check; return (exit status, report). ``shipped_dir`` overrides the bundled models (for tests)."""
    started = time.perf_counter()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from allgui import __version__
    from allgui.core.models import runtime
    from allgui.resources import resources_dir, shipped_models_dir

    shipped = Path(shipped_dir) if shipped_dir is not None else shipped_models_dir()
    report: dict[str, Any] = {
        "frozen": bool(getattr(sys, "frozen", False)),
        # "lab" in the laboratory bundle (no torch); "cpu" in the full bundle whose runtime hook hid the GPU.
        "bundle": os.environ.get("ALLGUI_BUNDLE"),
        "executable": sys.executable,
        "platform": platform.platform(),
        "resources_dir": str(resources_dir()),
        "shipped_models_dir": str(shipped),
    }
    torch_before = torch_imported()
    versions, library_problems = _versions(VERSION_MODULES)
    report["versions"] = {"allgui": __version__, "python": platform.python_version(), **versions}

    from allgui.core.models.store import ModelStore

    # A throw-away user folder: the self-test must neither see the user's own models nor change their settings.
    with tempfile.TemporaryDirectory(prefix="allgui-self-test-") as scratch:
        store = ModelStore(data_dir=Path(scratch), shipped_dir=shipped)
        folders = _model_folders(shipped)
        screenshot = report_path.with_suffix(".png") if report_path is not None else None
        report["window"] = _check_window(store, Path(scratch), screenshot)
        image = test_image()
        image_file = Path(scratch) / "self-test-image.png"
        image.save(image_file)
        report["models"] = [_check_model(folder, image, image_file) for folder in folders]
        report["training"] = _check_training(Path(scratch), image)
    # Whether the checks above (the window, every model, the training) imported torch: never in the laboratory
    # bundle. The device probe below imports it on purpose, where it is installed.
    report["torch"] = {
        "installed": runtime.torch_installed(),
        "imported_before": torch_before,
        "imported_by_checks": torch_imported() and not torch_before,
    }
    if runtime.torch_installed():
        torch_versions, torch_problems = _versions(TORCH_MODULES)
        report["versions"].update(torch_versions)
        library_problems += torch_problems
    else:
        report["versions"].update(dict.fromkeys(TORCH_MODULES, NOT_INSTALLED))
    device: dict[str, Any] = {"passed": True}
    device.update(_step(device, "probe", _device) or {})
    report["device"] = device
    report["torch"]["imported"] = torch_imported()

    failures = [f"window: {report['window'].get('error')}"] if not report["window"]["passed"] else []
    failures += library_problems
    if not report["device"]["passed"]:
        failures.append(f"device: {report['device'].get('error')}")
    failures += [f"model {m['id']}: {m.get('error')}" for m in report["models"] if not m["passed"]]
    if not report["training"]["passed"]:
        failures.append(f"training: {report['training'].get('error')}")
    if not folders:
        failures.append(f"no shipped model found in {shipped}: the installation has nothing to classify with")
    report["failures"] = failures
    report["passed"] = not failures
    report["seconds_total"] = round(time.perf_counter() - started, 3)
    if report_path is not None:
        from allgui.core.statefile import StateFileError, describe_os_error, write_text_atomic

        try:
            write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
        except OSError as error:
            raise StateFileError(report_path, f"cannot be written ({describe_os_error(error)})") from None
    return (0 if report["passed"] else 1), report


def main(argv: Sequence[str]) -> int:
    """Entry from ``allgui --self-test``; prints a summary (and the report when no --report file is given)."""
    ensure_std_streams()
    parser = argparse.ArgumentParser(prog="allgui --self-test", description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, help="write the JSON report to this file (default: print it)")
    args = parser.parse_args(list(argv))
    from allgui.cli.terminal import place_problem
    from allgui.core.statefile import StateFileError

    # Checked first: the self-test takes a while, and its report is the point of running it.
    problem = place_problem(args.report) if args.report is not None else None
    if problem:
        print(f"allgui --self-test: error: cannot write the report {args.report}: {problem}", file=sys.stderr)
        return 2
    try:
        status, report = run_self_test(args.report)
    except StateFileError as error:
        print(f"allgui --self-test: error: {error}", file=sys.stderr)
        return 2
    if args.report is None:
        print(json.dumps(report, indent=2))
    verdict = "passed" if status == 0 else "FAILED"
    torch = report["torch"]
    torch_state = (
        "not installed"
        if not torch["installed"]
        else ("imported by the checks" if torch["imported_by_checks"] else "not needed by the checks")
    )
    print(
        f"allgui self-test {verdict}: window {'ok' if report['window']['passed'] else 'failed'}, "
        f"{sum(m['passed'] for m in report['models'])}/{len(report['models'])} shipped model(s) classified, "
        f"classical training {'ok' if report['training']['passed'] else 'failed'}, torch {torch_state}"
        + "".join(f"\n  {m['id']}: {m['engine']} on {m['device']}" for m in report["models"] if "engine" in m)
        + "".join(f"\n  {failure}" for failure in report["failures"]),
        file=sys.stderr,
    )
    return status
