"""Train the shipped classical models (svm, rf, cnn-hash-svm) on all of the data into resources/models/<id>/.

    python -m training.train_classical [--data DIR] [--comparison runs/compare-full/results.json] [--kinds ...]

Each model uses the configuration of its row in the comparison (:mod:`allgui.core.experiments`), and its manifest's
metrics are that row's held-out figures from ``--comparison`` (a model trained on the first 85% of each class's
captures and tested on the last 15%): the shipped model itself saw every image, so it has no honest test set here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from allgui.core.experiments import EXPERIMENTS, SPLIT_LABELS
from allgui.core.models import store
from allgui.core.models.run_record import RunRecord, TrainingInfo
from allgui.core.training_run import TrainingRequest, run_training
from allgui.resources import shipped_models_dir
from training import harness

SHIPPED = {"svm": "svm-taleqani", "rf": "rf-taleqani", "cnn-hash-svm": "cnn-hash-svm-taleqani"}
SIZE_LIMIT = 50 * 1024 * 1024  # all shipped weights together
# Shipped settings that differ from the comparison's (a 200-tree forest of small leaves is ~50 MB): such a model is
# measured here on the same held-out block before it is trained on everything.
SHIPPED_OPTIONS: dict[str, dict[str, Any]] = {"rf": {"n_estimators": 100, "min_samples_leaf": 10}}


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_data_argument(parser)
    parser.add_argument("--comparison", type=Path, default=Path("runs/compare-full/results.json"))
    parser.add_argument("--kinds", nargs="+", choices=list(SHIPPED), default=list(SHIPPED))
    parser.add_argument("--out", type=Path, default=shipped_models_dir())
    args = parser.parse_args(argv)
    log = harness.log

    comparison = json.loads(args.comparison.read_text()) if args.comparison.is_file() else None
    rows = {r["name"]: r for r in (comparison or {}).get("experiments", [])}
    specs = {spec.name: spec for spec in EXPERIMENTS}
    for kind in args.kinds:
        spec = specs[kind]
        options = {**spec.options, **SHIPPED_OPTIONS.get(kind, {})}
        row = rows.get(kind, {})
        held_out: dict[str, Any] = {}
        if kind in SHIPPED_OPTIONS:
            probe = run_training(TrainingRequest(kind, args.data, options), log=log)
            held_out = {**probe.metrics, "evaluated_on": SPLIT_LABELS["blocks"]}
            log(f"{kind}: shipped settings {options}: held-out accuracy {held_out['accuracy']:.3f}")
        elif "metrics" in row:
            held_out = {
                **row["metrics"],
                "evaluated_on": f"held-out later capture blocks ({comparison['split']['label']}); same configuration "
                "trained on the other images; see docs/comparison.md",
            }
        run = run_training(TrainingRequest(kind, args.data, options, held_out_fraction=0.0), log=log)
        log(f"{kind}: trained in {run.fit_seconds:.0f} s")
        training = TrainingInfo(
            data=args.data.name,
            counts=run.record.training.counts,
            train_images=run.record.training.train_images,
            held_out_fraction=0.0,
            duplicate_groups=run.record.training.duplicate_groups,
            unreadable=run.record.training.unreadable,
            note="trained on all images; metrics are from the comparison's held-out block",
        )
        folder = args.out / SHIPPED[kind]
        store.save_model(
            run.classifier,
            folder,
            model_id=SHIPPED[kind],
            record=RunRecord(training, held_out),
            fit=run.summary,
            extra={"reproduce": f"python -m training.train_classical --kinds {kind}"},
        )
        log(f"{kind}: wrote {folder} ({folder_size(folder) / 1e6:.1f} MB)")
    total = sum(folder_size(p) for p in args.out.iterdir() if p.is_dir())
    log(f"all shipped models: {total / 1e6:.1f} MB")
    if total > SIZE_LIMIT:
        log(f"warning: shipped models exceed {SIZE_LIMIT / 1e6:.0f} MB")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
