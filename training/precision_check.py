"""Does bfloat16 inference keep an SE-CNN's held-out figures? float32 against bfloat16 on the same images.

Run: python -m training.precision_check MODEL_DIR [MODEL_DIR ...] [--data DIR] [--out FILE]

Each model runs through the torch engine's fast CPU path (allgui.core.inference) twice, in float32 and in bfloat16,
and through ONNX Runtime (the default engine, float32), on the later
capture blocks that ``training.evaluate_recipe`` holds out (last 15% of each class, duplicate groups whole). For
a model trained on the other 85% (what ``evaluate_recipe`` and ``sweep`` save) these are its held-out figures; for
the shipped model, which saw every image, only the agreement lines mean anything. Needs a CPU with bfloat16 units.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from allgui.core import metrics
from allgui.core.inference import PRECISIONS, bfloat16_supported
from allgui.core.models.secnn import SECNNClassifier
from allgui.core.models.store import MANIFEST, load_model
from training import harness, record


def load(folder: Path) -> SECNNClassifier:
    """A model folder, or a ``training.sweep`` run (model files with ``review.json`` as its review policy)."""
    if (folder / MANIFEST).exists():
        classifier = load_model(folder).classifier
        assert isinstance(classifier, SECNNClassifier), f"{folder} is not an SE-CNN"
        return classifier
    return SECNNClassifier.load_files(folder, {"review": json.loads((folder / "review.json").read_text())})


def figures(truth: np.ndarray, probabilities: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    predicted = probabilities.argmax(1)
    wrong = predicted != truth
    return {
        "accuracy": round(float((~wrong).mean()), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=[0, 1, 2, 3], average="macro")), 4),
        "benign_recall": round(float((predicted[truth == 0] == 0).mean()), 4),
        "ece": round(float(metrics.expected_calibration_error(truth, probabilities)), 4),
        "flagged_rate": round(float(flagged.mean()), 4),
        "misclassified": int(wrong.sum()),
        "misclassified_flagged": int((wrong & flagged).sum()),
    }


def compare(folder: Path, paths: list[Path], truth: np.ndarray) -> dict[str, Any]:
    model = load(folder)
    images = [model.read(path) for path in paths]
    runs = {}
    for engine, precision in [("onnx", "float32"), *(("torch", precision) for precision in PRECISIONS)]:
        os.environ["ALLGUI_INFERENCE_PRECISION"] = precision  # read as the torch engine is made
        model.set_engine(engine)
        predictions = model.predict(images)
        runs[engine if engine == "onnx" else precision] = (
            np.stack([p.probabilities for p in predictions]),
            np.array([p.needs_review for p in predictions]),
        )
    os.environ.pop("ALLGUI_INFERENCE_PRECISION")
    (p32, f32), (p16, f16), (onnx, onnx_flags) = runs["float32"], runs["bfloat16"], runs["onnx"]
    return {
        "model": str(folder),
        "onnx": figures(truth, onnx, onnx_flags),
        "onnx_max_abs_probability_change_from_float32": round(float(np.abs(p32 - onnx).max()), 7),
        "float32": figures(truth, p32, f32),
        "bfloat16": figures(truth, p16, f16),
        "max_abs_probability_change": round(float(np.abs(p32 - p16).max()), 5),
        "same_class": int((p32.argmax(1) == p16.argmax(1)).sum()),
        "same_review_flag": int((f32 == f16).sum()),
        "images": len(truth),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    harness.add_data_argument(parser)
    parser.add_argument("--out", type=Path, default=Path("training/results/precision.json"))
    args = parser.parse_args(argv)
    if not bfloat16_supported():
        print("this CPU has no bfloat16 units: the fast path stays in float32 here, nothing to check")
        return 2
    split = harness.held_out(args.data)
    results = []
    for folder in args.models:
        result = compare(folder, split.paths, split.truth)
        results.append(result)
        print(json.dumps(result))
    record.write(
        args.out,
        {
            **record.stamp("training.precision_check", argv),
            "heldout": split.describe(),
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
