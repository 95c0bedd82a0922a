"""What a milder change of stain or illumination in a later session does: accuracy and needs_review under drift.

Run: python -m training.stain_drift NAME=MODEL_DIR [NAME=MODEL_DIR ...] [--data DIR] [--out FILE]

Each MODEL_DIR is an SE-CNN trained on the first 85% of each class (``python -m training.train_default`` or
``training.evaluate_recipe``). Each simulated session applies one drift to every held-out image (last 15% of each
class, duplicate groups whole): a stain drift scales each channel's optical density (how much dye absorbs), an
illumination drift scales each channel's brightness (lamp and white balance). Per strength, several random
directions; the figures are their averages, and the worst direction's accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from training import harness, record
from training.precision_check import figures, load

STRENGTHS = (0.0, 0.1, 0.2, 0.3, 0.5)
DIRECTIONS = 6


def stain_drift(pixels: np.ndarray, factors: np.ndarray) -> np.ndarray:
    od = -np.log((pixels + 1.0) / 256.0)
    return 256.0 * np.exp(-od * factors) - 1.0


def illumination_drift(pixels: np.ndarray, factors: np.ndarray) -> np.ndarray:
    return pixels * factors


DRIFTS = {
    "stain (optical density per channel)": stain_drift,
    "illumination (brightness per channel)": illumination_drift,
}


def drifted(images: list[np.ndarray], drift, factors: np.ndarray) -> list[Image.Image]:
    # rounded, not truncated: an undrifted image must come back unchanged
    return [Image.fromarray(np.clip(np.rint(drift(p, factors)), 0, 255).astype(np.uint8), "RGB") for p in images]


def measure(model, images: list[np.ndarray], truth: np.ndarray) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)  # the same sessions for every model
    rows: list[dict[str, Any]] = []
    for kind, drift in DRIFTS.items():
        for strength in STRENGTHS:
            runs = []
            for _ in range(DIRECTIONS if strength else 1):
                # each channel up or down by the strength, in a random mix (one direction = one session)
                factors = 1.0 + strength * rng.uniform(-1.0, 1.0, 3)
                predictions = model.predict(drifted(images, drift, factors))
                probabilities = np.stack([p.probabilities for p in predictions])
                runs.append(figures(truth, probabilities, np.array([p.needs_review for p in predictions])))
            row = {"drift": kind, "strength": strength, "sessions": len(runs)}
            for key in ("accuracy", "benign_recall", "flagged_rate", "misclassified", "misclassified_flagged"):
                row[key] = round(float(np.mean([run[key] for run in runs])), 4)
            row["worst_accuracy"] = min(run["accuracy"] for run in runs)
            row["errors_unflagged"] = int(sum(run["misclassified"] - run["misclassified_flagged"] for run in runs))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=harness.named_model, help="NAME=MODEL_DIR")
    harness.add_data_argument(parser)
    parser.add_argument("--out", type=Path, default=Path("training/results/stain-drift.json"))
    args = parser.parse_args(argv)
    split = harness.held_out(args.data)
    models = []
    for name, folder in args.models:
        model = load(folder)
        images = [np.asarray(model.read(path), dtype=np.float64) for path in split.paths]
        models.append({"model": name, "rows": measure(model, images, split.truth)})
    record.write(
        args.out,
        {
            **record.stamp("training.stain_drift", argv),
            "heldout": split.describe(),
            "models": models,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
