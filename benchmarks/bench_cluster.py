"""Classifying on a dask cluster against a run here, and the client's memory for 200,000 paths.

Run: .venv/bin/python -m benchmarks.bench_cluster [DATA_FOLDER] [--images 3000] [--paths 200000] [--stop-after 3000]

In one run, on the same images (the real ones plus links to them up to ``--images``, in a temporary folder):

1. `allgui classify FOLDER --out FILE.csv` here, with ``--cluster local:1`` and with ``--cluster local:2``, each a
   fresh process, each also on 16 of the images: the difference of the two wall times is the time of the other
   images, so start-up (imports, the model, starting the cluster and loading the model on its workers) is left
   out of the rates. Printed: images/s, the cluster's overhead per image (local:1 against here), the 2-worker
   speed-up (local:2 against local:1) and local:2 against here (target: at least 0.8).
2. ``--paths`` links in a temporary folder classified with ``--cluster local:2`` while the client's resident memory
   (RSS, sampled every 50 ms; the client process holds the scheduler of a local cluster too) is followed through
   listing, submission and the first ``--stop-after`` results; then the run is stopped with Ctrl-C (SIGINT), as
   classifying all of them would take this machine most of an hour. Target: under 300 MB.
3. What the client keeps per finished image over a whole run (its row, for the export and the duplicate groups
   over the whole run) and the time of grouping and rendering, from as many rows made like real ones: the memory
   of a client that finishes ``--paths`` images, and of 10 million.

Machines are noisy and this one may be shared: compare only numbers from one run, next to the load averages it
prints.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import psutil

from allgui.core.classify import _assign_duplicate_groups, journal_path_for, render
from allgui.core.result import ResultRow

ROOT = Path(__file__).resolve().parent.parent
MODEL = "secnn-default"
SMALL = 16
TARGET_RATIO = 0.8
TARGET_MB = 300


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def linked_folder(data: Path, folder: Path, count: int) -> Path:
    """``count`` links to the real images (each real image once, then again under other names)."""
    sources = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    folder.mkdir(parents=True)
    for index in range(count):
        source = sources[index % len(sources)]
        sub = folder / f"{index // 1000:04d}"
        sub.mkdir(exist_ok=True)
        (sub / f"{index:07d}-{source.name}").symlink_to(source.resolve())
    return folder


def classify_seconds(folder: Path, out: Path, options: list[str]) -> float:
    command = [sys.executable, "-m", "allgui", "classify", str(folder), "--model", MODEL, "--out", str(out)]
    started = time.perf_counter()
    result = subprocess.run([*command, *options], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command + options)} failed:\n{result.stderr}")
    return seconds


def rates(data: Path, work: Path, images: int) -> dict[str, float]:
    big = linked_folder(data, work / "images", images)
    small = linked_folder(data, work / "small", SMALL)
    configurations = {"here": [], "local:1": ["--cluster", "local:1"], "local:2": ["--cluster", "local:2"]}
    found = {}
    for name, options in configurations.items():
        print(f"  {name}: {load()}", flush=True)
        whole = classify_seconds(big, work / f"{name}.csv", options)
        start_up = classify_seconds(small, work / f"{name}-small.csv", options)
        found[name] = (images - SMALL) / (whole - start_up)
        print(
            f"  {name:8} {found[name]:7.1f} images/s  ({images} images in {whole:.1f} s, {SMALL} in {start_up:.1f} s)",
            flush=True,
        )
    return found


def client_memory(data: Path, work: Path, paths: int, stop_after: int) -> dict[str, float]:
    started = time.perf_counter()
    folder = linked_folder(data, work / "many", paths)
    print(f"  {paths} links made in {time.perf_counter() - started:.0f} s; {load()}", flush=True)
    out = work / "many.csv"
    journal = journal_path_for(out)
    command = [sys.executable, "-m", "allgui", "classify", str(folder), "--model", MODEL, "--out", str(out)]
    command += ["--cluster", "local:2"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = psutil.Process(process.pid)
    peak = first_rows_at = 0.0
    rows = 0
    rss_at_first = 0.0
    try:
        while process.poll() is None:
            try:
                rss = client.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                break
            peak = max(peak, rss)
            if journal.exists():
                rows = max(0, journal.read_bytes().count(b"\n") - 1)
                if rows and not first_rows_at:
                    first_rows_at, rss_at_first = time.perf_counter() - started, rss
                if rows >= stop_after:
                    break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        rss_at_stop = client.memory_info().rss / 2**20
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: the run stops cleanly, its rows kept for --resume
        _, stderr = process.communicate(timeout=120)
    if process.returncode not in (0, 130):
        raise SystemExit(f"the {paths}-path run failed ({process.returncode}):\n{stderr}")
    print(
        f"  first rows after {first_rows_at:.1f} s (listing {paths} paths, starting the cluster, loading the model); "
        f"stopped after {rows} rows in {seconds:.1f} s"
    )
    return {"peak": peak, "at_first": rss_at_first, "at_stop": rss_at_stop, "rows": rows}


def row_costs(count: int) -> dict[str, float]:
    """Bytes the client keeps per finished row, and the seconds of grouping and rendering ``count`` rows."""
    generator = random.Random(1)

    def row(index: int) -> ResultRow:
        probabilities = [generator.random() for _ in range(4)]
        total = sum(probabilities)
        probabilities = [p / total for p in probabilities]
        return ResultRow(
            path=f"/archive/smears/2026/{index // 1000:05d}/{index:08d}-WBC-Benign-{index % 997:03d}.jpg",
            model_id=MODEL,
            predicted="Benign",
            probabilities=tuple(probabilities),
            confidence=max(probabilities),
            needs_review=False,
            reasons=(),
            image_sha256=f"{generator.getrandbits(256):064x}",
            phash=f"{generator.getrandbits(64):016x}",
        )

    gc.collect()
    tracemalloc.start()
    rows = [row(i) for i in range(count)]
    kept, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    started = time.perf_counter()
    _assign_duplicate_groups(rows)
    grouping = time.perf_counter() - started
    started = time.perf_counter()
    text = render(rows, "csv")
    rendering = time.perf_counter() - started
    return {"bytes_per_row": kept / count, "grouping": grouping, "rendering": rendering, "csv_bytes": len(text)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", default=os.environ.get("ALLGUI_TEST_DATA", ""), help="the real images")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--paths", type=int, default=200_000)
    parser.add_argument("--stop-after", type=int, default=3000, help="rows of the many-path run before Ctrl-C")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        parser.error("give the folder of real images (or set ALLGUI_TEST_DATA)")
    print(f"{os.cpu_count()} cores; {load()}")
    with tempfile.TemporaryDirectory(prefix="allgui-bench-cluster-") as temporary:
        work = Path(temporary)
        os.environ["ALLGUI_HOME"] = str(work / "home")  # the shipped model, no user settings
        print(f"1. {args.images} images (start-up left out):")
        found = rates(data, work, args.images)
        print(f"2. the client while {args.paths} paths are listed, submitted and the first results come back:")
        memory = client_memory(data, work, args.paths, args.stop_after)
        print(f"3. what the client keeps per finished image ({load()}):")
        costs = row_costs(args.paths)
    here, one, two = found["here"], found["local:1"], found["local:2"]
    overhead_ms = 1000 * (1 / one - 1 / here)
    print("\nResults (one run; ratios only mean something within it):")
    print(f"  here {here:.1f} images/s, local:1 {one:.1f}, local:2 {two:.1f}")
    print(f"  cluster overhead per image (local:1 against here): {overhead_ms:+.2f} ms ({one / here:.2f}x the rate)")
    print(f"  2-worker speed-up (local:2 against local:1): {two / one:.2f}x")
    verdict = "meets" if two / here >= TARGET_RATIO else "misses"
    print(f"  local:2 against here: {two / here:.2f}x ({verdict} the target of {TARGET_RATIO}x)")
    verdict = "meets" if memory["peak"] < TARGET_MB else "misses"
    print(
        f"  client RSS for {args.paths} paths: peak {memory['peak']:.0f} MB ({verdict} the target of {TARGET_MB} MB); "
        f"{memory['at_first']:.0f} MB at the first rows, {memory['at_stop']:.0f} MB after {memory['rows']} rows"
    )
    per_row = costs["bytes_per_row"]
    print(
        f"  rows kept by the client: {per_row:.0f} bytes each ({args.paths * per_row / 2**20:.0f} MB for "
        f"{args.paths}, {10_000_000 * per_row / 2**30:.1f} GB for 10 million); grouping {args.paths} rows "
        f"{costs['grouping']:.1f} s, the CSV {costs['rendering']:.1f} s ({costs['csv_bytes'] / 2**20:.0f} MB)"
    )
    print(f"  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
