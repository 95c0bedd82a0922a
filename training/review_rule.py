"""Which review rule sends the errors on later capture blocks to a person: low confidence alone, or with a Benign alert.

Run: python -m training.review_rule NAME=MODEL_DIR [NAME=MODEL_DIR ...] [--designed-on NAME ...] [--out FILE]

Each MODEL_DIR is an SE-CNN trained on the first 85% of each class (what ``training.evaluate_recipe`` saves). As in
training, each rule's thresholds are fitted on the model's own validation part (the last blocks of that 85%, duplicate
groups whole); the figures are on the held-out last 15%. The OOD check (score above 1) is the same in every rule.
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
from training.precision_check import load

# (name, share of validation images below the confidence minimum, share of validation malignant calls alerted)
RULES = (
    ("confidence 3%", 0.03, 0.0),
    ("confidence 1% + Benign alert 2% (shipped)", DEFAULTS["review_budget"], DEFAULTS["benign_alert_budget"]),
)


def outputs(folder: Path, data, groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Calibrated probabilities and OOD scores on the model's validation part and on the held-out blocks."""
    model = load(folder)
    _, val_positions = model._validation_split(data.labels[train], groups[train])
    parts: dict[str, Any] = {"validation_indices": train[val_positions]}
    for name, indices in (("validation", train[val_positions]), ("heldout", test)):
        images = [model.read(data.paths[i]) for i in indices]
        parts[name] = (model.predict_proba(images), model.ood_scores(images))
    return parts


def compare(folder: Path, data, groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    parts = outputs(folder, data, groups, train, test)
    probabilities, ood = parts["heldout"]
    truth = data.labels[test]
    wrong = probabilities.argmax(1) != truth
    result: dict[str, Any] = {
        "accuracy": round(float((~wrong).mean()), 4),
        "benign_recall": round(float((probabilities.argmax(1)[truth == 0] == 0).mean()), 4),
        "misclassified": int(wrong.sum()),
        "rules": {},
    }
    for rule, confidence_budget, alert_budget in RULES:
        policy = calibration.review_policy(parts["validation"][0], confidence_budget, alert_budget)
        flagged = policy.flags(probabilities, ood)
        result["rules"][rule] = {
            "policy": policy.to_dict(),
            "validation_flagged_rate": round(float(policy.flags(*parts["validation"]).mean()), 4),
            "flagged_rate": round(float(flagged.mean()), 4),
            "misclassified_flagged": int((wrong & flagged).sum()),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=harness.named_model, help="NAME=MODEL_DIR")
    harness.add_data_argument(parser)
    parser.add_argument("--out", type=Path, default=Path("training/results/review-rule.json"))
    parser.add_argument("--designed-on", nargs="*", default=[], help="NAMEs of the models the rule was designed on")
    args = parser.parse_args(argv)
    split = harness.held_out(args.data)
    models = []
    for name, folder in args.models:
        models.append({"model": name, **compare(folder, split.data, split.prepared.group_ids, split.train, split.test)})
        print(json.dumps(models[-1]), flush=True)
    record.write(
        args.out,
        {
            **record.stamp("training.review_rule", argv),
            "heldout": split.describe(),
            "designed_on": args.designed_on,
            "models": models,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
