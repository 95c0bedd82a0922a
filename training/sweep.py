"""Train several SE-CNN recipes side by side on the held-out split and check each on the later capture blocks.

Made for a machine with a GPU and many cores (each recipe is one process with one CPU thread for its
augmentation), and runnable anywhere:

    python -m training.sweep --write-split split.json           # here: scan, hash and split once (needs imagehash)
    python -m training.sweep --split split.json --data DIR --out runs --deadline 420 [--solo NAME]

``--solo NAME`` first trains that recipe alone and times it (the GPU training time of performance.md), then the
others in parallel. A recipe still training at the deadline is cancelled and keeps its best checkpoint so far
(its result says so). Each run writes ``runs/NAME/result.json`` (held-out figures as on the model card), the
model files (``SECNNClassifier.load_files`` reads them, with ``review.json`` as the manifest's review policy) and
its log.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

# Candidates: options over the current recipe. "s" = first convolution with stride 2.
CANDIDATES: dict[str, dict[str, Any]] = {
    "base96-s0": {},
    "s128-s0": {"image_size": 128, "stem_stride": 2},
    "s128-s1": {"image_size": 128, "stem_stride": 2, "seed": 1},
    "s128-s2": {"image_size": 128, "stem_stride": 2, "seed": 2},
    "s160-s0": {"image_size": 160, "stem_stride": 2},
    "s160-s1": {"image_size": 160, "stem_stride": 2, "seed": 1},
    "w24s128-s0": {"image_size": 128, "stem_stride": 2, "width": 24},
    "w24s128-s1": {"image_size": 128, "stem_stride": 2, "width": 24, "seed": 1},
    "c2s128-s0": {"image_size": 128, "stem_stride": 2, "convs_per_block": 2},
    "fixed-s128-s0": {"image_size": 128, "stem_stride": 2, "normalise": "fixed"},
    "e50-s128-s0": {"image_size": 128, "stem_stride": 2, "epochs": 50, "patience": 12},
    "ls-s128-s0": {"image_size": 128, "stem_stride": 2, "label_smoothing": 0.1},
    "big128-s0": {"image_size": 128, "width": 32, "convs_per_block": 2},
    # colour kept: fixed normalisation, no grey-scale or stain augmentation (the "plain" SE-CNNs)
    "plain96-s0": {
        "normalise": "fixed",
        "grey_prob": 0.0,
        "stain_jitter": 0.0,
        "colour_jitter": 0.1,
        "hue_jitter": 0.0,
    },
}


def write_split(data: Path, out: Path) -> None:
    from training import harness

    split = harness.held_out(data)
    dataset = split.data
    out.write_text(
        json.dumps(
            {
                "paths": [str(Path(p).relative_to(data)) for p in dataset.paths],
                "labels": [int(v) for v in dataset.labels],
                "groups": [int(v) for v in split.prepared.group_ids],
                "train": [int(i) for i in split.train],
                "test": [int(i) for i in split.test],
            }
        ),
        encoding="utf-8",
    )


def run_one(
    name: str, options: dict[str, Any], split: dict[str, Any], data: Path, out: Path, seconds: float, workers: int
) -> None:
    import torch

    from allgui.core.imageio import read_rgb
    from allgui.core.models.secnn import SECNNClassifier
    from allgui.core.progress import Cancelled, CancelToken
    from training.heldout import evaluate_model
    from training.recipe import RECIPE

    torch.set_num_threads(1)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = [data / p for p in split["paths"]]
    labels = np.array(split["labels"])
    groups = np.array(split["groups"])
    train, test = np.array(split["train"]), np.array(split["test"])
    options = {**RECIPE, **options, **({"loader_workers": workers} if workers else {})}
    model = SECNNClassifier(**options)
    cancel = CancelToken()
    timer = threading.Timer(seconds, cancel.cancel)
    timer.start()
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(f"[{time.strftime('%H:%M:%S')}] {line}")

    started = time.perf_counter()
    try:
        summary = model.fit([paths[i] for i in train], labels[train], groups=groups[train], cancel=cancel, log=log)
        cut = False
    except Cancelled:
        summary, cut = dict(model.fit_summary), True
    timer.cancel()
    fit_seconds = round(time.perf_counter() - started, 1)
    images = [read_rgb(paths[i]) for i in test]
    reference = [read_rgb(paths[i]) for i in train[:: max(1, len(train) // 300)]]
    result = {
        "name": name,
        "options": options,
        "cut_at_deadline": cut,
        "fit_seconds": fit_seconds,
        "device": model.device_name,
        "fit": {k: v for k, v in summary.items() if k != "options"},
        **evaluate_model(model, images, labels[test], reference, log),
    }
    model.save_files(folder)
    (folder / "review.json").write_text(json.dumps(model.review.to_dict()), encoding="utf-8")
    (folder / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (folder / "log.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-split", type=Path)
    parser.add_argument("--split", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs"))
    parser.add_argument("--deadline", type=float, default=420.0, help="seconds from start for all training")
    parser.add_argument("--solo", help="train this candidate alone first (its time is the GPU figure)")
    parser.add_argument("--only", nargs="*", help="candidates to run (default: all)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help="augmentation worker processes of the solo run")
    args = parser.parse_args(argv)
    if args.write_split:
        write_split(args.data, args.write_split)
        return 0
    split = json.loads(args.split.read_text(encoding="utf-8"))
    if args.one:
        run_one(args.one, CANDIDATES[args.one], split, args.data, args.out, args.seconds, args.workers)
        return 0

    start = time.perf_counter()
    names = args.only or list(CANDIDATES)
    common = [sys.executable, "-m", "training.sweep", "--split", str(args.split), "--data", str(args.data)]
    common += ["--out", str(args.out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def launch(name: str, seconds: float, workers: int = 0) -> subprocess.Popen:
        print(f"[{time.perf_counter() - start:6.1f} s] start {name} (budget {seconds:.0f} s)", flush=True)
        command = [*common, "--one", name, "--seconds", str(seconds), "--workers", str(workers)]
        return subprocess.Popen(command, env=env)

    if args.solo:
        names = [n for n in names if n != args.solo]
        code = launch(args.solo, args.deadline / 2 if names else args.deadline, args.workers).wait()
        print(f"[{time.perf_counter() - start:6.1f} s] solo {args.solo} exit {code}", flush=True)
    remaining = max(30.0, args.deadline - (time.perf_counter() - start))
    running = {name: launch(name, remaining) for name in names} if names else {}
    for name, process in running.items():
        code = process.wait()
        print(f"[{time.perf_counter() - start:6.1f} s] {name} exit {code}", flush=True)
    for name in [args.solo, *names] if args.solo else names:
        path = args.out / name / "result.json"
        if path.is_file():
            r = json.loads(path.read_text(encoding="utf-8"))
            h = r["heldout"]
            print(
                f"{name:16s} acc {h['accuracy']:.4f} F1 {h['f1_macro']:.4f} "
                f"Benign {h['per_class_recall']['Benign']:.3f} ECE {h['ece']:.3f} "
                f"flag {r['review']['flagged_rate']:.3f} err {r['review']['misclassified']} "
                f"errflag {r['review']['misclassified_flagged']} foreign {r['foreign']['flagged_rate']:.3f} "
                f"grey {r['shortcut_tests']['greyscale']['accuracy']:.3f} fit {r['fit_seconds']} s "
                f"epochs {r['fit'].get('epochs_run')} cut {r['cut_at_deadline']}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
