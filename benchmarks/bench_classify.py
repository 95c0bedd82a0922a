"""Batch classification speed: `allgui classify` folder -> CSV per engine, against single-thread decode + resize.

Run: .venv/bin/python -m benchmarks.bench_classify [DATA_FOLDER] [--model DIR] [--limit N] [--rounds 3]
     [--no-float32] [--startup-runs 3]

In one run: the baseline (one thread reading, fully decoding and bilinearly resizing each image to the model's input,
as issue 8 defines it) and `allgui classify DATA --model DIR --device cpu --out FILE.csv --engine E` end to end for
E = onnx, torch (at its default precision: bfloat16 on CPUs with bfloat16 units) and torch with
``ALLGUI_INFERENCE_PRECISION=float32``. Each classify run is a fresh process that imports only what that command
imports (the ONNX engine never imports torch), classifies one image untimed (imports, thread pools, kernels), then
times the whole folder in-process. Configurations take turns, in reverse order in every other round, with the
baseline measured between every two runs; a configuration's rate is all its images over all its seconds, its ratio
that rate over the mean of the baselines next to its runs. Machines are noisy: compare only numbers from one run,
and read the load average printed next to them.

Then the CSVs are compared (max |p| difference, same class, same review flag; the ONNX graph is the float32 network
as trained, so ONNX against torch float32 is the exactness check and against bfloat16 the precision change), and
`benchmarks.bench_startup` measures start-up (``--startup-runs 0`` skips it).

Uses the shipped default model (resources/models/secnn-default); without it, trains a stand-in SE-CNN with the
default recipe's architecture for a few epochs (its speed is the same; its accuracy is not the shipped one's).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from allgui.core.classes import CLASS_KEYS
from allgui.core.dataset import LabelledDataset
from allgui.core.export import parse_rows
from allgui.core.imageio import read_rgb
from allgui.resources import shipped_models_dir

TARGET_RATIO = 0.45
TARGET_RATE = 500.0
ROOT = Path(__file__).resolve().parent.parent
RESULT = "BENCH-RESULT "  # the worker's last stdout line: this, then its JSON


@dataclass
class Config:
    name: str
    engine: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    config: Config
    seconds: float
    cpu_ms: float  # process CPU per image
    first_result: float  # seconds from spawning the process to its warm-up image's result
    torch: bool  # torch in sys.modules at the end
    engine: str
    precision: str
    network_ms: float  # the engine alone on prepared batches (input conversion included), ms per image
    csv: Path
    load: float  # load average as it ended
    images: int
    baseline: float = 0.0  # mean of the baselines before and after, images/s

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def load_average() -> float:
    return os.getloadavg()[0]


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


# ---- the worker: one configuration in a fresh process ------------------------------------------------------------
def run_cli(argv: list[str]) -> tuple[float, float]:
    """Wall and process CPU seconds for one in-process `allgui classify` run (its progress lines silenced)."""
    from allgui.cli.main import main

    errors = io.StringIO()
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stderr(errors):
        code = main(argv)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if code != 0:
        raise SystemExit(f"allgui {' '.join(argv[:1])} exited with {code}: {errors.getvalue()[-2000:]}")
    return elapsed, cpu


def network_ms(model_dir: Path, engine: str, files: list[Path], repeats: int = 3) -> float:
    """ms per image of the engine alone (input conversion included) on 256 prepared images, best of ``repeats``."""
    from allgui.core.models.store import load_model

    classifier = load_model(model_dir).classifier
    classifier.set_device("cpu")
    classifier.set_engine(engine)
    prepared = [classifier.prepare(classifier.read(path)) for path in files[:: max(1, len(files) // 256)][:256]]
    classifier.outputs(prepared[:32])  # warm
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.outputs(prepared)
        best = min(best, time.perf_counter() - start)
    return best / len(prepared) * 1000


def worker(spec: dict) -> None:
    files = [Path(p) for p in Path(spec["files"]).read_text(encoding="utf-8").splitlines()]
    common = ["--model", spec["model"], "--device", "cpu", "--engine", spec["engine"]]
    run_cli(["classify", str(files[0]), *common, "--out", spec["csv"] + ".warm.csv"])
    first = time.time() - spec["spawned"]
    seconds, cpu = run_cli(["classify", *spec["inputs"], *common, "--out", spec["csv"]])
    network = network_ms(Path(spec["model"]), spec["engine"], files)
    precision = "float32"
    if "torch" in sys.modules and spec["engine"] == "torch":
        from allgui.core.inference import default_precision

        precision = default_precision()
    result = {
        "seconds": seconds,
        "cpu_ms": cpu / len(files) * 1000,
        "first_result": first,
        "torch": "torch" in sys.modules,
        "precision": precision,
        "network_ms": network,
    }
    print(RESULT + json.dumps(result), flush=True)


# ---- the parent --------------------------------------------------------------------------------------------------
def spawn(config: Config, files_list: Path, inputs: list[str], model_dir: Path, csv: Path, count: int) -> Run:
    spec = {
        "files": str(files_list),
        "inputs": inputs,
        "model": str(model_dir),
        "engine": config.engine,
        "csv": str(csv),
        "spawned": time.time(),
    }
    env = {**os.environ, **config.env}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_classify", "--worker", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{config.name}: the worker failed ({done.returncode}): {done.stderr[-3000:]}")
    found = json.loads(lines[-1][len(RESULT) :])
    return Run(
        config,
        found["seconds"],
        found["cpu_ms"],
        found["first_result"],
        found["torch"],
        config.engine,
        found["precision"],
        found["network_ms"],
        csv,
        load_average(),
        count,
    )


def read_csv(path: Path) -> dict[str, tuple[np.ndarray, str, str]]:
    """Probabilities, predicted class and review flag per resolved path (error rows left out)."""
    return {
        str(Path(row["path"]).resolve()): (
            np.array([float(row[f"p_{key}"]) for key in CLASS_KEYS]),
            row["predicted"],
            row["needs_review"],
        )
        for row in parse_rows(path.read_text(encoding="utf-8"))
        if not row["error"]
    }


def agreement(a: Path, b: Path, truth: dict[str, int]) -> str:
    left, right = read_csv(a), read_csv(b)
    keys = sorted(set(left) & set(right))
    pa = np.stack([left[k][0] for k in keys])
    pb = np.stack([right[k][0] for k in keys])
    same_class = np.mean([left[k][1] == right[k][1] for k in keys]) * 100
    same_flag = np.mean([left[k][2] == right[k][2] for k in keys]) * 100
    labels = np.array([truth[k] for k in keys])
    return (
        f"{len(keys)} images: max |dp| {np.abs(pa - pb).max():.2e}, same class {same_class:.2f}% "
        f"({int(round((100 - same_class) * len(keys) / 100))} differ), same review flag {same_flag:.2f}%; "
        f"accuracy against folder labels {(pa.argmax(1) == labels).mean() * 100:.2f}% / "
        f"{(pb.argmax(1) == labels).mean() * 100:.2f}%"
    )


def choose_files(dataset: LabelledDataset, limit: int) -> list[int]:
    """All images, or ``limit`` of them spread evenly over each class in proportion."""
    if not limit or limit >= len(dataset):
        return list(range(len(dataset)))
    chosen: list[int] = []
    for c in range(4):
        members = np.flatnonzero(dataset.labels == c)
        take = max(1, round(limit * len(members) / len(dataset)))
        chosen.extend(members[np.linspace(0, len(members) - 1, take).round().astype(int)].tolist())
    return sorted(set(chosen))


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker(json.loads(sys.argv[2]))
        return
    default = os.environ.get("ALLGUI_TEST_DATA", "../shared/data/taleqani-all")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=Path(default))
    parser.add_argument("--model", type=Path, default=shipped_models_dir() / "secnn-default")
    parser.add_argument("--limit", type=int, default=0, help="images (spread over the classes; 0: all)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each configuration, taking turns")
    parser.add_argument("--no-float32", action="store_true", help="leave out torch in float32")
    parser.add_argument("--startup-runs", type=int, default=3, help="runs of each start-up command (0: skip)")
    args = parser.parse_args()

    from allgui.core.models.store import load_model

    started = time.perf_counter()
    data = args.data.resolve()
    dataset = LabelledDataset.from_folder(data)
    indices = choose_files(dataset, args.limit)
    files = [dataset.paths[i].resolve() for i in indices]
    truth = {str(dataset.paths[i].resolve()): int(dataset.labels[i]) for i in indices}
    work = Path(tempfile.mkdtemp(prefix="allgui-bench-"))
    model_dir = args.model.resolve()
    if not (model_dir / "manifest.json").is_file():
        print(f"no model at {model_dir}: training a stand-in with the default recipe's architecture ...", flush=True)
        model_dir = standin_model(data, work / "standin")
    loaded = load_model(model_dir)
    size = loaded.classifier.image_size  # type: ignore[attr-defined]
    files_list = work / "files.txt"
    files_list.write_text("\n".join(map(str, files)) + "\n", encoding="utf-8")
    inputs = [str(data)] if len(files) == len(dataset) else [str(f) for f in files]

    import onnxruntime

    configs = [Config("onnx", "onnx"), Config("torch", "torch")]
    if not args.no_float32:
        configs.append(Config("torch float32", "torch", {"ALLGUI_INFERENCE_PRECISION": "float32"}))
    print(
        f"{len(files)} images in {data}; model {loaded.id} ({size} px, JPEG draft decoding "
        f"{'on' if loaded.classifier.decode_draft else 'off'}); {os.cpu_count()} cores; "  # type: ignore[attr-defined]
        f"onnxruntime {onnxruntime.__version__}; load average {'/'.join(f'{v:.1f}' for v in os.getloadavg())}",
        flush=True,
    )

    decode_resize_rate(files[:50], size)  # warm the page cache and PIL
    baselines = [decode_resize_rate(files, size)]
    runs: list[Run] = []
    for round_index in range(max(1, args.rounds)):
        order = configs if round_index % 2 == 0 else configs[::-1]
        for config in order:
            csv = work / f"{config.name.replace(' ', '-')}-{round_index}.csv"
            run = spawn(config, files_list, inputs, model_dir, csv, len(files))
            baselines.append(decode_resize_rate(files, size))
            run.baseline = (baselines[-2][0] + baselines[-1][0]) / 2
            runs.append(run)
            print(
                f"  round {round_index + 1} {config.name:14s} {run.rate:6.0f} images/s, "
                f"ratio {run.rate / run.baseline:.2f} (baseline {baselines[-2][0]:.0f} -> {baselines[-1][0]:.0f}); "
                f"{run.cpu_ms:.2f} CPU ms/image; "
                f"{run.engine} {run.precision}, torch imported: {run.torch}; load {run.load:.1f}",
                flush=True,
            )

    rates = [b[0] for b in baselines]
    cpu_base = statistics.mean(b[1] for b in baselines)
    cores = os.cpu_count() or 1
    print(
        f"\ndecode + resize, 1 thread (baseline): mean {statistics.mean(rates):.0f} images/s "
        f"(runs {', '.join(f'{r:.0f}' for r in rates)}); {cpu_base:.2f} CPU ms/image"
    )
    by_name = {c.name: [r for r in runs if r.config is c] for c in configs}
    summary: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, mine in by_name.items():
        # Over all rounds: images / seconds (a mean of rates would overweight the fastest round).
        rate = sum(r.images for r in mine) / sum(r.seconds for r in mine)
        ratio = rate / statistics.mean(r.baseline for r in mine)
        summary[name], cpu[name] = rate, statistics.mean(r.cpu_ms for r in mine)
        print(
            f"allgui classify --engine {name:14s}: {rate:5.0f} images/s, ratio {ratio:.2f} "
            f"(target >= {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'not met'}; >= {TARGET_RATE:.0f} "
            f"images/s: {'met' if rate >= TARGET_RATE else 'not met'}); {cpu[name]:.2f} CPU ms/image, CPU-time bound "
            f"on {cores} free cores {cores * cpu_base / cpu[name]:.2f}; network alone {mine[0].network_ms:.2f} "
            f"ms/image (1 thread); first result {statistics.median(r.first_result for r in mine):.2f} s after "
            f"spawning; torch imported: {mine[0].torch}"
        )
    onnx_runs, torch_runs = by_name["onnx"], by_name["torch"]
    precision = torch_runs[0].precision
    pairs = [o.rate / t.rate for o, t in zip(onnx_runs, torch_runs, strict=True)]
    print(
        f"onnx / torch ({precision}) end to end: {summary['onnx'] / summary['torch']:.2f} (per round "
        f"{', '.join(f'{p:.2f}' for p in pairs)}; torch faster in {sum(p < 1 for p in pairs)} of {len(pairs)}); "
        f"CPU per image onnx / torch {cpu['onnx'] / cpu['torch']:.2f}"
        + (
            f"; onnx / torch float32: {summary['onnx'] / summary['torch float32']:.2f}"
            if "torch float32" in summary
            else ""
        )
    )
    if precision != "bfloat16":
        print("torch ran in float32 here (no bfloat16 units, or asked for): this run says nothing about bfloat16")
    else:
        faster = summary["torch"] > summary["onnx"]
        print(
            f"torch (bfloat16) end to end is {'faster' if faster else 'not faster'} than ONNX Runtime in this run: "
            f"{'keep' if faster else 'retire'} the bfloat16 path (issue: retired if ONNX is at least as fast)"
        )

    print("\nagreement of the CSVs (first round):")
    first = {name: mine[0].csv for name, mine in by_name.items()}
    for name in first:
        if name != "onnx":
            print(f"  onnx against {name}: {agreement(first['onnx'], first[name], truth)}")
    print("  (the shipped model saw these images in training: accuracy here is not a held-out figure)")
    print(f"classification part: {time.perf_counter() - started:.0f} s; load average now {load_average():.1f}")

    if args.startup_runs:
        from benchmarks.bench_startup import report

        print()
        report(files[0], model_dir, args.startup_runs)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
