"""`allgui classify`: one row per image (CSV or JSON), crash-safe with ``--resume``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from allgui.cli.interrupt import interrupt_cancels
from allgui.cli.terminal import TerminalProgress, check_outputs, long_part_problem, require_images, require_paths
from allgui.core.models.runtime import ENGINE_CHOICES, ENGINE_HELP, EngineUnavailable
from allgui.core.progress import Cancelled, CancelToken

CLUSTER_EXTRA = 'pip install "allgui[cluster]"'
MIN_CHUNK, MAX_CHUNK = 16, 128  # allgui.core.cluster's, which imports dask: not imported to build the help


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("classify", help="classify images with the active (or a given) model")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    parser.add_argument("--model", metavar="ID_OR_DIR", help="model id from `allgui models list`, or a model folder")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="auto",
        help="what runs a network: " + ENGINE_HELP,
    )
    parser.add_argument("--out", metavar="FILE", help="write results here (default: standard output)")
    parser.add_argument("--format", choices=["csv", "json"], help="output format (default: from --out, else csv)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per inference batch")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run into the same --out, keeping its rows"
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="classify on a dask cluster: local:N starts N worker processes on this machine, or the address of a "
        f"running scheduler (tcp://host:8786) whose workers read the images at the same paths; needs {CLUSTER_EXTRA}",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        metavar="N",
        help=f"images per cluster task (default: {MIN_CHUNK} to {MAX_CHUNK}, from the number of images and workers)",
    )
    parser.set_defaults(func=run)


def cluster_module(address: str) -> ModuleType:
    """:mod:`allgui.core.cluster`, or a usage error naming the extra when dask or distributed is not installed."""
    from allgui.cli.main import UsageError

    try:
        from allgui.core import cluster
    except ImportError as error:
        how = "the desktop bundle leaves them out: use a pip install of AllGUI and" if getattr(sys, "frozen", 0) else ""
        raise UsageError(
            f"--cluster {address} needs dask and distributed, which cannot be imported here ({error}); "
            f"{how or 'install'} the cluster extra: {CLUSTER_EXTRA}"
        ) from None
    return cluster


def check_cluster_address(address: str) -> None:
    """Refuse an address that is neither local:N nor a scheduler's (before anything is installed or started)."""
    from allgui.cli.main import UsageError

    if address.startswith("local:"):
        count = address[len("local:") :]
        if not count.isdigit() or int(count) < 1:
            raise UsageError(f"--cluster {address}: write local:N with N the number of worker processes, e.g. local:4")
        return
    scheme, sep, rest = address.partition("://")
    if not sep or not scheme or not rest or any(c.isspace() for c in address):
        raise UsageError(
            f"--cluster {address}: give local:N or the address of a running scheduler, e.g. tcp://host:8786"
        )


