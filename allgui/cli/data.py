"""`allgui data check`: health report of a labelled data folder."""

from __future__ import annotations

import argparse
import json

from allgui.cli.terminal import MAP_HELP, TerminalProgress, parse_mapping, require_paths
from allgui.core.classes import UnknownClassFolderError
from allgui.core.datacheck import check_dataset
from allgui.core.duplicates import DEFAULT_THRESHOLD
from allgui.core.hashing import HASH_METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect labelled data folders")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="counts, unreadable files, duplicates and imbalance of a labelled folder")
    check.add_argument("folder", metavar="FOLDER", help="folder with one sub-folder per class")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD, help="near-duplicate Hamming distance")
    check.add_argument("--hash", choices=sorted(HASH_METHODS), default="phash")
    check.add_argument("--map", action="append", metavar="FOLDER=CLASS", help=MAP_HELP)
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from allgui.cli.main import UsageError

    (folder,) = require_paths([args.folder])
    try:
        report = check_dataset(
            folder,
            parse_mapping(args.map),
            threshold=args.threshold,
            hash_method=args.hash,
            progress=TerminalProgress("checking"),
        )
    except (UnknownClassFolderError, ValueError) as error:
        raise UsageError(str(error)) from None
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return 0
