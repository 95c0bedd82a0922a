"""`allgui dedupe`: exact and near-duplicate images as CSV."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from allgui.cli.terminal import TerminalProgress, check_outputs, long_part_problem, require_images, require_paths
from allgui.core.duplicates import DEFAULT_THRESHOLD, find_groups
from allgui.core.hashing import HASH_METHODS, hash_images
from allgui.core.scan import scan_images

COLUMNS = ["group", "path", "sha256", "hash", "distance", "kind"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dedupe", help="find exact and near-duplicate images (CSV)")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    parser.add_argument(
        "--threshold",
        type=int,
        default=DEFAULT_THRESHOLD,
        help=f"largest Hamming distance of near-duplicates (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument("--hash", choices=sorted(HASH_METHODS), default="phash", help="perceptual hash (default phash)")
    parser.add_argument("--out", metavar="FILE", help="write the CSV here instead of standard output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from allgui.cli.main import UsageError
    from allgui.core.classify import csv_cell, needs_quotes
    from allgui.core.statefile import describe_os_error, write_text_atomic

    if not 0 <= args.threshold <= 63:
        raise UsageError("--threshold must be between 0 and 63")
    paths = require_paths(args.paths, rows_for_links=True)
    if args.out is not None and long_part_problem(args.out):
        raise UsageError(f"--out {args.out}: cannot be written: {long_part_problem(args.out)}")
    scan = scan_images(paths)
    require_images(scan, paths)
    if args.out is not None:  # before hashing: the CSV must never replace an input
        check_outputs("--out", [Path(args.out)], [*paths, *scan.files, *(path for path, _ in scan.problems)])
    records = hash_images(scan.files, args.hash, progress=TerminalProgress("hashing"))
    groups = find_groups(records, args.threshold)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(COLUMNS)
    for number, group in enumerate(groups, start=1):
        for index, distance, kind in zip(group.members, group.distances, group.kinds, strict=True):
            record = records[index]
            # A file name starting with "=" must reach a spreadsheet as text, not as a formula.
            cells = [number, csv_cell(str(record.path)), record.sha256, record.hash_hex, distance, kind]
            (quoted if needs_quotes(cells) else writer).writerow(cells)
    if args.out:
        try:
            write_text_atomic(args.out, buffer.getvalue())
        except OSError as error:
            raise UsageError(f"cannot write {args.out}: {describe_os_error(error)}") from None
    else:
        sys.stdout.write(buffer.getvalue())
    for path, reason in scan.problems:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    unreadable = [r for r in records if r.error]
    for record in unreadable:
        print(f"unreadable {record.path}: {record.error}", file=sys.stderr)
    in_groups = sum(len(g.members) for g in groups)
    print(
        f"{len(records)} images, {len(groups)} duplicate groups ({in_groups} images), "
        f"{len(unreadable)} unreadable; {args.hash}, distance <= {args.threshold}",
        file=sys.stderr,
    )
    return 0
