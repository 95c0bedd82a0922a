"""`allgui --self-test [--report FILE]`: prove an installation works, frozen or not.

Opens the main window offscreen, loads every shipped model, classifies one generated test image with each and writes
a JSON report. Exit status 0 only if the window opened and every shipped model loaded and classified; an
installation with no shipped model fails, because a lab would have nothing to classify with.
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
VERSION_MODULES = (
    "torch",
    "torchvision",
    "sklearn",
    "imblearn",
    "skops",
    "numpy",
    "scipy",
    "PIL",
    "PySide6",
    "pyqtgraph",
)
MODEL_LOAD_TIMEOUT_S = 300.0


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


def _versions() -> tuple[dict[str, str], list[str]]:
    """Each library's version, and one line per library that does not import (the app needs all of them)."""
    import importlib

    from allgui import __version__

    versions = {"allgui": __version__, "python": platform.python_version()}
    problems = []
    for name in VERSION_MODULES:
        try:
            versions[name] = str(getattr(importlib.import_module(name), "__version__", "unknown"))
        except Exception as error:  # noqa: BLE001 - a missing library is a finding for the report, not a crash
            versions[name] = "not importable"
            problems.append(f"library {name} does not import: {type(error).__name__}: {error}")
    return versions, problems


def _device() -> dict[str, Any]:
    import torch

    from allgui.core.models.torch_device import choose_device, device_label

    device = choose_device("auto")
    return {
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


def _check_model(info: Any, image: Any) -> dict[str, Any]:
    import numpy as np

    from allgui.core.models.store import load_model

    entry: dict[str, Any] = {"id": info.id, "kind": info.kind, "title": info.title, "passed": True}
    loaded = _step(entry, "load", lambda: load_model(info.folder))
    if loaded is None:
        return entry
    entry["device"] = loaded.classifier.device_name
    predictions = _step(entry, "classify", lambda: loaded.classifier.predict([image]))
    if predictions is None:
        return entry
    probabilities = np.asarray(predictions[0].probabilities, dtype=np.float64)
    problems = []
    if len(predictions) != 1 or probabilities.shape != (4,):
        problems.append(f"expected one prediction of 4 probabilities, got {len(predictions)} of {probabilities.shape}")
    elif not (np.all(np.isfinite(probabilities)) and probabilities.min() >= 0 and abs(probabilities.sum() - 1) < 1e-3):
        problems.append(f"probabilities are not a distribution: {probabilities.tolist()}")
    if problems:
        entry["passed"] = False
        entry["error"] = "; ".join(problems)
        return entry
    entry["prediction"] = {
        "class": predictions[0].predicted_name,
        "confidence": round(predictions[0].confidence, 4),
        "probabilities": [round(float(p), 4) for p in probabilities],
        "needs_review": predictions[0].needs_review,
    }
    return entry


def run_self_test(report_path: Path | None = None, shipped_dir: Path | None = None) -> tuple[int, dict[str, Any]]:
    """Run every check; return (exit status, report). ``shipped_dir`` overrides the bundled models (for tests)."""
    started = time.perf_counter()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from allgui.resources import resources_dir, shipped_models_dir

    shipped = Path(shipped_dir) if shipped_dir is not None else shipped_models_dir()
    report: dict[str, Any] = {
        "frozen": bool(getattr(sys, "frozen", False)),
        "bundle": os.environ.get("ALLGUI_BUNDLE"),  # "cpu" when the CPU bundle's runtime hook hid the GPU
        "executable": sys.executable,
        "platform": platform.platform(),
        "resources_dir": str(resources_dir()),
        "shipped_models_dir": str(shipped),
    }
    report["versions"], library_problems = _versions()
    device: dict[str, Any] = {"passed": True}
    device.update(_step(device, "probe", _device) or {})
    report["device"] = device

    from allgui.core.models.store import ModelStore

    # A throw-away user folder: the self-test must neither see the user's own models nor change their settings.
    with tempfile.TemporaryDirectory(prefix="allgui-self-test-") as scratch:
        store = ModelStore(data_dir=Path(scratch), shipped_dir=shipped)
        models = [m for m in store.list() if m.source == "shipped"]
        screenshot = report_path.with_suffix(".png") if report_path is not None else None
        report["window"] = _check_window(store, Path(scratch), screenshot)
        image = test_image()
        report["models"] = [_check_model(info, image) for info in models]
    failures = [f"window: {report['window'].get('error')}"] if not report["window"]["passed"] else []
    failures += library_problems
    if not report["device"]["passed"]:
        failures.append(f"device: {report['device'].get('error')}")
    failures += [f"model {m['id']}: {m.get('error')}" for m in report["models"] if not m["passed"]]
    if not models:
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
    print(
        f"allgui self-test {verdict}: window {'ok' if report['window']['passed'] else 'failed'}, "
        f"{sum(m['passed'] for m in report['models'])}/{len(report['models'])} shipped model(s) classified"
        + "".join(f"\n  {failure}" for failure in report["failures"]),
        file=sys.stderr,
    )
    return status
