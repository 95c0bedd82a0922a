"""`allgui train`: train one model on a labelled folder, evaluate it on held-out later captures, store it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from allgui.cli.interrupt import interrupt_cancels
from allgui.cli.terminal import MAP_HELP, TerminalProgress, parse_mapping
from allgui.core.progress import Cancelled, CancelToken, ProgressState


def register(subparsers: argparse._SubParsersAction) -> None:
    from allgui.core.models.registry import KINDS

    parser = subparsers.add_parser("train", help="train a model on a labelled data folder")
    parser.add_argument("data", metavar="DATA", help="folder with one sub-folder per class (Benign, Early, Pre, Pro)")
    parser.add_argument("--model", required=True, choices=list(KINDS), help="model kind")
    parser.add_argument("--epochs", type=int, help="training epochs (secnn, cnn-hash-svm)")
    parser.add_argument("--image-size", type=int, help="input size in pixels (images are resized to it)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train (torch)")
    parser.add_argument("--out", metavar="DIR", help="model folder to write (default: a new model in the user's list)")
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.15,
        help="share of each class's last captures held out to measure the model (0: train on everything)",
    )
    parser.add_argument("--id", help="model id (default: KIND-DATE-TIME)")
    parser.add_argument("--map", action="append", metavar="FOLDER=CLASS", help=MAP_HELP)
    parser.set_defaults(func=run)


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``--model`` with the settings given on the command line, where that kind keeps them."""
    from allgui.cli.main import UsageError
    from allgui.core.models.registry import cannot_train, kind_info, kinds_taking, training_options

    if reason := cannot_train(args.model):
        raise UsageError(reason)
    taken = kind_info(args.model).settings
    if args.image_size is not None and not 8 <= args.image_size <= 1024:
        raise UsageError("--image-size must be between 8 and 1024")
    if args.epochs is not None:
        if "epochs" not in taken:
            raise UsageError(f"--epochs applies to {' and '.join(kinds_taking('epochs'))}, not {args.model}")
        if args.epochs < 1:
            raise UsageError("--epochs must be at least 1")
    # An SE-CNN trains with the shipped default model's recipe unless told otherwise.
    return training_options(args.model, {"image_size": args.image_size, "epochs": args.epochs, "device": args.device})


class PhaseLines:
    """The run's progress as the terminal lines ``allgui train`` has always drawn: scanning, then training."""

    def __init__(self, kind: str) -> None:
        self.scanning = TerminalProgress("scanning")
        self.training = TerminalProgress(f"training {kind}")

    def __call__(self, state: ProgressState) -> None:
        line = self.scanning if state.phase == "checking images" else self.training
        line(state.done, state.total, state.message)


def run(args: argparse.Namespace) -> int:
    from allgui.cli.main import UsageError
    from allgui.core.classes import UnknownClassFolderError
    from allgui.core.models.manifest import model_id_problem
    from allgui.core.models.store import ModelLoadError, ModelStore, is_model_folder, new_model_id
    from allgui.core.training_run import TrainingRequest, run_training, save_result

    data_root = Path(args.data)
    if not data_root.is_dir():
        raise UsageError(f"no such data folder: {data_root}")
    if not 0 <= args.holdout < 0.5:
        raise UsageError("--holdout must be at least 0 and below 0.5")
    options = model_options(args)
    mapping = parse_mapping(args.map)
    # Checked before hours of training: the id names a folder, and --out may only replace a model folder.
    model_id = args.id or (Path(args.out).name if args.out else new_model_id(args.model))
    if problem := model_id_problem(model_id):
        raise UsageError(f"{problem}; choose one with --id")
    target = Path(args.out) if args.out else ModelStore().user_dir / model_id
    if (target.is_symlink() or target.exists()) and not is_model_folder(target):
        raise UsageError(f"{target} exists and is not an AllGUI model folder; it is left as it is")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    request = TrainingRequest(
        args.model, data_root, options, mapping, held_out_fraction=args.holdout, keep_on_cancel=True
    )
    token = CancelToken()
    with interrupt_cancels(token, "stopping after the current step; the best checkpoint so far is kept"):
        try:
            result = run_training(request, on_state=PhaseLines(args.model), cancel=token, log=log)
        except UnknownClassFolderError as error:
            raise UsageError(str(error)) from None
        except Cancelled:
            log("stopped before training started; nothing was saved")
            return 130
    try:
        folder = save_result(
            result, model_id, folder=Path(args.out) if args.out else None, store=None if args.out else ModelStore()
        )
    except RuntimeError as error:
        log(f"stopped before the first checkpoint; nothing was saved ({error})")
        return 130
    except (ModelLoadError, ValueError, OSError) as error:  # e.g. a value loading would refuse, a full disk
        log(f"allgui train: the trained model could not be saved: {error}")
        return 1
    metrics = result.metrics
    if metrics:
        log(
            f"held-out accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['f1_macro']:.3f}, "
            f"weighted F1 {metrics['f1_weighted']:.3f} on {metrics['n']} images"
        )
    stopped = "stopped early; kept the best checkpoint as" if result.cancelled else "saved"
    print(f"{stopped} model {model_id} in {folder}")
    return 130 if result.cancelled else 0
