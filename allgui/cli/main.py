"""`allgui` entry point: no arguments opens the GUI, subcommands run headless."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import multiprocessing
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import TextIO

from allgui import DISCLAIMER, __version__

# Modules in allgui/cli/ that each add one subcommand via register(subparsers).
COMMANDS = ["dedupe", "data", "train", "compare", "classify", "report", "models"]


class UsageError(Exception):
    """Bad arguments found after parsing (e.g. a path that does not exist): exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allgui",
        description=f"AllGUI: B-ALL smear image review. {DISCLAIMER} Without a command (or with image files and "
        "folders only), opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"allgui {__version__}")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="open the window offscreen, load and run every shipped model, and exit 0 only if all passed "
        "(--self-test --report FILE writes a JSON report)",
    )
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
    from allgui.system_check import check_gui_libraries

    advice = check_gui_libraries()  # before Qt, which would abort with advice that does not help
    if advice:
        print(advice, file=sys.stderr)
        return 2
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
    if not argv[0].startswith("-") and argv[0] not in COMMANDS:
        print(f"allgui: error: {_unknown_first_word(argv[0])}", file=sys.stderr)
        return 2
    _utf8_stdout()
    with one_line_warnings():
        try:
            code = _run_command(argv)
            sys.stdout.flush()
        except BrokenPipeError:
            return _closed_pipe()
        return code


def _unknown_first_word(word: str) -> str:
    """Neither a command nor an existing path: say which of the two it looks like it was meant to be."""
    if any(mark in word for mark in ("/", "\\", ".", "~")):
        return f"no such file or folder: {word}"
    close = difflib.get_close_matches(word, COMMANDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{word!r} is not a command or an existing file or folder{hint} (commands: {', '.join(COMMANDS)})"


def _closed_pipe() -> int:
    """The reader went away (``allgui models show X | head``): stop quietly, as command-line tools do."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush at exit must not fail again
    return 141  # 128 + SIGPIPE, what a shell reports for a program stopped by a closed pipe


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse, naming the nearest option of the command for a misspelt one (``--ouput``: did you mean --out?)."""
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    command = _subparser(parser, args)
    known = [option for action in command._actions for option in action.option_strings]  # noqa: SLF001
    hints = []
    for extra in extras:
        if extra.startswith("-"):
            close = difflib.get_close_matches(extra.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                hints.append(f"{extra}: did you mean {close[0]}?")
    command.error(f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(hints)})" if hints else ""))
    raise AssertionError("unreachable: error() exits")


def _subparser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command given: its usage and options fit a mistake in that command's arguments."""
    current = parser
    while True:
        actions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
        name = getattr(args, actions[0].dest, None) if actions else None
        if name not in (actions[0].choices if actions else {}):
            return current
        current = actions[0].choices[name]


def _run_command(argv: list[str]) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from allgui.core.statefile import StateFileError

    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        raise
    except (UsageError, StateFileError) as error:  # a StateFileError names the file and the reason
        print(f"allgui {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("allgui: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - report, never dump a traceback on a technician
        print(f"allgui {args.command}: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
