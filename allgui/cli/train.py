"""`allgui train`: train one model on a labelled folder, evaluate it on held-out later captures, store it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from allgui.cli.interrupt import interrupt_cancels
from allgui.cli.terminal import MAP_HELP, TerminalProgress, parse_mapping
from allgui.core.progress import Cancelled, CancelToken


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
    from allgui.cli.main import UsageError
    from allgui.core.models.recipes import SECNN_RECIPE
    from allgui.core.models.registry import kind_info

    # An SE-CNN trains with the shipped default model's recipe unless told otherwise.
    options: dict[str, Any] = dict(SECNN_RECIPE) if args.model == "secnn" else {}
    torch_kind = kind_info(args.model).needs_torch
    if args.image_size is not None:
        if not 8 <= args.image_size <= 1024:
            raise UsageError("--image-size must be between 8 and 1024")
        if args.model == "cnn-hash-svm":
            options.setdefault("cnn", {})["image_size"] = args.image_size
        else:
            options["image_size"] = args.image_size
    if args.epochs is not None:
        if not torch_kind:
            raise UsageError(f"--epochs applies to secnn and cnn-hash-svm, not {args.model}")
        if args.epochs < 1:
            raise UsageError("--epochs must be at least 1")
        if args.model == "cnn-hash-svm":
            options.setdefault("cnn", {})["epochs"] = args.epochs
        else:
            options["epochs"] = args.epochs
    if torch_kind:
        options["device"] = args.device
    return options


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from allgui.cli.main import UsageError
    from allgui.core.classes import UnknownClassFolderError
    from allgui.core.dataset import load_labelled
    from allgui.core.metrics import evaluate
    from allgui.core.models.manifest import model_id_problem
    from allgui.core.models.registry import create
    from allgui.core.models.store import ModelLoadError, ModelStore, is_model_folder, new_model_id, save_model
    from allgui.core.splits import block_split

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

    token = CancelToken()
    with interrupt_cancels(token, "stopping after the current step; the best checkpoint so far is kept"):
        try:
            data = load_labelled(data_root, mapping, progress=TerminalProgress("scanning"), cancel=token)
        except UnknownClassFolderError as error:
            raise UsageError(str(error)) from None
        except Cancelled:
            log("stopped before training started; nothing was saved")
            return 130
        dataset = data.dataset
        if args.holdout > 0:
            train_idx, test_idx = block_split(dataset.labels, dataset.numbers, data.group_ids, args.holdout)
        else:
            train_idx, test_idx = np.arange(len(dataset)), np.zeros(0, dtype=int)
        log(
            f"{len(dataset)} images ({', '.join(f'{k} {v}' for k, v in dataset.counts().items())}); "
            f"training on {len(train_idx)}, holding out {len(test_idx)} later captures"
        )
        model = create(args.model, **options)
        cancelled = False
        try:
            summary = model.fit(
                [dataset.paths[i] for i in train_idx],
                dataset.labels[train_idx],
                groups=data.group_ids[train_idx],
                progress=TerminalProgress(f"training {args.model}"),
                cancel=token,
                log=log,
            )
        except Cancelled:
            cancelled = True
            summary = dict(getattr(model, "fit_summary", {}) or {}, cancelled=True)
    metrics: dict[str, Any] = {}
    if len(test_idx):
        try:
            images = [model.read(dataset.paths[i]) for i in test_idx]
            metrics = evaluate(dataset.labels[test_idx], model.predict_proba(images))
            metrics["evaluated_on"] = f"block hold-out: last {args.holdout:.0%} of captures per class"
        except RuntimeError:
            metrics = {}  # cancelled before any checkpoint: nothing to evaluate
    training = {
        "data_root": str(data_root.resolve()),
        "counts": dataset.counts(),
        "train_images": int(len(train_idx)),
        "holdout_images": int(len(test_idx)),
        "duplicate_groups": len(data.groups),
        "unreadable": len(data.unreadable),
        "cancelled": cancelled,
    }
    try:
        if args.out:
            save_model(model, Path(args.out), model_id=model_id, training=training, metrics=metrics, fit=summary)
            folder = Path(args.out)
        else:
            folder = ModelStore().save(model, model_id, training=training, metrics=metrics, fit=summary).folder
    except RuntimeError as error:
        log(f"stopped before the first checkpoint; nothing was saved ({error})")
        return 130
    except (ModelLoadError, ValueError, OSError) as error:  # e.g. a value loading would refuse, a full disk
        log(f"allgui train: the trained model could not be saved: {error}")
        return 1
    if metrics:
        log(
            f"held-out accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['f1_macro']:.3f}, "
            f"weighted F1 {metrics['f1_weighted']:.3f} on {metrics['n']} images"
        )
    print(f"{'stopped early; kept the best checkpoint as' if cancelled else 'saved'} model {model_id} in {folder}")
    return 130 if cancelled else 0
