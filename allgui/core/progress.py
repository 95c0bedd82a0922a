"""Progress reporting and cancellation for long operations, in plain Python (no Qt).

Core functions take ``progress(done, total, message)`` and a :class:`CancelToken`; the GUI adapts
both to Qt signals in one place, the CLI prints them.

A long task made of several steps (reading images, training, evaluating) follows them with one
:class:`ProgressModel`: named phases with their share of the whole task, the rate measured in the current phase
and the time left from that rate. Each step still reports through a plain ``ProgressCallback``
(:meth:`ProgressModel.callback`). :mod:`allgui.core.estimates` says before a
training how long it will take.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

ProgressCallback = Callable[[int, int, str], None]
LogCallback = Callable[[str], None]  # one line of a long job's log, for a terminal or a log pane


class Cancelled(Exception):
    """Raised inside a long operation when its cancel token was set."""


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


def no_progress(done: int, total: int, message: str) -> None:
    """Default progress callback: ignore."""


def check(cancel: CancelToken | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set; accepts None for callers without a token."""
    if cancel is not None:
        cancel.raise_if_cancelled()


# ---- one progress model per long task ------------------------------------------------------------------------------

# A rate measured over less time than this swings wildly (the first batch pays for warm-up): no time left until then.
MIN_RATE_SECONDS = 1.0


def clock_text(seconds: float) -> str:
    """``4:05`` or ``1:02:05``: a time left as a clock shows it."""
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass(frozen=True)
class Phase:
    name: str  # what the user reads: "reading images", "training", "evaluating"
    weight: float  # its share of the whole task's time, relative to the other phases
    unit: str = "images"


@dataclass(frozen=True)
class ProgressState:
    """What a view shows of a task at one moment."""

    phase: str
    number: int  # 1-based position of the phase
    phases: int
    done: int  # units of the current phase
    total: int  # 0 while the phase's size is not known
    unit: str
    message: str
    fraction: float  # of the whole task, 0..1
    rate: float | None  # units per second in this phase, measured since it began; None until measured
    seconds_left: float | None  # in this phase, from that rate; None when unknown or its counted work is done
    finished: bool = False
    milestone: bool = False  # a phase began, a step without a count started, or the task ended: never to be dropped

    @property
    def percent(self) -> int:
        return min(100, int(self.fraction * 100 + 1e-9))

    def describe(self) -> str:
        """One line: the phase, its own message, rate and time left in this phase."""
        if self.finished:
            return self.message or "done"
        head = f"{self.phase} ({self.number} of {self.phases})" if self.phases > 1 else self.phase
        parts = [f"{head}: {self.message}" if self.message else head]
        if self.rate is not None:
            parts.append(f"{self.rate:.1f} {self.unit}/s" if self.rate < 10 else f"{self.rate:.0f} {self.unit}/s")
        if self.seconds_left is not None:
            parts.append(f"about {clock_text(self.seconds_left)} left in this phase")
        return " · ".join(parts)


