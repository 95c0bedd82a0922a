"""Ctrl-C as a cancel request: the first press asks the running operation to stop cleanly, a second one aborts."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from allgui.core.progress import CancelToken


@contextmanager
def interrupt_cancels(token: CancelToken, what: str = "stopping") -> Iterator[CancelToken]:
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    def handler(signum: int, frame: object) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        print(f"\n{what} (press Ctrl-C again to abort at once)", file=sys.stderr, flush=True)
        token.cancel()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)
