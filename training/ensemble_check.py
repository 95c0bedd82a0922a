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
from pathlib import Path
from typing import Any

import numpy as np

from allgui.core.models import calibration
from allgui.core.models.secnn import DEFAULTS
from training import harness, record
from training.precision_check import figures
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
    parser.add_argument("models", nargs="+", type=harness.named_model, help="NAME=MODEL_DIR")
    harness.add_data_argument(parser)
    parser.add_argument("--out", type=Path, default=Path("training/results/ensemble.json"))
    args = parser.parse_args(argv)
    split = harness.held_out(args.data)
    truth, names = split.truth, split.names
    members, rows = [], []
    for name, folder in args.models:
        members.append(outputs(folder, split.data, split.prepared.group_ids, split.train, split.test))
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
            "heldout": split.describe(),
            "models": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
