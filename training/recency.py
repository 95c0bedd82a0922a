"""How SE-CNNs do on the latest captures: the last part of each class by capture number, duplicate groups whole.

Run: python -m training.recency NAME=MODEL_DIR [NAME=MODEL_DIR ...] [--fraction 0.075] [--what TEXT] [--out FILE]

NAME says what each model was trained on (for example "first 85% (held-out sibling)"). Writes the figures the
model card's recipe-search section shows, and the images every model gets wrong.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from allgui.core.models.store import load_model
from training import harness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=harness.named_model, help="NAME=MODEL_DIR")
    harness.add_data_argument(parser)
    parser.add_argument("--fraction", type=float, default=0.075)
    parser.add_argument("--what", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    split = harness.held_out(args.data, args.fraction)
    test, truth, names = split.test, split.truth, split.names
    models, wrong_sets = [], []
    for name, folder in args.models:
        classifier = load_model(folder).classifier
        predictions = classifier.predict([classifier.read(path) for path in split.paths])
        predicted = np.array([p.predicted for p in predictions])
        flagged = np.array([p.needs_review for p in predictions])
        wrong = predicted != truth
        wrong_sets.append({names[i] for i in np.flatnonzero(wrong)})
        models.append(
            {
                "trained_on": name,
                "accuracy": round(float((~wrong).mean()), 4),
                "benign_recall": round(float((predicted[truth == 0] == 0).mean()), 4),
                "errors": int(wrong.sum()),
                "errors_flagged": int((wrong & flagged).sum()),
                "flagged_rate": round(float(flagged.mean()), 3),
            }
        )
        print(json.dumps(models[-1]), flush=True)
    document = {
        "what": f"the last {args.fraction:.1%} of each class by capture number ({len(test)} images, "
        f"{int((truth == 0).sum())} Benign; duplicate groups whole), classified by {args.what}",
        "date": time.strftime("%Y-%m-%d"),
        "commands": ["python -m training.recency " + shlex.join(sys.argv[1:] if argv is None else argv)],
        "models": models,
        "wrong_in_all": sorted(set.intersection(*wrong_sets)),
    }
    args.out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