class ProgressModel:
    """Progress of one task over named, weighted phases, reported to ``on_change`` as :class:`ProgressState`.

    Phases run in the declared order; a phase may be skipped, never re-entered (a late report for a phase already
    passed is ignored, so the bar never runs backwards). The rate of a phase is measured from its first report, so
    units that were already done when it began (rows resumed from a journal) do not count as fast work.
    """

    def __init__(
        self,
        phases: Sequence[Phase],
        on_change: Callable[[ProgressState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not phases:
            raise ValueError("a progress model needs at least one phase")
        names = [phase.name for phase in phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must differ: {names}")
        if any(phase.weight < 0 for phase in phases) or sum(phase.weight for phase in phases) <= 0:
            raise ValueError("phase weights must be non-negative and not all zero")
        self.phases = tuple(phases)
        self._index = {name: number for number, name in enumerate(names)}
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._current = -1  # no phase begun yet
        self._done = self._total = 0
        self._message = ""
        self._base: tuple[float, int] = (clock(), 0)  # (time, done) the current phase's rate is measured from
        self._finished = False

    def _enter(self, number: int, done: int) -> None:
        self._current = number
        self._done, self._total, self._message = done, 0, ""
        self._base = (self._clock(), done)

    def _position(self, name: str) -> int:
        if name not in self._index:
            raise KeyError(f"no phase called {name!r}; phases: {list(self._index)}")
        return self._index[name]

    def begin(self, name: str, total: int = 0, message: str = "", done: int = 0) -> None:
        """Start phase ``name`` now (its rate is measured from here, from ``done`` units)."""
        with self._lock:
            number = self._position(name)
            if self._finished or number <= self._current:
                return
            self._enter(number, done)
            self._total, self._message = max(0, total), message
            state = self._state(milestone=True)
        self._emit(state)

    def update(self, name: str, done: int, total: int, message: str = "") -> None:
        """``done`` of ``total`` units of phase ``name`` (``total`` 0: not known); begins the phase if needed."""
        with self._lock:
            number = self._position(name)
            if self._finished or number < self._current:
                return
            entered = number > self._current
            if entered:
                self._enter(number, max(0, done))
            self._total = max(0, total)
            self._done = max(0, min(done, self._total) if self._total else done)
            self._message = message
            state = self._state(milestone=entered)
        self._emit(state)

    def note(self, name: str, message: str) -> None:
        """A step of phase ``name`` without a count (fitting thresholds, loading a model): the bar holds.

        For a phase already passed the message goes to the current phase (a step the caller files under an
        earlier phase, e.g. an SVM fitted after its feature network's last epoch, still happens now).
        """
        with self._lock:
            number = self._position(name)
            if self._finished:
                return
            if number > self._current:
                self._enter(number, 0)
            self._message = message
            state = self._state(milestone=True)
        self._emit(state)

    def callback(self, name: str, prefix: str = "") -> ProgressCallback:
        """A plain progress callback that reports into phase ``name``."""

        def report(done: int, total: int, message: str) -> None:
            self.update(name, done, total, f"{prefix}{message}")

        return report

    def finish(self, message: str = "done") -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._current = len(self.phases) - 1
            self._message = message
            state = self._state(milestone=True)
        self._emit(state)

    @property
    def state(self) -> ProgressState:
        with self._lock:
            return self._state()

    def _state(self, milestone: bool = False) -> ProgressState:
        number = max(0, self._current)
        phase = self.phases[number]
        weights = [p.weight for p in self.phases]
        if self._finished:
            fraction = 1.0
        else:
            share = self._done / self._total if self._total else 0.0
            fraction = (sum(weights[:number]) + weights[number] * share) / sum(weights) if self._current >= 0 else 0.0
        rate = seconds_left = None
        since, base_done = self._base
        elapsed = self._clock() - since
        if not self._finished and self._done > base_done and elapsed >= MIN_RATE_SECONDS:
            rate = (self._done - base_done) / elapsed
            if self._total > self._done:
                seconds_left = (self._total - self._done) / rate
        return ProgressState(
            phase=phase.name,
            number=number + 1,
            phases=len(self.phases),
            done=self._done,
            total=self._total,
            unit=phase.unit,
            message=self._message,
            fraction=min(1.0, max(0.0, fraction)),
            rate=rate,
            seconds_left=seconds_left,
            finished=self._finished,
            milestone=milestone,
        )

    def _emit(self, state: ProgressState) -> None:
        if self._on_change is not None:
            self._on_change(state)


def fit_progress(model: ProgressModel, images: int, reading: str, training: str) -> ProgressCallback:
    """Route a classifier's ``fit`` progress into a reading phase and a training phase.

    Every kind reports decoding its ``images`` training images as ``reading images …`` (``done`` up to ``images``).
    An SE-CNN then counts its optimiser steps on after those images (``done`` from ``images`` to ``total``); those
    become the training phase on their own, so thousands of cheap image reads no longer fill the bar before the
    first epoch. A report with another message (fitting an SVM, extracting features) is a step without a count.
    """

    def report(done: int, total: int, message: str) -> None:
        if message.startswith("reading images"):
            model.update(reading, min(done, images), images, message)
        elif message.startswith("epoch") and total > images:
            model.update(training, max(0, done - images), total - images, message)
        else:
            model.note(training, message)

    return report
