"""The one adapter from core progress callbacks and cancel tokens to Qt signals.

A task function ``fn(task, *args)`` runs as a :class:`QRunnable` on a :class:`QThreadPool`; it reports through
``task.progress`` / ``task.partial`` / ``task.log`` (or, for a task followed by a core :class:`ProgressModel`,
``task.report``) and checks ``task.cancel`` (a core :class:`CancelToken`).
:class:`TaskRunner` keeps one task per named slot: starting a new task in a slot cancels the previous one and drops
whatever the old one still emits, so a stale result never lands in the view.
"""

from __future__ import annotations

import logging
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, QTimer, Signal

from allgui.core.progress import Cancelled, CancelToken, ProgressState

log = logging.getLogger(__name__)

# Every pool made here, so tests can check that none is left running.
_POOLS: weakref.WeakSet[QThreadPool] = weakref.WeakSet()

PROGRESS_INTERVAL = 0.05  # seconds between progress signals: enough for a smooth bar, never floods the event loop
PARTIAL_INTERVAL = 0.1


def live_pools() -> list[QThreadPool]:
    """Pools not yet destroyed (a destroyed QThreadPool has waited for its threads in its destructor)."""
    return [pool for pool in list(_POOLS) if shiboken6.isValid(pool)]


BAR_INTERVAL = 0.5  # seconds between progress-bar updates


def show_progress(bar: Any, done: int, total: int) -> None:
    """Show ``done`` of ``total`` on a QProgressBar (busy while ``total`` is 0); see :func:`show_fraction`."""
    if total <= 0:
        bar._allgui_pending = None
        if bar.maximum() != 0:
            bar.setRange(0, 0)
        return
    show_fraction(bar, done / total, finished=done >= total)


def show_fraction(bar: Any, fraction: float, finished: bool = False) -> None:
    """Set a QProgressBar to ``fraction`` in whole percent, at most twice a second (and always at the end).

    Each visible change of a QProgressBar repaints it at once, synchronously, which can take tens of milliseconds
    while workers hold the GIL; following every image would stall the event loop. A value that comes too soon is
    shown when the interval is over, never dropped: otherwise the bar keeps an old value while the label beside it
    counts on (it read 3% at 288 of 2767 images when a burst of updates ended with a cancel).
    """
    bar._allgui_pending = min(100, max(0, int(fraction * 100 + 1e-9)))
    wait = BAR_INTERVAL - (time.monotonic() - getattr(bar, "_allgui_shown_at", -BAR_INTERVAL))
    if finished or wait <= 0 or bar.maximum() != 100:
        _apply_pending(bar)
    elif not getattr(bar, "_allgui_timer", False):
        bar._allgui_timer = True
        QTimer.singleShot(int(wait * 1000) + 1, bar, lambda: _deferred(bar))


def _apply_pending(bar: Any) -> None:
    value, bar._allgui_pending = bar._allgui_pending, None
    bar._allgui_shown_at = time.monotonic()
    if bar.maximum() != 100:
        bar.setRange(0, 100)
    if bar.value() != value:
        bar.setValue(value)


def _deferred(bar: Any) -> None:
    bar._allgui_timer = False
    # A bar reset meanwhile (the task ended or was cancelled) keeps its reset: the late value is stale.
    if getattr(bar, "_allgui_pending", None) is not None and bar.value() >= bar.minimum():
        _apply_pending(bar)


def reset_progress(bar: Any, text: str = "%p%") -> None:
    """Empty a QProgressBar showing ``text``, dropping any value still waiting to be shown."""
    bar._allgui_pending = None
    bar.setRange(0, 100)
    bar.setValue(0)
    bar.setFormat(text)


