"""Kill `allgui classify` with SIGKILL at random moments and resume it: count lost and duplicated results.

    .venv/bin/python benchmarks/kill_resume.py /work/shared/data/taleqani-all --trials 10 --images 300

Each trial starts `allgui classify FILES --out OUT`, kills it (kill -9) once the journal holds a random number of
finished rows (``--mode rows``) or after a random delay (``--mode time``, which also hits start-up), then reruns with
`--resume` (killing that too, with probability --rekill, to test resuming a resumed run) until a run completes.
The final export is compared with an uninterrupted reference run: every image must have exactly one row, equal
to the reference row. "Finished before the kill" counts the rows already in the journal when the process died;
each of those must reappear unchanged. The script prints a summary and writes it as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from allgui.core.classify import journal_path_for, parse_rows

FLOAT_COLUMNS = ("p_benign", "p_early_pre_b", "p_pre_b", "p_pro_b", "confidence")


def classify_command(files: list[Path], model: Path, out: Path, resume: bool, batch_size: int) -> list[str]:
    command = [sys.executable, "-m", "allgui", "classify", "--model", str(model), "--out", str(out)]
    command += ["--batch-size", str(batch_size), "--device", "cpu"]
    return command + (["--resume"] if resume else []) + [str(f) for f in files]


def read_rows(path: Path) -> list[dict[str, str]]:
    return parse_rows(path.read_text(encoding="utf-8"))


def journal_rows(path: Path) -> dict[str, dict]:
    """Complete rows in a journal (a line cut short by the kill is not a finished result)."""
    rows: dict[str, dict] = {}
    if not path.exists():
        return rows
    lines = path.read_bytes().split(b"\n")[1:-1]
    for raw in lines:
        try:
            record = json.loads(raw)
        except ValueError:
            break
        rows[record["path"]] = record
    return rows


def _journal_lines(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def same_row(row: dict[str, str], reference: dict[str, str]) -> bool:
    for column, value in reference.items():
        if column in FLOAT_COLUMNS and value:
            if abs(float(row[column]) - float(value)) > 1e-6:
                return False
        elif row[column] != value:
            return False
    return True


def train_model(data: Path, folder: Path, exclude: set[Path]) -> None:
    """A small SVM on other images of the same data (training is not what this script measures)."""
    from allgui.core.dataset import LabelledDataset
    from allgui.core.models.classical import SVMClassifier
    from allgui.core.models.store import save_model

    dataset = LabelledDataset.from_folder(data)
    chosen = [i for i, p in enumerate(dataset.paths) if p not in exclude][::12]
    subset = dataset.subset(chosen)
    model = SVMClassifier(C=[10.0], cv_folds=2)
    model.fit(subset.paths, subset.labels)
    save_model(model, folder)


def run_trial(
    number: int,
    files: list[Path],
    model: Path,
    work: Path,
    reference: dict[str, dict[str, str]],
    rng: random.Random,
    max_delay: float,
    rekill: float,
    batch_size: int,
    mode: str,
) -> dict:
    out = work / f"trial-{number:02d}.csv"
    journal = journal_path_for(out)
    kills, finished_at_kills, runs = 0, [], 0
    resume = False
    while True:
        runs += 1
        process = subprocess.Popen(
            classify_command(files, model, out, resume, batch_size),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        if kills == 0 or rng.random() < rekill:
            if mode == "time":
                time.sleep(rng.uniform(0.0, max_delay))
            else:  # kill once the journal holds a random number of finished rows
                already = len(journal_rows(journal)) if resume else 0
                target = rng.randint(already + 1, len(files) - 1) if already + 1 < len(files) else len(files)
                while process.poll() is None and _journal_lines(journal) < target:
                    time.sleep(0.002)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                before = journal_rows(journal)
                finished_at_kills.append(before)
                resume = True
                continue
        stderr = process.communicate()[1].decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"trial {number}: classify exited {process.returncode}: {stderr[-2000:]}")
        if kills == 0:
            continue  # it finished before the kill: try again with a fresh run (counts as no trial)
        break
    rows = read_rows(out)
    paths = [row["path"] for row in rows]
    duplicated = len(paths) - len(set(paths))
    by_path = {row["path"]: row for row in rows}
    missing = [p for p in reference if p not in by_path]
    different = [p for p in reference if p in by_path and not same_row(by_path[p], reference[p])]
    lost = 0  # rows finished before a kill that are missing or changed in the final export
    for before in finished_at_kills:
        lost += sum(1 for p in before if p not in by_path or not same_row(by_path[p], reference[p]))
    out.unlink()
    return {
        "trial": number,
        "runs": runs,
        "kills": kills,
        "finished_before_each_kill": [len(b) for b in finished_at_kills],
        "rows": len(rows),
        "missing": len(missing),
        "duplicated": duplicated,
        "different_from_reference": len(different),
        "lost": lost,
        "journal_left": journal.exists(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="labelled data folder (e.g. ../shared/data/taleqani-all)")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rekill", type=float, default=0.3, help="chance of killing a resumed run again")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mode",
        choices=["time", "rows"],
        default="rows",
        help="kill after a random delay, or once a random number of rows is journalled (default)",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    from allgui.core.scan import scan_images

    rng = random.Random(args.seed)
    everything = scan_images([args.data]).files
    step = max(1, len(everything) // args.images)
    files = everything[::step][: args.images]
    with tempfile.TemporaryDirectory(prefix="allgui-kill-") as temporary:
        work = Path(temporary)
        for name, data in (("empty.jpg", b""), ("notes.jpg", b"not an image\n")):
            (work / name).write_bytes(data)
            files.append(work / name)  # bad files must survive the kills as error rows too
        model = work / "model"
        train_model(args.data, model, set(files))
        reference_out = work / "reference.csv"
        started = time.perf_counter()
        subprocess.run(
            classify_command(files, model, reference_out, False, args.batch_size),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        duration = time.perf_counter() - started
        reference = {row["path"]: row for row in read_rows(reference_out)}
        assert len(reference) == len(files), "the reference run lacks rows"
        print(f"reference run: {len(reference)} rows in {duration:.1f} s; killing at random in [0, {duration:.1f}] s")
        results = []
        for number in range(1, args.trials + 1):
            result = run_trial(
                number, files, model, work, reference, rng, duration, args.rekill, args.batch_size, args.mode
            )
            results.append(result)
            print(json.dumps(result), flush=True)
    summary = {
        "images": len(files),
        "trials": len(results),
        "kills": sum(r["kills"] for r in results),
        "rows_finished_before_kills": sum(sum(r["finished_before_each_kill"]) for r in results),
        "lost": sum(r["lost"] for r in results),
        "missing": sum(r["missing"] for r in results),
        "duplicated": sum(r["duplicated"] for r in results),
        "different_from_reference": sum(r["different_from_reference"] for r in results),
        "reference_seconds": round(duration, 1),
        "mode": args.mode,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "trials": results}, indent=2) + "\n")
    failed = summary["lost"] or summary["missing"] or summary["duplicated"] or summary["different_from_reference"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
