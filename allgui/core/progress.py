"""Progress reporting and cancellation for long operations, in plain Python (no Qt).

Core functions take ``progress(done, total, message)`` and a :class:`CancelToken`; the GUI adapts
both to Qt signals in one place, the CLI prints them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

ProgressCallback = Callable[[int, int, str], None]


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
