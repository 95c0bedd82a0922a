"""`allgui` entry point: no arguments opens the GUI, subcommands run headless."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import multiprocessing
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import TextIO

from allgui import DISCLAIMER, __version__

# Modules in allgui/cli/ that each add one subcommand via register(subparsers).
COMMANDS = ["dedupe", "data", "train", "compare", "classify", "models"]


class UsageError(Exception):
    """Bad arguments found after parsing (e.g. a path that does not exist): exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allgui",
        description=f"AllGUI: B-ALL smear image review. {DISCLAIMER} Without a command (or with image files and "
        "folders only), opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"allgui {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"allgui.cli.{name}").register(subparsers)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A warning as one line a technician can read (the default shows a file name, a line number and source)."""
    stream = file or sys.stderr
    if stream is None:
        return
    text = " ".join(str(message).split())
    try:
        stream.write(f"allgui: warning: {text}\n")
        stream.flush()
    except (OSError, ValueError):  # a closed or broken stderr must not turn a warning into a failure
        pass


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """While a command runs, show Python warnings (ours, e.g. a StateFileWarning, and any library's) as
    ``allgui: warning: ...``; the previous display and filters come back afterwards (main() may run in-process)."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        yield


def _names_a_path(text: str) -> bool:
    try:
        os.stat(text)
    except (OSError, ValueError):  # no such file, or a name no file can have (too long, a NUL byte)
        return False
    return True


def _open_gui(argv: Sequence[str]) -> int:
    from allgui.ui.app import run_app

    return run_app(list(argv))


def _utf8_stdout() -> None:
    """Write results as UTF-8: file names may hold any character, and a narrow code page (cp1252 when Windows
    redirects output to a file or pipe) would otherwise abort the run with UnicodeEncodeError."""
    stream = sys.stdout
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    if stream is not None and hasattr(stream, "reconfigure") and encoding != "utf8":
        stream.reconfigure(encoding="utf-8", errors="surrogateescape")


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()
    from allgui.selftest import ensure_std_streams

    ensure_std_streams()  # a windowed frozen app has no console streams
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--self-test"]:
        from allgui.selftest import main as self_test

        with one_line_warnings():
            return self_test(argv[1:])
    opens_paths = bool(argv) and argv[0] not in COMMANDS and _names_a_path(argv[0])  # `allgui FOLDER_OR_IMAGE`
    if not argv or opens_paths or argv[0].startswith("--") and argv[0] not in ("--help", "--version"):
        return _open_gui(argv)
    _utf8_stdout()
    with one_line_warnings():
        return _run_command(argv)


def _run_command(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from allgui.core.statefile import StateFileError

    try:
        return int(args.func(args) or 0)
    except (UsageError, StateFileError) as error:  # a StateFileError names the file and the reason
        print(f"allgui {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("allgui: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - report, never dump a traceback on a technician
        print(f"allgui {args.command}: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
