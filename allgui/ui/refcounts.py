"""A workaround for PySide6 6.12.0 on Python 3.11: calls that return None, and signals emitted with True, drop a
reference to None or True, as if those were immortal (as they are from Python 3.12 on). Python aborts ("none_dealloc",
"bool_dealloc") once a count reaches zero: after some thousands of calls, e.g. a few hundred images clicked in the
Review list or a minute of scrolling the gallery. Measured: 1000 ``QLabel.setText`` calls took None's count from
5113 to 4113, and the interpreter then aborted at exit.

The fix gives None, True and False the practically endless counts Python 3.12 gives them; it does nothing from
Python 3.12 on. A PySide6 release without the bug, pinned, would make it unnecessary.
"""

from __future__ import annotations

import ctypes
import sys

SINGLETON_REFERENCES = 1 << 40


def keep_singletons_alive() -> None:
    if sys.version_info >= (3, 12):
        return
    for singleton in (None, True, False):
        count = ctypes.c_ssize_t.from_address(id(singleton))  # ob_refcnt, the first field of every object
        if count.value < SINGLETON_REFERENCES:
            count.value += SINGLETON_REFERENCES
