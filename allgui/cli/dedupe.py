"""`allgui dedupe`: exact and near-duplicate images as CSV."""

from __future__ import annotations

import argparse
import csv
import io
import sys

from allgui.cli.terminal import TerminalProgress, require_paths, write_text_atomic
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

    if not 0 <= args.threshold <= 63:
        raise UsageError("--threshold must be between 0 and 63")
    scan = scan_images(require_paths(args.paths))
    records = hash_images(scan.files, args.hash, progress=TerminalProgress("hashing"))
    groups = find_groups(records, args.threshold)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for number, group in enumerate(groups, start=1):
        for index, distance, kind in zip(group.members, group.distances, group.kinds, strict=True):
            record = records[index]
            writer.writerow([number, record.path, record.sha256, record.hash_hex, distance, kind])
    if args.out:
        write_text_atomic(args.out, buffer.getvalue())
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
