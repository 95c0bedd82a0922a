"""GUI responsiveness: start-up, one click in the review tab, and the event loop's longest stall under heavy work.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python -m benchmarks.bench_gui [DATA_FOLDER] [--model DIR] [--gallery-only]

* Start-up, in a fresh process launched as `allgui` is: seconds from launch until the main window is visible and its
  event loop answers, whether torch was imported by then, when the model is ready, and the longest event-loop stall
  meanwhile (a 5 ms heartbeat timer).
* One click in the review tab (a real mouse click on a table row) until probabilities and SE attention are shown,
  with the model warm: the first click, then the median and maximum of the following ones.
* The longest gap between heartbeats (10 ms timer) while the window is idle (the machine's own noise, measured in
  the same run) and while a 2000-image batch, a duplicate scan of the data folder and an SE-CNN training run go on.
* The review tab's gallery of the whole data folder: opening it (until the first screen of thumbnails is shown),
  scrolling it top to bottom at a mouse wheel's pace, jumping about in it as a dragged scroll bar does, and opening
  the folder again with the gallery shown (regrouped as the predictions come in).
  ``--gallery-only`` measures the idle window, opening the folder and the gallery, and nothing else.

Uses the shipped default model; without it, a stand-in SE-CNN of the same architecture (see bench_classify).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from allgui.resources import shipped_models_dir

STARTUP_TARGET = 1.5
CLICK_TARGET_MS = 50.0
STALL_TARGET_MS = 100.0

# Runs in a fresh interpreter: `allgui` with no command opens the window; a zero-delay timer queued before the event
# loop starts fires once the loop runs, i.e. once the shown window can respond.
CHILD = r"""
import json, os, sys, time
launched = float(os.environ["ALLGUI_BENCH_LAUNCHED"])
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication
app = QApplication(["allgui"])
marks, ticks = {}, []
def window():
    return next((w for w in app.topLevelWidgets() if type(w).__name__ == "MainWindow"), None)
def beat():
    now = time.perf_counter()
    ticks.append(now)
    w = window()
    if "torch" in sys.modules and "torch_imported" not in marks:
        marks["torch_imported"] = time.time() - launched
    if w is not None and getattr(w.models, "current", None) is not None and "model_ready" not in marks:
        marks["model_ready"] = time.time() - launched
        QTimer.singleShot(500, finish)
def probe():
    w = window()
    marks["visible"] = time.time() - launched if w is not None and w.isVisible() else None
    marks["torch_at_show"] = "torch" in sys.modules
    timer.start()
def finish():
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    marks["longest_stall_ms"] = max(gaps) * 1000 if gaps else None
    print("BENCH " + json.dumps(marks), flush=True)
    app.quit()
timer = QTimer()
timer.setTimerType(Qt.TimerType.PreciseTimer)
timer.setInterval(5)
timer.timeout.connect(beat)
QTimer.singleShot(0, probe)
QTimer.singleShot(60000, finish)
from allgui.cli.main import main
main([])
"""


def startup(home: Path) -> dict:
    env = {**os.environ, "ALLGUI_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    env["ALLGUI_BENCH_LAUNCHED"] = repr(time.time())
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise SystemExit(f"start-up child failed:\n{done.stdout}\n{done.stderr}")


class Heartbeat:
    """A 10 ms timer on the GUI thread; gaps between its ticks are the event loop's stalls.

    With ``ALLGUI_BENCH_STACKS=SECONDS`` a watchdog thread prints the GUI thread's stack during longer stalls.
    """

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start()
        if os.environ.get("ALLGUI_BENCH_STACKS"):
            limit = float(os.environ["ALLGUI_BENCH_STACKS"])
            threading.Thread(target=self._watch, args=(threading.main_thread().ident, limit), daemon=True).start()

    def _watch(self, gui_thread: int | None, limit: float) -> None:
        while True:
            time.sleep(limit / 4)
            if self.ticks and time.perf_counter() - self.ticks[-1] > limit:
                frame = sys._current_frames().get(gui_thread)
                stack = "".join(traceback.format_stack(frame)[-14:]) if frame else "?"
                print(f"--- GUI thread stalled {time.perf_counter() - self.ticks[-1]:.1f} s in:\n{stack}", flush=True)
                time.sleep(limit * 4)

    def mark(self) -> int:
        return len(self.ticks)

    def longest_ms(self, since: int) -> tuple[float, int]:
        """Longest gap (ms) since a mark, and how many gaps exceeded the stall target."""
        ticks = self.ticks[since:]
        gaps = [(b - a) * 1000 for a, b in zip(ticks, ticks[1:], strict=False)]
        return (max(gaps) if gaps else float("nan")), sum(g > STALL_TARGET_MS for g in gaps)


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Run the Qt event loop until ``predicate`` holds or ``timeout`` seconds pass."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout
    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: loop.quit() if predicate() or time.monotonic() > deadline else None)
    poll.start(20)
    loop.exec()
    poll.stop()
    return predicate()


def link_folder(files: list[Path], folder: Path) -> Path:
    """A folder of symbolic links to real images (nothing is copied)."""
    folder.mkdir(parents=True)
    for index, path in enumerate(files):
        (folder / f"{index:05d}-{path.name}").symlink_to(path.resolve())
    return folder


def clicks(window, folder: Path, count: int) -> list[float]:  # noqa: ANN001 - MainWindow
    """Milliseconds from a mouse click on a review-table row until its probabilities and attention are shown."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    review = window.review
    window.tabs.setCurrentWidget(review)
    done: list[bool] = []
    review.predictions_done.connect(lambda: done.append(True))
    review.open_paths([folder])
    if not wait_until(lambda: bool(done) and not window.runner.busy, 300):
        raise SystemExit("the review tab did not finish predicting")
    shown: dict[int, float] = {}
    review.details_shown.connect(lambda row: shown.setdefault(row, time.perf_counter()))
    times = []
    table = review.table
    for view_row in range(1, count + 1):
        index = review.proxy.index(view_row, 0)
        row = review.proxy.mapToSource(index).row()
        table.scrollTo(index)
        wait_until(lambda: True, 0)
        centre = table.visualRect(index).center()
        shown.pop(row, None)
        start = time.perf_counter()
        QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=centre)
        if not wait_until(lambda row=row: row in shown, 30):
            raise SystemExit(f"row {row}: details never shown")
        times.append((shown[row] - start) * 1000)
    return times


