"""Terminal helpers shared by subcommands: a progress line on stderr and output-file writing."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path


class TerminalProgress:
    """A progress callback that redraws one stderr line (at most ~10 times a second) when stderr is a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._last = 0.0
        self._live = sys.stderr is not None and sys.stderr.isatty()

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        if not self._live or (now - self._last < 0.1 and done != total):
            return
        self._last = now
        share = f" {100 * done / total:5.1f}%" if total else ""
        sys.stderr.write(f"\r{self.label}:{share} {message[:70]:<70}")
        if total and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A short unique name: ".<name>.tmp" would pass the 255-byte limit for long names and collide between runs.
    temporary = path.with_name(f".allgui-{uuid.uuid4().hex[:12]}.tmp")
    # surrogateescape: a file name that is not valid UTF-8 (POSIX) is written back as its original bytes.
    temporary.write_text(text, encoding="utf-8", errors="surrogateescape", newline="")
    temporary.replace(path)


def require_paths(paths: list[str]) -> list[Path]:
    from allgui.cli.main import UsageError

    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    return [Path(p) for p in paths]
