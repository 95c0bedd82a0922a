"""Does averaging several seeds of the recipe help on later capture blocks? Each model alone against their ensemble.

Run: python -m training.ensemble_check NAME=MODEL_DIR [NAME=MODEL_DIR ...] [--out FILE]

Each MODEL_DIR is an SE-CNN trained on the first 85% of each class with the same validation part (what
``training.evaluate_recipe`` saves; the last blocks of that 85% do not depend on the seed). The ensemble averages the
members' calibrated probabilities; its review thresholds are fitted on the averaged validation probabilities with the
shipped budgets, and an image is unlike the training images when any member says so. Figures on the held-out 15%.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from allgui.core.dataset import load_labelled
from allgui.core.models import calibration
from allgui.core.models.secnn import DEFAULTS
from allgui.core.splits import block_split
from training import record
from training.precision_check import figures
from training.recipe import DATA_DEFAULT
from training.review_rule import outputs


def measure(members: list[dict[str, Any]], truth: np.ndarray, names: list[str]) -> dict[str, Any]:
    validation = np.mean([m["validation"][0] for m in members], axis=0)
    probabilities = np.mean([m["heldout"][0] for m in members], axis=0)
    ood = np.max([m["heldout"][1] for m in members], axis=0)
    policy = calibration.review_policy(validation, DEFAULTS["review_budget"], DEFAULTS["benign_alert_budget"])
    result = figures(truth, probabilities, policy.flags(probabilities, ood))
    wrong = np.flatnonzero(probabilities.argmax(1) != truth)
    return {**result, "policy": policy.to_dict(), "wrong": [names[i] for i in wrong]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="NAME=MODEL_DIR")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("ALLGUI_TEST_DATA", DATA_DEFAULT)))
    parser.add_argument("--out", type=Path, default=Path("training/results/ensemble.json"))
    args = parser.parse_args(argv)
    prepared = load_labelled(args.data)
    data = prepared.dataset
    train, test = block_split(data.labels, data.numbers, prepared.group_ids, 0.15)
    truth = data.labels[test]
    names = [data.paths[i].name for i in test]
    members, rows = [], []
    for entry in args.models:
        name, _, folder = entry.partition("=")
        members.append(outputs(Path(folder), data, prepared.group_ids, train, test))
        if not np.array_equal(members[-1]["validation_indices"], members[0]["validation_indices"]):
            raise SystemExit(f"{name} has another validation part than the first model")
        rows.append({"model": name, **measure(members[-1:], truth, names)})
        print(json.dumps(rows[-1]), flush=True)
    rows.append({"model": f"average of the {len(members)}", **measure(members, truth, names)})
    print(json.dumps(rows[-1]), flush=True)
    record.write(
        args.out,
        {
            **record.stamp("training.ensemble_check", argv),
            "heldout": f"last 15% of each class by capture number ({len(test)} images), duplicate groups whole",
            "models": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