def readable_error(error: BaseException) -> str:
    """One sentence for a technician: the exception's own message, with its type only when the message is empty."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    return text if isinstance(error, OSError | ValueError) else f"{text} ({type(error).__name__})"


class WorkerSignals(QObject):
    started = Signal()
    progress = Signal(int, int, str)  # done, total, message
    state = Signal(object)  # a core ProgressState, for tasks followed by a ProgressModel
    partial = Signal(object)  # a list of items produced since the last partial signal
    log = Signal(str)
    result = Signal(object)
    error = Signal(str)
    cancelled = Signal()
    finished = Signal()


class Task:
    """What a task function sees: the cancel token and throttled ways to report back."""

    def __init__(self, signals: WorkerSignals) -> None:
        self.cancel = CancelToken()
        self._signals = signals
        self._last_progress = 0.0
        self._last_state = 0.0
        self._pending: list[Any] = []
        self._last_partial = 0.0
        self.started_at = time.monotonic()

    def progress(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if done >= total > 0 or now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            self._signals.progress.emit(int(done), int(total), message)

    def report(self, state: ProgressState) -> None:
        """A :class:`ProgressModel`'s ``on_change``: the state for the view, and plain progress for the status bar.

        Throttled like :meth:`progress`, except milestones (a new phase, a step without a count, the end).
        """
        now = time.monotonic()
        if not state.milestone and now - self._last_state < PROGRESS_INTERVAL:
            return
        self._last_state = now
        self._signals.state.emit(state)
        if state.total == 0 and state.fraction == 0 and not state.finished:
            self._signals.progress.emit(0, 0, state.describe())  # nothing known yet: a busy bar
        else:
            self._signals.progress.emit(round(1000 * state.fraction), 1000, state.describe())

    def partial(self, item: Any) -> None:
        self._pending.append(item)
        now = time.monotonic()
        if now - self._last_partial >= PARTIAL_INTERVAL:
            self.flush()
            self._last_partial = now

    def extend(self, items: list[Any]) -> None:
        for item in items:
            self.partial(item)

    def flush(self) -> None:
        if self._pending:
            items, self._pending = self._pending, []
            self._signals.partial.emit(items)

    def log(self, line: str) -> None:
        self._signals.log.emit(str(line))


class Worker(QRunnable):
    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the runner keeps it until finished, so its signals outlive run()
        self.signals = WorkerSignals()
        self.task = Task(self.signals)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.done = False
        self.background = False
        self.on_stopped: list[Callable[[], None]] = []  # the view's on_cancelled/on_finished, for a user's cancel

    def run(self) -> None:
        signals = self.signals
        signals.started.emit()
        try:
            result = self.fn(self.task, *self.args, **self.kwargs)
            self.task.flush()
            if self.task.cancel.cancelled:
                signals.cancelled.emit()
            else:
                signals.result.emit(result)
        except Cancelled:
            self.task.flush()
            signals.cancelled.emit()
        except Exception as error:  # noqa: BLE001 - every failure becomes a readable message in the GUI
            log.error("task %s failed:\n%s", getattr(self.fn, "__name__", self.fn), traceback.format_exc())
            signals.error.emit(readable_error(error))
        finally:
            self.done = True
            signals.finished.emit()


class TaskRunner(QObject):
    """Named task slots on a private thread pool; the window owns one and shuts it down on close."""

    busy_changed = Signal(bool)
    progress = Signal(str, int, int, str)  # slot, done, total, message: for the status bar

    def __init__(self, parent: QObject | None = None, max_threads: int = 4) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self.pool.setExpiryTimeout(2000)
        _POOLS.add(self.pool)
        self._current: dict[str, Worker] = {}
        self._running: set[Worker] = set()
        self._closed = False

    def start(
        self,
        slot: str,
        fn: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], None] | None = None,
        on_partial: Callable[[list[Any]], None] | None = None,
        on_progress: Callable[[int, int, str], None] | None = None,
        on_state: Callable[[ProgressState], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        on_exit: Callable[[], None] | None = None,
        background: bool = False,
        **kwargs: Any,
    ) -> Worker:
        """Run ``fn(task, *args, **kwargs)`` in slot ``slot``, cancelling the slot's previous task first.

        ``background`` work (loading the model, probing devices) is not the user's to cancel: the Cancel button
        and Esc leave it running, and it shows no Cancel button of its own. ``on_exit`` is called once ``fn``
        has really returned, also after a cancel (when ``on_cancelled`` was called at once): what a cancelled task
        left behind (a journal) is complete only then.
        """
        if self._closed:
            raise RuntimeError("the window is closing; no new tasks")
        self.cancel(slot, notify=False)  # replaced, not stopped by the user: the view is about to start afresh
        worker = Worker(fn, *args, **kwargs)
        worker.on_stopped = [c for c in (on_cancelled, on_finished) if c is not None]
        worker.background = background
        self._current[slot] = worker
        self._running.add(worker)
        signals = worker.signals

        def live(callback: Callable[..., None] | None) -> Callable[..., None]:
            def deliver(*values: Any) -> None:
                if callback is not None and not self._closed and self._current.get(slot) is worker:
                    callback(*values)

            return deliver

        queued = Qt.ConnectionType.QueuedConnection
        signals.result.connect(live(on_result), queued)
        signals.partial.connect(live(on_partial), queued)
        signals.log.connect(live(on_log), queued)
        signals.error.connect(live(on_error), queued)
        signals.cancelled.connect(live(on_cancelled), queued)
        signals.progress.connect(live(on_progress), queued)
        signals.state.connect(live(on_state), queued)
        signals.progress.connect(live(lambda d, t, m: self.progress.emit(slot, d, t, m)), queued)

        def finished() -> None:
            self._running.discard(worker)
            if on_exit is not None and not self._closed:
                on_exit()
            if self._current.get(slot) is worker:
                del self._current[slot]
                if on_finished is not None and not self._closed:
                    on_finished()
            self.busy_changed.emit(self.user_busy)

        signals.finished.connect(finished, queued)
        self.pool.start(worker)
        self.busy_changed.emit(self.user_busy)
        return worker

    @property
    def busy(self) -> bool:
        """Any task running, background work included."""
        return bool(self._current)

    @property
    def user_busy(self) -> bool:
        """A task the user started (and may cancel) is running."""
        return any(not worker.background for worker in self._current.values())

    def is_running(self, slot: str) -> bool:
        return slot in self._current

    def cancel(self, slot: str | None = None, notify: bool = True) -> None:
        """Cancel one slot's task, or every task the user started. The view hears ``on_cancelled`` and
        ``on_finished`` at once (with ``notify``); whatever the stopped task still emits is dropped."""
        slots = [name for name, w in self._current.items() if not w.background] if slot is None else [slot]
        stopped = []
        for name in slots:
            worker = self._current.pop(name, None)
            if worker is not None:
                worker.task.cancel.cancel()
                stopped.append(worker)
        if stopped:
            self.busy_changed.emit(self.user_busy)
        if notify and not self._closed:
            for worker in stopped:
                for callback in worker.on_stopped:
                    callback()

    def close(self) -> None:
        """Refuse new tasks, cancel every running one and drop their pending callbacks (without waiting)."""
        self._closed = True
        for worker in list(self._running):
            worker.task.cancel.cancel()
        self._current.clear()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and wait for the threads; True when all stopped in time."""
        self.close()
        return self.pool.waitForDone(timeout_ms)

    def wait(self, timeout_ms: int = 10000) -> bool:
        return self.pool.waitForDone(timeout_ms)
