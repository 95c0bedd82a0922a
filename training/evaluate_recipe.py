"""Choose and check the SE-CNN recipe on later capture blocks held out from training.

    python -m training.evaluate_recipe [--data DIR] [--options JSON] [--name NAME] [--out DIR]

Per class, the last 15% of images by capture number are held out (duplicate groups kept whole); the model trains
on the rest (its own validation part is again the last blocks of that) and is measured on the held-out blocks:
metrics with 95% CIs, calibration, needs_review rates, shortcut tests beside a colour-only baseline, and
needs_review on generated non-smear images. Writes ``<out>/<name>.json`` and the model folder ``<out>/<name>/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from allgui.core.training_run import TrainingRequest, run_training, save_result
from training import harness, record
from training.heldout import evaluate_model, greyscale
from training.recipe import RECIPE


def colour_baseline(train_paths, train_labels, test_paths, truth) -> dict:
    from allgui.core.models.classical import ColorBaselineClassifier

    baseline = ColorBaselineClassifier()
    baseline.fit(train_paths, train_labels)
    images = [baseline.read(path) for path in test_paths]
    result = {}
    for name, batch in (("as is", images), ("greyscale", [greyscale(im) for im in images])):
        predicted = baseline.predict_proba(batch).argmax(1)
        result[name] = {
            "accuracy": round(float((predicted == truth).mean()), 4),
            "benign_recall": round(float((predicted[truth == 0] == 0).mean()), 4),
        }
    return result


def heldout_figures(model, data, train, test, log, baseline: bool = True) -> dict:
    """``evaluate_model`` on the held-out images ``test`` (reference stain statistics from ``train``), each read as
    the model reads files, and with ``baseline`` the colour-only baseline's figures on the same split."""
    images = [model.read(data.paths[i]) for i in test]
    truth = data.labels[test]
    reference = [model.read(data.paths[i]) for i in train[:: max(1, len(train) // 300)]]
    result = evaluate_model(model, images, truth, reference, log)
    if baseline:
        train_paths, test_paths = [data.paths[i] for i in train], [data.paths[i] for i in test]
        result["colour_baseline"] = colour_baseline(train_paths, data.labels[train], test_paths, truth)
        log(f"colour-only baseline: {result['colour_baseline']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_data_argument(parser)
    parser.add_argument("--options", default="{}", help="JSON object of SE-CNN options overriding the recipe")
    parser.add_argument("--name", default="heldout")
    parser.add_argument("--out", type=Path, default=Path("training/results"))
    parser.add_argument("--test-fraction", type=float, default=harness.HELD_OUT_FRACTION)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    options = {**RECIPE, **json.loads(args.options)}
    torch.set_num_threads(max(1, int(options.get("threads") or 1)))

    log = harness.log
    log(f"SE-CNN options {options}; last {args.test_fraction:.0%} of each class held out, duplicate groups whole")
    run = run_training(TrainingRequest("secnn", args.data, options, held_out_fraction=args.test_fraction), log=log)
    data, train, test = run.data.dataset, run.train_indices, run.held_out_indices
    truth = data.labels[test]
    result = {
        "name": args.name,
        **record.stamp("training.evaluate_recipe", argv),
        "split": {
            "kind": "blocks",
            "test_fraction": args.test_fraction,
            "train": len(train),
            "heldout": len(test),
            "heldout_per_class": {int(k): int(v) for k, v in zip(*np.unique(truth, return_counts=True), strict=True)},
        },
        "fit": {k: v for k, v in run.summary.items() if k != "options"},
        "options": options,
        **heldout_figures(run.classifier, data, train, test, log, baseline=not args.no_baseline),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    record.write(args.out / f"{args.name}.json", result)
    run.summary = result["fit"]
    save_result(run, f"secnn-{args.name}", folder=args.out / args.name)
    log(f"wrote {args.out / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
