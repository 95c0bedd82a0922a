"""Train the shipped default SE-CNN on all of the data and write it, with its model card, as a model folder.

    python -m training.train_default [--data DIR] [--out DIR] [--heldout FILE]

The recipe is :data:`training.recipe.RECIPE`, chosen on held-out capture blocks by ``training.evaluate_recipe``;
``--heldout`` is that run's JSON, whose figures go into the manifest's metrics and the model card (the card's
figures come from held-out blocks, never from the data the shipped model saw).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from allgui.core.dataset import load_labelled
from allgui.core.models import store
from allgui.core.models.secnn import SECNNClassifier
from allgui.resources import shipped_models_dir
from training.model_card import write_card
from training.recipe import DATA_DEFAULT, RECIPE

MODEL_ID = "secnn-default"
HELDOUT_DEFAULT = Path(__file__).resolve().parent / "results" / "heldout.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("ALLGUI_TEST_DATA", DATA_DEFAULT)))
    parser.add_argument("--out", type=Path, default=shipped_models_dir() / MODEL_ID)
    parser.add_argument("--heldout", type=Path, default=HELDOUT_DEFAULT)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, int(RECIPE.get("threads") or 1)))

    def log(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    prepared = load_labelled(args.data)
    data = prepared.dataset
    log(f"training on all {len(data)} images of {args.data} ({len(prepared.groups)} duplicate groups); recipe {RECIPE}")
    model = SECNNClassifier(**RECIPE)
    summary = model.fit(data.paths, data.labels, groups=prepared.group_ids, log=log)
    heldout = json.loads(args.heldout.read_text(encoding="utf-8")) if args.heldout.is_file() else None
    if heldout is None:
        log(f"warning: no held-out results at {args.heldout}; the manifest and card will lack held-out figures")
    training = {
        "data": args.data.name,
        "images": len(data),
        "per_class": data.counts(),
        "duplicate_groups": len(prepared.groups),
        "unreadable": len(prepared.unreadable),
        "validation": "last 15% of each class by capture number, duplicate groups whole (early stopping, "
        "temperature, OOD thresholds)",
    }
    metrics = {}
    if heldout is not None:
        metrics = {
            "evaluation": "held-out later capture blocks (model trained on the other 85% with this recipe)",
            "heldout": {k: v for k, v in heldout["heldout"].items() if k != "confusion_matrix"},
            "confusion_matrix": heldout["heldout"]["confusion_matrix"],
            "review": heldout["review"],
            "foreign": heldout["foreign"],
            "shortcut_tests": heldout["shortcut_tests"],
            "colour_baseline": heldout.get("colour_baseline"),
        }
    fit = {k: v for k, v in summary.items() if k != "options"}
    store.save_model(
        model,
        args.out,
        model_id=MODEL_ID,
        title="SE-CNN (shipped default)",
        training=training,
        metrics=metrics,
        fit=fit,
        extra={"default": True, "recipe": RECIPE, "reproduce": "python -m training.train_default"},
    )
    write_card(args.out, heldout)
    log(f"wrote {args.out} in {summary['fit_seconds']:.0f} s of training")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