def stall(heartbeat: Heartbeat, start: Callable[[], object], finished: Callable[[], bool], limit: float) -> dict:
    mark = heartbeat.mark()
    began = time.perf_counter()
    start()
    completed = wait_until(finished, limit)
    longest, over = heartbeat.longest_ms(mark)
    return {"seconds": time.perf_counter() - began, "completed": completed, "longest_ms": longest, "over": over}


def gallery(window, heartbeat: Heartbeat, data: Path) -> None:  # noqa: ANN001 - MainWindow
    """The gallery of every image open in the review tab: open it, scroll through it, jump about in it; then open
    the folder again with the gallery shown, which regroups it as the predictions come in."""
    import random

    review = window.review
    thumbnails, view = review.gallery.thumbnails, review.gallery.view

    def settled() -> bool:
        return bool(thumbnails.cache) and not window.runner.is_running("thumbnails")

    result = stall(heartbeat, lambda: review.set_view_mode("gallery"), settled, 60)
    print(
        f"  open the gallery of {len(review.session)} images, until the first screen of thumbnails is shown "
        f"({result['seconds']:.2f} s): {result['longest_ms']:6.0f} ms ({result['over']} gaps over target)"
    )
    bar = view.verticalScrollBar()
    steps = [*range(0, bar.maximum(), max(1, bar.pageStep() // 3)), bar.maximum()]  # a wheel's pace: 1/3 page
    positions = random.Random(7).sample(range(bar.maximum()), 20)  # a dragged scroll bar

    for name, values, pause in (
        ("scroll top to bottom, 1/3 page per 20 ms", steps, 0.02),
        ("20 jumps", positions, 0.1),
    ):
        mark = heartbeat.mark()
        began = time.perf_counter()
        for value in values:
            bar.setValue(value)
            wait_until(lambda: False, pause)
        moved = time.perf_counter() - began
        wait_until(settled, 30)
        longest, over = heartbeat.longest_ms(mark)
        print(
            f"  gallery: {name} ({len(values)} moves, {moved:.1f} s; last screen's thumbnails "
            f"{time.perf_counter() - began - moved:.2f} s later): {longest:6.0f} ms ({over} gaps over target)"
        )
    print(f"  gallery: {len(thumbnails.cache)} thumbnails cached, {len(view.findChildren(object))} objects in the view")
    result = stall(heartbeat, lambda: review.open_paths([data]), lambda: not window.runner.busy, 600)
    print(
        f"  open {len(review.session)} images with the gallery shown, regrouped as predictions come "
        f"({result['seconds']:.0f} s): {result['longest_ms']:6.0f} ms ({result['over']} gaps over target)"
    )
    review.set_view_mode("list")


def main() -> None:
    default = os.environ.get("ALLGUI_TEST_DATA", "../shared/data/taleqani-all")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=Path(default))
    parser.add_argument("--model", type=Path, default=shipped_models_dir() / "secnn-default")
    parser.add_argument("--training-seconds", type=float, default=40.0, help="how long to watch the training run")
    parser.add_argument("--gallery-only", action="store_true", help="only the idle window, review and gallery")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="allgui-bench-gui-"))
    home = work / "home"
    os.environ["ALLGUI_HOME"] = str(home)

    from allgui.core.models.store import ModelStore
    from allgui.core.scan import scan_images

    store = ModelStore(data_dir=home)
    model_dir = args.model
    if not (model_dir / "manifest.json").is_file():
        from benchmarks.bench_classify import standin_model

        print(f"no model at {model_dir}: training a stand-in with the default recipe's architecture ...", flush=True)
        model_dir = standin_model(args.data, work / "standin")
    info = store.import_folder(model_dir) if model_dir.parent != shipped_models_dir() else store.find(model_dir.name)
    store.activate(info.id)
    files = scan_images([args.data]).files
    print(
        f"{len(files)} images in {args.data}; model {info.id}; {os.cpu_count()} cores; "
        f"load average {os.getloadavg()[0]:.1f} (other jobs share these cores)"
    )

    runs = [] if args.gallery_only else [startup(home) for _ in range(3)]
    for marks in runs:
        print(
            f"start-up: window visible and responding {marks['visible']:.2f} s after launch "
            f"(target < {STARTUP_TARGET}); torch imported by then: {marks['torch_at_show']}; torch in at "
            f"{marks.get('torch_imported', float('nan')):.2f} s; model ready "
            f"{marks.get('model_ready', float('nan')):.2f} s; longest stall meanwhile "
            f"{marks['longest_stall_ms']:.0f} ms"
        )

    from PySide6.QtWidgets import QApplication

    from allgui.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(["allgui-bench"])  # noqa: F841 - must outlive the window
    window = MainWindow(store=store)
    window.show()
    if not wait_until(lambda: window.review is not None and window.models.current is not None, 120):
        raise SystemExit("the window never loaded its model")
    heartbeat = Heartbeat()

    if not args.gallery_only:
        small = link_folder(files[:: max(1, len(files) // 60)][:60], work / "review")
        times = clicks(window, small, 21)
        warm = times[1:]
        print(
            f"\nclick in the review tab -> probabilities + attention shown: first {times[0]:.0f} ms; warm median "
            f"{statistics.median(warm):.1f} ms, max {max(warm):.1f} ms over {len(warm)} clicks "
            f"(target < {CLICK_TARGET_MS:.0f})"
        )

    print(f"\nlongest event-loop stall (10 ms heartbeat; target < {STALL_TARGET_MS:.0f} ms):")
    mark = heartbeat.mark()
    wait_until(lambda: False, 5)
    idle, idle_over = heartbeat.longest_ms(mark)
    print(f"  idle window, 5 s (machine noise):      {idle:6.0f} ms ({idle_over} gaps over target)")

    if not args.gallery_only:
        batch(window, heartbeat, link_folder(files[:2000], work / "batch"))

    window.tabs.setCurrentWidget(window.review)
    result = stall(heartbeat, lambda: window.review.open_paths([args.data]), lambda: not window.runner.busy, 600)
    print(
        f"  open {len(files)} images in review: scan, duplicate hashing, predictions ({result['seconds']:.0f} s): "
        f"{result['longest_ms']:6.0f} ms ({result['over']} gaps over target)"
    )
    gallery(window, heartbeat, args.data)
    if not args.gallery_only:
        training(window, heartbeat, args.data, args.training_seconds)
    window.close()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


def batch(window, heartbeat: Heartbeat, folder: Path) -> None:  # noqa: ANN001 - MainWindow
    finished: list[int] = []
    window.batch.finished.connect(finished.append)
    window.tabs.setCurrentWidget(window.batch)
    result = stall(heartbeat, lambda: window.batch.start(folder), lambda: bool(finished), 600)
    rate = len(window.batch.table_model.rows) / result["seconds"]
    print(
        f"  2000-image batch ({result['seconds']:.0f} s, {rate:.0f} images/s): {result['longest_ms']:6.0f} ms "
        f"({result['over']} gaps over target)"
    )


def training(window, heartbeat: Heartbeat, data: Path, seconds: float) -> None:  # noqa: ANN001 - MainWindow
    tab = window.training
    window.tabs.setCurrentWidget(tab)
    wait_until(tab.run_button.isEnabled, 120)
    tab.set_selected(["cnn"])
    tab.full_radio.setChecked(True)
    tab.device_combo.setCurrentText("cpu")
    result = stall(heartbeat, lambda: tab.start(data), lambda: False, seconds)
    log_lines = tab.log_view.toPlainText().strip().splitlines()
    tab.cancel()
    wait_until(lambda: not window.runner.busy, 120)
    print(
        f"  SE-CNN training (full data, watched {result['seconds']:.0f} s, then cancelled; last log line: "
        f"{log_lines[-1][:60] if log_lines else '-'}): {result['longest_ms']:6.0f} ms "
        f"({result['over']} gaps over target)"
    )


if __name__ == "__main__":
    main()
