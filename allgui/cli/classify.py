"""`allgui classify`: one row per image (CSV or JSON), crash-safe with ``--resume``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from allgui.cli.interrupt import interrupt_cancels
from allgui.cli.terminal import TerminalProgress, require_paths
from allgui.core.progress import Cancelled, CancelToken


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("classify", help="classify images with the active (or a given) model")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    parser.add_argument("--model", metavar="ID_OR_DIR", help="model id from `allgui models list`, or a model folder")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", metavar="FILE", help="write results here (default: standard output)")
    parser.add_argument("--format", choices=["csv", "json"], help="output format (default: from --out, else csv)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per inference batch")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run into the same --out, keeping its rows"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from allgui.cli.main import UsageError
    from allgui.core.classify import (
        JournalMismatchError,
        classify_paths,
        journal_path_for,
        render,
        unlike_training_warning,
        write_rows,
    )
    from allgui.core.models.store import ModelLoadError, ModelNotFoundError, ModelStore
    from allgui.core.scan import scan_images

    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.resume and not args.out:
        raise UsageError("--resume needs --out (the journal lives next to the output file)")
    fmt = args.format or ("json" if args.out and args.out.lower().endswith(".json") else "csv")
    paths = require_paths(args.paths)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        loaded = ModelStore().load(args.model)
    except ModelNotFoundError as error:
        raise UsageError(str(error)) from None
    except ModelLoadError as error:
        log(f"allgui classify: cannot use the model: {error}")
        return 1
    if hasattr(loaded.classifier, "set_device"):
        loaded.classifier.set_device(args.device, log)
    log(f"model {loaded.id} ({loaded.title}) on {loaded.classifier.device_name}")
    scan = scan_images(paths)
    out = Path(args.out) if args.out else None
    journal = journal_path_for(out) if out else None
    token = CancelToken()
    with interrupt_cancels(token, "stopping; finished rows are kept for --resume"):
        try:
            rows = classify_paths(
                scan.files,
                loaded,
                batch_size=args.batch_size,
                journal=journal,
                resume=args.resume,
                problems=scan.problems,
                progress=TerminalProgress("classifying"),
                cancel=token,
                log=log,
            )
        except JournalMismatchError as error:
            raise UsageError(str(error)) from None
        except Cancelled:
            log(f"stopped; rerun with --resume to finish ({journal})" if journal else "stopped")
            return 130
    if out is not None:
        write_rows(rows, out, fmt)
        assert journal is not None
        journal.unlink(missing_ok=True)  # the export now holds every row
    else:
        sys.stdout.write(render(rows, fmt))
    errors = sum(1 for r in rows if r.get("error"))
    review = sum(1 for r in rows if r.get("needs_review"))
    log(
        f"{len(rows)} rows: {len(rows) - errors} classified ({review} need review), {errors} errors"
        + (f"; written to {out}" if out else "")
    )
    warning = unlike_training_warning(rows)
    if warning:
        log(f"warning: {warning}")
    return 0
