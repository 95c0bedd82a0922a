"""Start-up of `allgui classify`: process start to the first result for one image, against `import torch` alone.

Run: .venv/bin/python -m benchmarks.bench_startup [IMAGE] [--model DIR] [--runs 3]

Every figure is a fresh interpreter (``sys.executable``) started from here, timed from just before it is spawned:
``python -c pass`` (the interpreter itself), ``python -c "import torch"``, and ``python -m allgui classify IMAGE
--model DIR --device cpu --engine onnx`` (and ``--engine torch``) until its result row arrives on standard output.
The commands take turns, ``--runs`` times each after one untimed round that fills the page cache; the minimum and the
median are printed. Then a fresh ``python -c`` runs ``classify_paths`` on the image with the model as it loads (the
default engine) and with ``--engine onnx`` through the CLI, and prints whether ``torch`` was imported: with the
shipped default model on the CPU it must not be.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from allgui.resources import shipped_models_dir

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: the image and model folder follow as argv[1:3].
TORCH_PROBE = """
import contextlib, io, json, sys
from pathlib import Path
from allgui.core.classify import classify_paths
from allgui.core.models.store import load_model
from allgui.cli.main import main
image, model = sys.argv[1], sys.argv[2]
loaded = load_model(model)
rows = classify_paths([Path(image)], loaded)
found = {"classify_paths": {"engine": loaded.classifier.engine_name, "torch": "torch" in sys.modules,
         "onnxruntime": "onnxruntime" in sys.modules, "predicted": rows[0].predicted}}
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(["classify", image, "--model", model, "--device", "cpu", "--engine", "onnx"])
found["cli --engine onnx"] = {"exit": code, "torch": "torch" in sys.modules}
print(json.dumps(found))
"""


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def time_command(argv: list[str], until: str | None = None) -> float:
    """Seconds from spawning ``argv`` to the first stdout line starting with ``until`` (None: to its exit)."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = None
    assert process.stdout is not None
    for line in process.stdout:
        if seen is None and until is not None and line.startswith(until):
            seen = time.perf_counter() - start
    _, error = process.communicate()
    ended = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {process.returncode}: {error.strip()[-2000:]}")
    if until is not None and seen is None:
        raise SystemExit(f"{' '.join(argv)} printed no line starting with {until!r}")
    return ended if seen is None else seen


def commands(image: Path, model: Path) -> dict[str, tuple[list[str], str | None]]:
    python = sys.executable
    classify = [python, "-m", "allgui", "classify", str(image), "--model", str(model), "--device", "cpu"]
    return {
        "python -c pass": ([python, "-c", "pass"], None),
        'python -c "import torch"': ([python, "-c", "import torch"], None),
        "allgui classify 1 image --engine onnx": ([*classify, "--engine", "onnx"], str(image)),
        "allgui classify 1 image --engine torch": ([*classify, "--engine", "torch"], str(image)),
    }


def measure(image: Path, model: Path, runs: int = 3) -> dict[str, list[float]]:
    """Seconds per command and run, the commands taking turns (after one untimed round)."""
    todo = commands(image, model)
    for argv, until in todo.values():
        time_command(argv, until)
    times: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(runs):
        for name, (argv, until) in todo.items():
            times[name].append(time_command(argv, until))
    return times


def torch_probe(image: Path, model: Path) -> dict[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", TORCH_PROBE, str(image), str(model)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the torch probe failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(image: Path, model: Path, runs: int) -> None:
    print(f"start-up, one image ({image.name}), model {model.name}, {runs} runs each; load average {load()}")
    times = measure(image, model, runs)
    for name, values in times.items():
        print(
            f"  {name:40s} median {statistics.median(values):5.2f} s, min {min(values):5.2f} s  "
            f"({', '.join(f'{v:.2f}' for v in values)})"
        )
    onnx = statistics.median(times["allgui classify 1 image --engine onnx"])
    torch_import = statistics.median(times['python -c "import torch"'])
    interpreter = statistics.median(times["python -c pass"])
    print(
        f"  first result with ONNX Runtime {onnx:.2f} s against {torch_import:.2f} s for `import torch` alone "
        f"(x{onnx / torch_import:.2f}; the bare interpreter {interpreter:.2f} s); load average now {load()}"
    )
    for how, found in torch_probe(image, model).items():
        print(f"  torch imported after {how}: {found['torch']}  ({json.dumps(found)})")


def main() -> None:
    default = Path(os.environ.get("ALLGUI_TEST_DATA", "../shared/data/taleqani-all"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", type=Path, help="one image (default: the first of the data folder)")
    parser.add_argument("--model", type=Path, default=shipped_models_dir() / "secnn-default")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    image = args.image or sorted(default.resolve().rglob("*.jpg"))[0]
    report(image.resolve(), args.model.resolve(), max(1, args.runs))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
