"""Batch classification speed: `allgui classify` on a folder to CSV against single-core decode + resize.

Run: .venv/bin/python -m benchmarks.bench_classify [DATA_FOLDER] [--model DIR] [--plain N]

Uses the shipped default model (resources/models/secnn-default); without it, trains a stand-in SE-CNN with the
default recipe's architecture for a few epochs (its speed is the same; its accuracy is not the shipped one's).
Prints rates and their ratio measured in this one run (machines are noisy; compare only numbers from one run), then
checks that the fast path predicts what the plain ``model.predict_proba`` predicts on the same images.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from allgui.core.classes import CLASS_KEYS
from allgui.core.classify import parse_rows
from allgui.core.dataset import LabelledDataset
from allgui.core.imageio import read_rgb
from allgui.resources import shipped_models_dir

TARGET_RATIO = 0.45
TARGET_RATE = 500.0


def decode_resize_rate(files: list[Path], size: int) -> tuple[float, float]:
    """Images per second, and CPU ms per image, for read + full decode + bilinear resize to the input, one thread."""
    start, cpu = time.perf_counter(), time.process_time()
    for path in files:
        read_rgb(path).resize((size, size), 2)  # 2: PIL's BILINEAR, as the model prepares images
    return len(files) / (time.perf_counter() - start), (time.process_time() - cpu) / len(files) * 1000


def standin_model(data: Path, folder: Path) -> Path:
    """Train a small-budget SE-CNN with the default recipe's architecture (a few minutes on 2 cores)."""
    import torch

    from allgui.core.models import store
    from allgui.core.models.secnn import SECNNClassifier
    from training.recipe import RECIPE

    torch.set_num_threads(1)
    dataset = LabelledDataset.from_folder(data)
    rng = np.random.default_rng(0)
    chosen = [rng.choice(np.flatnonzero(dataset.labels == c), 150, replace=False) for c in range(4)]
    subset = dataset.subset(np.sort(np.concatenate(chosen)).tolist())
    model = SECNNClassifier(**{**RECIPE, "epochs": 4, "patience": 4})
    model.fit(subset.paths, subset.labels)
    torch.set_num_threads(os.cpu_count() or 1)
    store.save_model(model, folder, model_id="secnn-standin", title="stand-in SE-CNN (benchmark)")
    return folder


def run_cli(argv: list[str]) -> tuple[float, float]:
    """Wall and process CPU seconds for one in-process `allgui classify` run (its progress lines silenced)."""
    from allgui.cli.main import main

    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if code != 0:
        raise SystemExit(f"allgui classify exited with {code}")
    return elapsed, cpu


def read_csv(path: Path) -> dict[str, np.ndarray]:
    return {
        row["path"]: np.array([float(row[f"p_{key}"]) for key in CLASS_KEYS])
        for row in parse_rows(path.read_text(encoding="utf-8"))
        if not row["error"]
    }


def plain_rate(classifier, files: list[Path]) -> float:  # noqa: ANN001 - any Classifier
    """The plain path before the fast one: decode in a loop, ``predict`` on batches of 32, one thread of Python."""
    start = time.perf_counter()
    for offset in range(0, len(files), 32):
        classifier.predict([classifier.read(p) for p in files[offset : offset + 32]])
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    default = os.environ.get("ALLGUI_TEST_DATA", "../shared/data/taleqani-all")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=Path(default))
    parser.add_argument("--model", type=Path, default=shipped_models_dir() / "secnn-default")
    parser.add_argument("--plain", type=int, default=400, help="images for the plain-path rate (0: skip)")
    args = parser.parse_args()

    import torch

    from allgui.core.models.store import load_model

    dataset = LabelledDataset.from_folder(args.data)
    files = list(dataset.paths)
    work = Path(tempfile.mkdtemp(prefix="allgui-bench-"))
    model_dir = args.model
    if not (model_dir / "manifest.json").is_file():
        print(f"no model at {model_dir}: training a stand-in with the default recipe's architecture ...", flush=True)
        model_dir = standin_model(args.data, work / "standin")
    loaded = load_model(model_dir)
    size = loaded.classifier.image_size  # type: ignore[attr-defined]
    print(
        f"{len(files)} images in {args.data}; model {loaded.id} ({size} px); {os.cpu_count()} cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}"
    )

    out = work / "out.csv"
    argv = ["classify", str(args.data), "--model", str(model_dir), "--device", "cpu", "--out", str(out)]
    run_cli(argv[:1] + [str(files[0])] + argv[2:])  # warm: imports, thread pools, oneDNN kernels
    decode, decode_cpu = decode_resize_rate(files, size)
    seconds, cpu = run_cli(argv)
    decode_after, decode_cpu_after = decode_resize_rate(files, size)
    baseline = (decode + decode_after) / 2  # measured before and after, for a fairer share of the noise
    baseline_cpu = (decode_cpu + decode_cpu_after) / 2
    rate = len(files) / seconds
    cpu_ms = cpu / len(files) * 1000
    cores = os.cpu_count() or 1
    print(
        f"decode + resize (1 thread):             {baseline:7.0f} images/s  (before {decode:.0f}, after "
        f"{decode_after:.0f}); {baseline_cpu:.2f} CPU ms/image"
    )
    print(
        f"allgui classify folder -> CSV ({cores} cores): {rate:7.0f} images/s  -> ratio "
        f"{rate / baseline:.2f} (target >= {TARGET_RATIO}; >= {TARGET_RATE:.0f} images/s: "
        f"{'met' if rate >= TARGET_RATE else 'not met'}); {cpu_ms:.2f} CPU ms/image"
    )
    # On a busy machine each thread gets a share of a core; CPU time per image is what the work itself costs.
    print(
        f"CPU-time bound: with {cores} free cores at most {cores * baseline_cpu / cpu_ms:.2f} of the decode rate "
        f"(CPU per image {cpu_ms / baseline_cpu:.1f}x decode + resize); load average now {os.getloadavg()[0]:.1f}"
    )
    if args.plain:
        sample = files[:: max(1, len(files) // args.plain)][: args.plain]
        plain = plain_rate(loaded.classifier, sample)
        print(
            f"plain path (decode loop + predict):     {plain:7.0f} images/s  -> ratio {plain / baseline:.2f}; "
            f"fast path is x{rate / plain:.1f}"
        )

    # Same images through the plain model.predict_proba: the fast path must not change predictions.
    fast = read_csv(out)
    start = time.perf_counter()
    model = loaded.classifier
    plain_p = np.concatenate(
        [model.predict_proba([model.read(p) for p in files[i : i + 64]]) for i in range(0, len(files), 64)]
    )
    plain_seconds = time.perf_counter() - start
    fast_p = np.stack([fast[str(p)] for p in files])
    truth = dataset.labels
    from allgui.core.inference import default_precision

    print(
        f"\nagreement on {len(files)} images, fast path in {default_precision()} against the plain float32 path "
        f"(plain predict_proba took {plain_seconds:.1f} s):"
    )
    print(f"  max |p_fast - p_plain| = {np.abs(fast_p - plain_p).max():.2e} (CSV keeps 6 decimals)")
    print(f"  same predicted class:    {(fast_p.argmax(1) == plain_p.argmax(1)).mean() * 100:.2f}%")
    print(
        f"  accuracy against folder labels: fast {(fast_p.argmax(1) == truth).mean() * 100:.2f}%, "
        f"plain {(plain_p.argmax(1) == truth).mean() * 100:.2f}% (the shipped model saw these images in training)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
