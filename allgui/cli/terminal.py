"""Terminal helpers shared by subcommands: a progress line on stderr, and checks of the paths a user names."""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from allgui.core.statefile import describe_os_error

if TYPE_CHECKING:
    from allgui.core.scan import ScanResult

# Longest file or folder name (bytes) of common file systems (ext4, NTFS, APFS).
NAME_MAX = 255


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


def long_part_problem(path: str | Path) -> str | None:
    """Why the file system would refuse ``path`` for a name that is too long (checked before any system call,
    which would only say ENAMETOOLONG); None when every part fits."""
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            shown = part if len(part) <= 40 else f"{part[:20]}...{part[-12:]}"
            return f'the name "{shown}" is {size} bytes long; file systems allow at most {NAME_MAX}'
    return None


def require_paths(paths: list[str], *, rows_for_links: bool = False) -> list[Path]:
    """The named paths; a usage error for one that does not exist or cannot be named at all.

    With ``rows_for_links``, a name that exists as a directory entry is kept even if it cannot be opened (a broken
    link, a link loop): the scan reports it as an error row, as it does inside a folder, rather than the whole run
    stopping. Without, such a name counts as missing.
    """
    from allgui.cli.main import UsageError

    missing = []
    for text in paths:
        problem = long_part_problem(text)
        if problem:
            raise UsageError(f"{text}: {problem}")
        try:
            os.lstat(text)
            if not rows_for_links:
                os.stat(text)
        except (FileNotFoundError, NotADirectoryError):
            missing.append(text)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise UsageError(f"{text}: cannot be read ({describe_os_error(error)})") from None
            if not rows_for_links:
                missing.append(text)
            # else: a loop further up the path, which the scan reports as a row
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    return [Path(p) for p in paths]


def place_problem(path: Path) -> str | None:
    """Why a file cannot be written at ``path`` (checked before long work starts); None when it looks writable.

    The folder may not exist yet: its nearest existing ancestor must be a folder this process may write into.
    """
    problem = long_part_problem(path)
    if problem:
        return problem
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as error:
        return describe_os_error(error)
    if info is not None and (stat.S_ISDIR(info.st_mode) or os.path.isdir(path)):
        return "it is a folder; name a file to write"
    if info is not None and stat.S_ISLNK(info.st_mode):
        # The file is written beside it and renamed over it: that would replace the link, not what it points to.
        return f"it is a symbolic link (to {os.path.realpath(path)}); name the file itself"
    if info is not None and not stat.S_ISREG(info.st_mode):
        return "it is not a regular file (a pipe, device or socket)"
    folder = Path(os.path.abspath(path)).parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not os.path.isdir(folder):
        return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1))
        return f"{folder} is on a read-only file system" if read_only else f"no permission to write into {folder}"
    return None


def _identity(path: str | Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def check_outputs(option: str, outputs: Sequence[Path], inputs: Iterable[Path]) -> None:
    """Refuse output files that would overwrite an input (the same resolved path or the same file through another
    link) or that cannot be written; the first output is the one the user named with ``option``."""
    from allgui.cli.main import UsageError

    named = outputs[0]
    resolved: set[str] = set()
    identities: set[tuple[int, int]] = set()
    for path in inputs:
        resolved.add(os.path.realpath(path))
        identity = _identity(path)
        if identity is not None:
            identities.add(identity)
    for output in outputs:
        identity = _identity(output)
        if os.path.realpath(output) in resolved or (identity is not None and identity in identities):
            what = "is one of the inputs" if output == named else f"would write {output}, which is one of the inputs"
            raise UsageError(f"{option} {named} {what}; refused so that an input is never overwritten")
    problem = place_problem(named)
    if problem:
        raise UsageError(f"{option} {named}: cannot be written: {problem}")


MAP_HELP = "map a class folder with another name to a class, e.g. --map Hematogones=Benign (repeatable)"


def parse_mapping(items: Sequence[str] | None) -> dict[str, str] | None:
    """``--map FOLDER=CLASS`` options as a folder-to-class mapping (None when none were given)."""
    from allgui.cli.main import UsageError

    if not items:
        return None
    mapping: dict[str, str] = {}
    for item in items:
        folder, sep, target = item.partition("=")
        if not sep or not folder.strip() or not target.strip():
            raise UsageError(f"--map {item!r}: write it as FOLDER=CLASS, e.g. --map Hematogones=Benign")
        mapping[folder.strip()] = target.strip()
    return mapping


def require_images(scan: ScanResult, paths: list[Path]) -> None:
    """Exit 2 when the named folders hold no image and nothing to report: an empty run would look like success."""
    from allgui.cli.main import UsageError
    from allgui.core.imageio import IMAGE_EXTENSIONS

    if scan.files or scan.problems:
        return
    named = ", ".join(str(p) for p in paths)
    skipped = scan.describe_skipped()
    raise UsageError(
        f"no images found in {named}: {skipped or 'the folders are empty'}. AllGUI reads "
        f"{', '.join(sorted(IMAGE_EXTENSIONS))} files, also in sub-folders"
    )
