"""`allgui report`: the case report of a results file of `allgui classify` (or the Batch or Review tab), as PDF or
self-contained HTML."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPORT_SUFFIXES = (".pdf", ".html", ".htm")  # allgui.ui.report_pdf's, not imported so that --help needs no Qt


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="write the case report of a results file (PDF or HTML)")
    parser.add_argument("results", metavar="RESULTS", help="a CSV or JSON file written by allgui classify or the app")
    parser.add_argument("--out", metavar="FILE", required=True, help="the report: FILE.pdf or FILE.html")
    parser.add_argument(
        "--images-root",
        metavar="DIR",
        help="find the images under DIR (results from another computer): the longest tail of each row's path "
        "that exists there",
    )
    parser.add_argument("--case", metavar="NAME", help="the case name (default: the folder holding the images)")
    parser.add_argument("--reviewer", metavar="NAME", help="the reviewer's name (default: the one in Preferences)")
    parser.set_defaults(func=run)


def _gui_application() -> object:
    """A QGuiApplication for the PDF: offscreen, since no window is shown (works without a display)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.instance() or QGuiApplication([sys.argv[0] or "allgui"])


def run(args: argparse.Namespace) -> int:
    from allgui.cli.main import UsageError
    from allgui.cli.terminal import TerminalProgress, check_outputs, require_paths
    from allgui.core.report import ReportInputError, build_html, default_case_name, read_results
    from allgui.core.settings import load_settings
    from allgui.core.statefile import describe_os_error

    (results,) = require_paths([args.results])
    if results.is_dir():
        raise UsageError(f"{results} is a folder; name the CSV or JSON file that allgui classify wrote")
    out = Path(args.out)
    if out.suffix.lower() not in REPORT_SUFFIXES:
        raise UsageError(f"--out {out}: name a .pdf or .html file")
    root = Path(args.images_root) if args.images_root else None
    if root is not None and not root.is_dir():
        raise UsageError(f"--images-root {root}: not a folder")
    check_outputs("--out", [out], [results])
    try:
        rows = read_results(results)
    except ReportInputError as error:
        raise UsageError(str(error)) from None
    case = args.case if args.case is not None else default_case_name(rows, results.stem)
    reviewer = args.reviewer if args.reviewer is not None else load_settings().reviewer
    progress = TerminalProgress("report")
    page = build_html(rows, case=case, reviewer=reviewer, images_root=root, source=str(results), progress=progress)
    try:
        if out.suffix.lower() == ".pdf":
            _gui_application()
        from allgui.ui.report_pdf import write_report
    except ImportError as error:  # Qt's GUI libraries missing on a bare server
        print(f"allgui report: a PDF needs Qt's GUI libraries ({error}); write an .html --out", file=sys.stderr)
        return 1

    try:
        write_report(out, page)
    except OSError as error:
        raise UsageError(f"cannot write {out}: {describe_os_error(error)}") from None
    flagged = sum(bool(r.predicted and r.needs_review) for r in rows)
    errors = sum(bool(r.error) for r in rows)
    print(f"report of {len(rows)} rows ({flagged} need review, {errors} unreadable) written to {out}", file=sys.stderr)
    return 0
