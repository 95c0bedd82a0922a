"""The Qt adapter for core progress and cancel: results on the GUI thread, stale results dropped, clean shutdown."""

from __future__ import annotations

import threading
import time

from allgui.core.progress import check
from allgui.ui.workers import Task, TaskRunner


def _count(task: Task, n: int, pause: float = 0.0) -> int:
    for i in range(n):
        check(task.cancel)
        task.partial(i)
        task.progress(i + 1, n, f"step {i + 1}")
        time.sleep(pause)
    return n


def test_result_partial_and_progress_arrive_on_the_gui_thread(qtbot) -> None:
    runner = TaskRunner()
    seen: dict[str, object] = {"partial": [], "threads": set()}

    def on_partial(items: list[int]) -> None:
        seen["partial"].extend(items)  # type: ignore[union-attr]
        seen["threads"].add(threading.current_thread() is threading.main_thread())  # type: ignore[union-attr]

    runner.start("count", _count, 50, on_partial=on_partial, on_result=lambda r: seen.update(result=r))
    qtbot.waitUntil(lambda: "result" in seen and not runner.busy, timeout=10000)
    assert seen["result"] == 50
    assert seen["partial"] == list(range(50))
    assert seen["threads"] == {True}
    assert not runner.busy
    assert runner.shutdown()


def test_new_task_in_a_slot_cancels_the_old_one_and_drops_its_result(qtbot) -> None:
    runner = TaskRunner()
    results: list[int] = []
    cancelled: list[str] = []
    old = runner.start(
        "job", _count, 10_000, 0.001, on_result=results.append, on_cancelled=lambda: cancelled.append("x")
    )
    qtbot.wait(20)
    new = runner.start("job", _count, 3, on_result=results.append)
    qtbot.waitUntil(lambda: old.done and new.done and results == [3], timeout=10000)
    qtbot.wait(50)  # let any queued signal of the old task arrive: it must be dropped
    assert old.task.cancel.cancelled
    assert cancelled == []  # the old task's signals no longer reach the view
    assert runner.shutdown()


def test_an_exception_becomes_a_readable_error(qtbot) -> None:
    runner = TaskRunner()
    errors: list[str] = []

    def broken(task: Task) -> None:
        raise FileNotFoundError("no such folder: /nowhere")

    runner.start("broken", broken, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors) and not runner.busy, timeout=5000)
    assert errors == ["no such folder: /nowhere"]
    assert runner.shutdown()


def test_shutdown_cancels_and_waits(qtbot) -> None:
    runner = TaskRunner()
    worker = runner.start("long", _count, 100_000, 0.001)
    time.sleep(0.05)
    assert runner.shutdown(5000)
    assert worker.done and worker.task.cancel.cancelled


def test_cancel_all_leaves_background_work_running(qtbot) -> None:
    runner = TaskRunner()
    results: list[int] = []
    stopped: list[str] = []
    runner.start("model", _count, 40, 0.005, on_result=results.append, background=True)
    runner.start("batch", _count, 100_000, 0.001, on_cancelled=lambda: stopped.append("batch"))
    assert runner.user_busy
    runner.cancel()  # the status bar's Cancel button / Esc
    assert stopped == ["batch"] and not runner.user_busy and runner.is_running("model")
    qtbot.waitUntil(lambda: results == [40], timeout=10000)
    assert runner.shutdown()