def run(args: argparse.Namespace) -> int:
    from allgui.cli.main import UsageError
    from allgui.core.classify import (
        Journal,
        JournalBusyError,
        JournalMismatchError,
        classify_paths,
        fmt_for,
        journal_header,
        journal_path_for,
        render,
        unlike_training_warning,
        write_rows,
    )
    from allgui.core.models.store import ModelLoadError, ModelNotFoundError, ModelStore
    from allgui.core.scan import scan_images
    from allgui.core.statefile import StateFileError, check_regular, describe_os_error

    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.resume and not args.out:
        raise UsageError("--resume needs --out (the journal lives next to the output file)")
    if args.chunk_size is not None and (args.cluster is None or args.chunk_size < 1):
        raise UsageError("--chunk-size is for a --cluster run, and must be at least 1")
    cluster = None
    if args.cluster is not None:
        check_cluster_address(args.cluster)
        cluster = cluster_module(args.cluster)  # before any work: a missing extra is said at once
    fmt = args.format or (fmt_for(Path(args.out)) if args.out else "csv")
    paths = require_paths(args.paths, rows_for_links=True)
    if args.out is not None and long_part_problem(args.out):
        raise UsageError(f"--out {args.out}: cannot be written: {long_part_problem(args.out)}")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    scan = scan_images(paths)
    require_images(scan, paths)
    out = Path(args.out) if args.out is not None else None
    journal = journal_path_for(out) if out is not None else None
    if out is not None and journal is not None:
        # Before any work: an output must never be an input, and the journal must be a plain file of our own.
        named = [*paths, *scan.files, *(path for path, _ in scan.problems)]
        check_outputs("--out", [out, journal], named)
        try:
            check_regular(journal, follow_inside=False)  # never follow a link there, never open a pipe or device
        except StateFileError as error:
            raise UsageError(f"the journal {journal} {error.reason}") from None
        if args.resume and not os.path.lexists(journal) and os.path.lexists(out):
            raise UsageError(
                f"{out} is a finished run: nothing to resume; its journal was removed when the export was written. "
                f"Run without --resume to classify again (that replaces {out})"
            )

    try:
        loaded = ModelStore().load(args.model)
    except ModelNotFoundError as error:
        raise UsageError(str(error)) from None
    except ModelLoadError as error:
        log(f"allgui classify: cannot use the model: {error}")
        return 1
    if cluster is None:
        # No log callback: a CPU fallback is a DeviceWarning, which main() prints as one "allgui: warning:" line.
        loaded.classifier.set_device(args.device)
        loaded.classifier.set_engine(args.engine)
        try:
            runs_on = f"{loaded.classifier.engine_name} on {loaded.classifier.device_name}"
        except EngineUnavailable as error:
            log(f"allgui classify: cannot run the model {loaded.id}: {error}")
            return 2
    else:  # the workers load it and say what runs it there
        runs_on = f"on the cluster {args.cluster}"
    log(f"model {loaded.id} ({loaded.title}), {runs_on}")
    book = Journal(journal, journal_header(loaded)) if journal is not None else None
    try:
        if book is not None:
            try:
                book.open(args.resume)  # locked until the export is written and the journal removed
            except JournalBusyError:
                raise UsageError(
                    f"another allgui run is writing {out} (its journal {journal} is locked); wait for it to finish "
                    "or choose another --out"
                ) from None
            except JournalMismatchError as error:
                raise UsageError(str(error)) from None
        token = CancelToken()
        with interrupt_cancels(token, "stopping; finished rows are kept for --resume"), contextlib.ExitStack() as stack:
            client = None
            if cluster is not None:
                stack.enter_context(_quiet_cluster_logs())  # also while the cluster stops
                try:  # a local:N cluster stops, and a scheduler's client closes, on leaving this block
                    client = stack.enter_context(cluster.connect(args.cluster, log=log))
                except cluster.ClusterError as error:
                    log(f"allgui classify: {error}")
                    return 2
            try:
                rows = classify_paths(
                    scan.files,
                    loaded,
                    batch_size=args.batch_size,
                    journal=book,
                    resume=args.resume,
                    problems=scan.problems,
                    progress=TerminalProgress("classifying"),
                    cancel=token,
                    log=log,
                    client=client,
                    chunk_size=args.chunk_size,
                    worker_engine=args.engine,
                    worker_device=args.device,
                )
            except Cancelled:
                log(f"stopped; rerun with --resume to finish ({journal})" if journal else "stopped")
                return 130
            except Exception as error:
                if cluster is None or not isinstance(error, cluster.ClusterError):
                    raise
                kept = f"; the rows finished are kept: rerun with --resume to go on ({journal})" if journal else ""
                log(f"allgui classify: {error}{kept}")
                return 1
        # Everything that reads the rows runs before the export, so nothing fails after it.
        errors = sum(1 for r in rows if r.error)
        review = sum(1 for r in rows if r.needs_review and not r.error)
        warning = unlike_training_warning(rows)
        if out is None:
            sys.stdout.write(render(rows, fmt))
        else:
            try:
                write_rows(rows, out, fmt)
            except OSError as error:
                raise UsageError(
                    f"cannot write {out}: {describe_os_error(error)}; every row is kept in {journal}: make room "
                    "or fix the folder, then rerun with --resume"
                ) from None
            assert book is not None
            problem = book.remove()  # only now: the export holds every row
            if problem:
                log(f"allgui classify: warning: could not remove the journal {journal} ({problem}); delete it")
    finally:
        if book is not None:
            book.close()
    log(
        f"{len(rows)} rows: {len(rows) - errors} classified ({review} need review), {errors} errors"
        + (f"; written to {out}" if out else "")
    )
    if warning:
        log(f"warning: {warning}")
    return 0


@contextlib.contextmanager
def _quiet_cluster_logs() -> Iterator[None]:
    """dask's own log lines (a worker lost and replaced, connections closed on stopping) stay out of the terminal:
    the command says what matters in its own words."""
    previous = logging.root.manager.disable  # dask sets levels on its loggers, which would override one of ours
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)
