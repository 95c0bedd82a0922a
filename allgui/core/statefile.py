"""Reading and writing the app's own small files (settings, active model, manifests, journals) without trusting them.

Any of these files may have been handed over by another lab or edited by hand, so a read refuses what is not a
regular file (a pipe would block forever, a device such as ``/dev/zero`` never ends), refuses a link that points out
of the file's own folder, caps the bytes it reads, and turns every parse failure (deep nesting included) into one
:class:`StateFileError` whose text names the file. Writes go through a temporary sibling with a short name, synced,
then renamed over the target, so a crash never leaves half a file and a link at the target is replaced, not followed.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import uuid
import warnings
from pathlib import Path
from typing import Any

# Settings, an active-model choice or a manifest are a few kilobytes; a megabyte is generous.
SMALL_FILE_BYTES = 1 << 20


class StateFileError(ValueError):
    """A state file that cannot be used; ``str()`` names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class StateFileWarning(UserWarning):
    """A state file was ignored (and the app goes on as if it were absent)."""


def warn_ignored(error: StateFileError, consequence: str) -> None:
    """One line telling the user a file was ignored and what that means, e.g. "the shipped default is used"."""
    warnings.warn(StateFileWarning(f"{error}; {consequence}"), stacklevel=2)


def check_regular(path: str | Path, *, follow_inside: bool = True) -> os.stat_result | None:
    """The file's status if it is a regular file (or None if it does not exist); :class:`StateFileError` otherwise.

    A symbolic link is accepted only when ``follow_inside`` and it resolves to a regular file in the same folder.
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # absent, or a part of its folder path is a file
        return None
    except OSError as error:
        raise StateFileError(path, f"cannot be read ({error.strerror or error})") from None
    if stat.S_ISLNK(info.st_mode):
        if not follow_inside:
            raise StateFileError(path, "is a symbolic link; refused so that nothing it points to is touched")
        target = Path(os.path.realpath(path))
        if target.parent != Path(os.path.realpath(path.parent)):
            raise StateFileError(path, f"is a link to {target}, outside its folder; refused")
        try:
            info = os.stat(path)
        except OSError as error:
            raise StateFileError(path, f"is a broken link ({error.strerror or error})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a pipe, device or socket)"
        raise StateFileError(path, f"is {kind}; refused")
    return info


def read_state_bytes(path: str | Path, max_bytes: int = SMALL_FILE_BYTES) -> bytes | None:
    """The bytes of a regular file of at most ``max_bytes``, or None if it does not exist."""
    path = Path(path)
    if check_regular(path) is None:
        return None
    try:
        # O_NONBLOCK: if the file was swapped for a pipe since the check, opening it still returns at once.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise StateFileError(path, f"cannot be read ({error.strerror or error})") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise StateFileError(path, "is not a regular file (a pipe, device or socket); refused")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise StateFileError(path, f"is larger than {max_bytes:,} bytes; refused")
    return data


def parse_json(data: bytes | str, path: str | Path) -> Any:
    """JSON from a state file's bytes; every failure (bad syntax or encoding, deep nesting) is a StateFileError."""
    try:
        text = data.decode("utf-8", errors="surrogateescape") if isinstance(data, bytes) else data
        return json.loads(text)
    except RecursionError:
        raise StateFileError(path, "is nested too deeply to be a file AllGUI wrote; refused") from None
    except ValueError as error:
        raise StateFileError(path, f"is not valid JSON ({error})") from None


def read_state_json(path: str | Path, max_bytes: int = SMALL_FILE_BYTES) -> Any:
    """The parsed JSON of a small state file, or None if it does not exist (see :func:`read_state_bytes`)."""
    data = read_state_bytes(path, max_bytes)
    return None if data is None else parse_json(data, path)


def temporary_sibling(path: Path) -> Path:
    # A short unique name: ".<name>.tmp" would pass the 255-byte limit for long names and collide between runs.
    return path.with_name(f".allgui-{uuid.uuid4().hex[:12]}.tmp")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a synced temporary sibling and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str, *, errors: str = "surrogateescape") -> None:
    """Write ``text`` as UTF-8 atomically; ``errors="surrogateescape"`` writes a file name that is not valid UTF-8
    (POSIX) back as its original bytes."""
    write_bytes_atomic(path, text.encode("utf-8", errors=errors))


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def describe_os_error(error: OSError) -> str:
    """A plain reason for a failed write: full disk, read-only place, name too long, ..."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENAMETOOLONG: "the file name is too long",
        errno.EISDIR: "it is a folder",
        errno.ENOTDIR: "a part of the path is not a folder",
    }
    return reasons.get(error.errno or 0, error.strerror or str(error))
