"""`allgui compare`: the study's comparison on one data folder and one split, with a Markdown table."""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime
from pathlib import Path

from allgui.cli.interrupt import interrupt_cancels
from allgui.cli.terminal import TerminalProgress
from allgui.core.progress import Cancelled, CancelToken


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="run the model comparison (results.json, results.md, PNGs)")
    parser.add_argument("data", metavar="DATA", help="folder with one sub-folder per class")
    parser.add_argument("--experiments", metavar="NAMES", help="comma-separated subset (default: all)")
    parser.add_argument(
        "--split",
        choices=["blocks", "random"],
        default="blocks",
        help="blocks: last captures per class held out (default); random: stratified, optimistic",
    )
    parser.add_argument("--quick", action="store_true", help="small, fast configuration for tests and demos")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--epochs", type=int, help="SE-CNN epochs for the CNN rows (default: the declared configuration)"
    )
    parser.add_argument("--image-size", type=int, help="SE-CNN input size for the CNN rows")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/compare-DATE-TIME)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from allgui.cli.main import UsageError
    from allgui.core.experiments import experiment_names, run_comparison, select

    if not Path(args.data).is_dir():
        raise UsageError(f"no such data folder: {args.data}")
    names = [n.strip() for n in args.experiments.split(",") if n.strip()] if args.experiments else None
    try:
        select(names)
    except ValueError:
        raise UsageError(
            f"unknown experiment in {args.experiments!r}; choose from {', '.join(experiment_names())}"
        ) from None
    cnn_options = {}
    if args.epochs is not None:
        if args.epochs < 1:
            raise UsageError("--epochs must be at least 1")
        cnn_options["epochs"] = args.epochs
    if args.image_size is not None:
        if not 8 <= args.image_size <= 1024:
            raise UsageError("--image-size must be between 8 and 1024")
        cnn_options["image_size"] = args.image_size
    out = Path(args.out or f"runs/compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    words = ["allgui", "compare", args.data, "--split", args.split, "--out", str(out)]
    words += (["--experiments", args.experiments] if args.experiments else []) + (["--quick"] if args.quick else [])
    words += [f"--{k.replace('_', '-')}={v}" for k, v in cnn_options.items()]
    command = shlex.join(words)
    token = CancelToken()
    with interrupt_cancels(token, "stopping; finished experiments are kept"):
        try:
            results = run_comparison(
                args.data,
                names=names,
                split=args.split,
                quick=args.quick,
                out_dir=out,
                device=args.device,
                cnn_options=cnn_options,
                command=command,
                progress=TerminalProgress("compare"),
                cancel=token,
                log=lambda line: print(line, file=sys.stderr, flush=True),
            )
        except Cancelled:
            print(f"cancelled; results so far are in {out}", file=sys.stderr)
            return 130
    from allgui.core.experiments import markdown_table

    sys.stdout.write(markdown_table(results))
    print(f"results in {out}", file=sys.stderr)
    failed = [r["name"] for r in results["experiments"] if "error" in r]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
