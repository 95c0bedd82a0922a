"""Without torch: the desktop app starts, loads the shipped default model and classifies real images without
importing it, and the commands that do need torch say so in one line (exit status 2) instead of failing later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from allgui.core.classes import CLASS_NAMES
from allgui.core.classify import classify_paths
from allgui.core.export import parse_rows
from allgui.core.models import runtime
from allgui.core.models.store import ModelStore
from tests.hidden_torch import HIDE_TORCH

# A finder, first on sys.meta_path, that notes where torch is looked for (and lets the search go on): once by
# runtime.torch_installed(), which only asks whether it is there, and once more by an import.
TRACE_TORCH = """
import sys, traceback
class _Trace:
    calls = []
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            frames = [f for f in traceback.extract_stack() if not f.filename.startswith("<")]
            _Trace.calls.append(" <- ".join(f"{f.filename}:{f.lineno}" for f in reversed(frames[-7:])))
        return None
sys.meta_path.insert(0, _Trace())
"""

# The app's own start-up (`allgui IMAGE...` opens the window with the images in the Review tab), driven by a timer
# that waits until the model is loaded, the devices probed, the experiments listed and every image classified (the
# attention averages included), then closes the window and reports what it saw.
GUI_RUN = """
import faulthandler, json, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from allgui.cli.main import main

paths = sys.argv[1:]
app = QApplication([sys.argv[0]])
deadline = time.monotonic() + 100
seen = {}

def window():
    from allgui.ui.main_window import MainWindow
    return next((w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)), None)

def tick():
    w = window()
    ready = (
        w is not None and w.review is not None and w.models.current is not None
        and w.models.network_device is not None and w.training.run_button.isEnabled()
        and len(w.review.session) == len(paths)
        and all(item.predicted is not None or item.error for item in w.review.session.items)
        and not w.runner.busy
    )
    if not ready and time.monotonic() < deadline:
        return
    timer.stop()
    seen["ready"] = ready
    if w is not None:
        current = w.models.current
        seen["model"] = current and [current.id, current.classifier.engine_name]
        seen["device"] = w.models.network_device
        seen["rows"] = [[str(i.path), i.error, i.predicted, i.confidence] for i in w.review.session.items]
        seen["errors"] = w.errors
        seen["running"] = sorted(w.runner._current)  # what it waited for, if it waited in vain
        seen["status"] = w.status_label.text()
    if not ready:
        faulthandler.dump_traceback(all_threads=True)  # where a hang hangs, to standard error
    if w is not None:
        w.close()
    app.exit(0 if ready else 3)

timer = QTimer()
timer.timeout.connect(tick)
timer.start(50)
code = main(paths)
print(json.dumps({"code": code, "seen": seen, "torch": "torch" in sys.modules, "searches": _Trace.calls}))
"""


def _python(code: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "ALLGUI_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=150, env=environment
    )


@pytest.fixture(scope="module")
def images(data_dir: Path) -> list[Path]:
    """One real image of each class, from the middle of its capture order."""
    chosen = []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        members = sorted(folder.glob("*.jpg"))
        chosen.append(members[len(members) // 2])
    assert len(chosen) == 4
    return chosen


@pytest.mark.skipif(runtime.gpu_present(), reason="with a GPU driver the default engine is torch on the GPU")
def test_the_app_starts_and_classifies_without_importing_torch(images: list[Path], isolated_home: Path) -> None:
    result = _python(TRACE_TORCH + GUI_RUN, *map(str, images), home=isolated_home)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    seen = report["seen"]
    assert report["code"] == 0 and seen["ready"], f"{seen}\n{result.stderr[-6000:]}"
    assert not report["torch"], "torch was looked for from:\n" + "\n".join(report["searches"])
    default = ModelStore(isolated_home).active_id()  # the shipped default, in a user folder of its own
    assert seen["model"] == [default, "ONNX Runtime"] and seen["device"] == "CPU"
    assert seen["errors"] == [] and "Traceback" not in result.stderr
    # The window's answers are the shipped default model's, as the core gives them in ONNX Runtime.
    loaded = ModelStore(isolated_home).load(default)
    loaded.classifier.set_engine("onnx")
    rows = classify_paths(images, loaded)
    assert [row[0] for row in seen["rows"]] == [str(p) for p in images]
    assert [row[1] for row in seen["rows"]] == [None] * len(images)
    assert [CLASS_NAMES[row[2]] for row in seen["rows"]] == [row.predicted for row in rows]
    assert [row[3] for row in seen["rows"]] == pytest.approx([row.confidence for row in rows], abs=1e-6)


RUN_MAIN = HIDE_TORCH + (
    "from allgui.core.models import runtime\n"
    "assert not runtime.torch_installed()\n"
    "from allgui.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _without_torch(home: Path, *args: str) -> tuple[int, str, list[str]]:
    """``allgui ARGS`` where torch cannot be found: the exit status, standard output and standard error's lines
    (less the last, which says whether torch was imported: it must not have been)."""
    result = _python(RUN_MAIN, *args, home=home)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1] == "torch not imported", result.stderr
    return result.returncode, result.stdout, lines[:-1]


def _says_torch_is_missing(line: str) -> None:
    assert "Traceback" not in line and "ModuleNotFoundError" not in line
    assert "torch is not installed" in line
    assert "full AllGUI bundle" in line and 'pip install "allgui[torch]"' in line


@pytest.mark.parametrize("kind", ["secnn", "cnn-hash-svm"])
def test_training_a_network_without_torch_is_refused_in_one_line(
    kind: str, data_dir: Path, isolated_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    code, stdout, lines = _without_torch(isolated_home, "train", str(data_dir), "--model", kind, "--out", str(out))
    assert code == 2 and stdout == ""
    assert len(lines) == 1, lines
    assert lines[0].startswith("allgui train: error: ") and "needs torch to train" in lines[0]
    _says_torch_is_missing(lines[0])
    assert not out.exists() and not (isolated_home / "models").exists()


def test_classify_with_the_torch_engine_without_torch_is_refused_in_one_line(
    images: list[Path], isolated_home: Path
) -> None:
    code, stdout, lines = _without_torch(isolated_home, "classify", str(images[0]), "--engine", "torch")
    assert code == 2 and stdout == ""
    refusals = [line for line in lines if "cannot run the model" in line]
    assert len(refusals) == 1 and refusals[0] == lines[-1], lines
    default = ModelStore(isolated_home).active_id()
    assert refusals[0].startswith(f"allgui classify: cannot run the model {default}: the torch engine was chosen")
    _says_torch_is_missing(refusals[0])
    assert not any("Traceback" in line or "Error:" in line for line in lines), lines
    # The same command with the default engine classifies the image there, with the answer ONNX Runtime gives here.
    code, stdout, lines = _without_torch(isolated_home, "classify", str(images[0]), "--format", "json")
    assert code == 0, lines
    [row] = parse_rows(stdout)
    loaded = ModelStore(isolated_home).load(default)
    loaded.classifier.set_engine("onnx")
    assert row["predicted"] == classify_paths(images[:1], loaded)[0].predicted
