"""`allgui classify`: the exact columns, bad files as error rows, duplicate groups, and a kill -9 mid-batch that
`--resume` finishes without losing or repeating a row."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from allgui import DISCLAIMER
from allgui.core.classes import CLASS_NAMES
from allgui.core.classify import COLUMNS, journal_path_for
from allgui.core.dataset import LabelledDataset
from allgui.core.models.classical import SVMClassifier
from allgui.core.models.store import save_model
from allgui.core.result import ReviewCode
from tests.imagefactory import bad_files
from tests.realsubset import Subset, spread_indices

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "allgui", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def model_folder(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    subset = Subset.load(data_dir, per_class=20)
    model = SVMClassifier(image_size=12, pca_components=12, C=[1.0], cv_folds=2)
    model.fit(subset.train_paths, subset.train_labels, groups=subset.groups[subset.train])
    folder = tmp_path_factory.mktemp("models") / "test-svm"
    save_model(model, folder, model_id="test-svm")
    return folder


@pytest.fixture(scope="module")
def real_paths(data_dir: Path) -> list[Path]:
    """About 200 real images from all four classes."""
    dataset = LabelledDataset.from_folder(data_dir)
    return [dataset.paths[i] for i in spread_indices(dataset, 50)]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        assert handle.readline() == f"# {DISCLAIMER}\n"  # every export says what it is not
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_csv_has_the_exact_columns_and_bad_files_carry_on(
    model_folder: Path, real_paths: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    good = real_paths[::20]
    for path in good:
        shutil.copyfile(path, folder / path.name)
    shutil.copyfile(good[0], folder / "same-bytes-again.jpg")
    bad = bad_files(folder / "bad")
    out = tmp_path / "results.csv"
    result = run_cli("classify", folder, "--model", model_folder, "--out", out, "--batch-size", "3")
    assert result.returncode == 0, result.stderr
    header, rows = read_csv(out)
    assert header == list(COLUMNS)  # in README's order: tests/test_result_record.py
    assert len(rows) == len(good) + 1 + len(bad)
    by_name = {Path(r["path"]).name: r for r in rows}
    filled = ("path", "error", "review_reasons")
    for path in bad.values():
        row = by_name[path.name]
        assert row["error"] and row["review_reasons"] == ReviewCode.UNREADABLE, row
        assert all(row[c] == "" for c in COLUMNS if c not in filled), row
    for path in [*good, Path("same-bytes-again.jpg")]:
        row = by_name[path.name]
        assert row["error"] == "" and row["predicted"] in CLASS_NAMES and row["model_id"] == "test-svm"
        probabilities = [float(row[f"p_{k}"]) for k in ("benign", "early_pre_b", "pre_b", "pro_b")]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert float(row["confidence"]) == pytest.approx(max(probabilities), abs=1e-6)
        assert row["needs_review"] in ("true", "false")
        codes = row["review_reasons"].split(";") if row["review_reasons"] else []
        assert all(code in ReviewCode._value2member_map_ for code in codes), row
        assert (row["needs_review"] == "true") == bool(codes), row  # flagged exactly when there is a reason
        assert row["reviewed_label"] == row["reviewed_by"] == row["reviewed_at"] == ""  # no person has looked
        assert row["image_sha256"] == hashlib.sha256((folder / path.name).read_bytes()).hexdigest()
    copies = {by_name[good[0].name]["duplicate_group"], by_name["same-bytes-again.jpg"]["duplicate_group"]}
    assert len(copies) == 1 and copies != {""}
    assert not journal_path_for(out).exists()  # the finished export replaces the journal
    assert f"{len(bad)} errors" in result.stderr


def test_json_output_has_the_same_columns(model_folder: Path, real_paths: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    (tmp_path / "empty.jpg").write_bytes(b"")
    result = run_cli("classify", *real_paths[:3], tmp_path / "empty.jpg", "--model", model_folder, "--out", out)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["disclaimer"] == DISCLAIMER
    rows = document["rows"]
    assert [list(r) for r in rows] == [list(COLUMNS)] * 4
    assert [isinstance(r["needs_review"], bool) for r in rows[:3]] == [True] * 3
    assert rows[3]["error"] and rows[3]["predicted"] is None
    assert rows[3]["review_reasons"] == [{"code": "unreadable", "text": rows[3]["error"]}]
    for row in rows[:3]:  # JSON keeps each reason's code and its words
        assert all(
            set(r) == {"code", "text"} and r["code"] in ReviewCode._value2member_map_ and r["text"]
            for r in row["review_reasons"]
        )
        assert row["needs_review"] == bool(row["review_reasons"])


def test_resume_needs_an_output_file(model_folder: Path, real_paths: list[Path]) -> None:
    assert run_cli("classify", real_paths[0], "--model", model_folder, "--resume").returncode == 2
    assert run_cli("classify", real_paths[0], "--model", "no-such-model").returncode == 2


def test_kill_9_mid_batch_then_resume_loses_and_repeats_nothing(
    model_folder: Path, real_paths: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "results.csv"
    journal = journal_path_for(out)
    command = [
        sys.executable,
        "-m",
        "allgui",
        "classify",
        *map(str, real_paths),
        "--model",
        str(model_folder),
        "--out",
        str(out),
        "--batch-size",
        "1",
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_bytes().count(b"\n") > 20:
                break
            assert process.poll() is None, "classify ended before it could be killed"
            time.sleep(0.01)
        assert process.poll() is None, "classify finished before the kill"
        process.kill()  # SIGKILL: no handler, no cleanup
    finally:
        process.wait(timeout=30)
        process.stderr.close()
    assert process.returncode == -9
    assert not out.exists()
    lines = journal.read_bytes().split(b"\n")
    finished = [json.loads(line) for line in lines[1:-1]]
    assert 20 <= len(finished) < len(real_paths)
    # Simulate being killed in the middle of writing a row as well.
    with open(journal, "ab") as handle:
        handle.write(lines[-1] + b'{"path": "' + str(real_paths[-1]).encode()[:10])

    result = run_cli("classify", *real_paths, "--model", model_folder, "--out", out, "--batch-size", "16", "--resume")
    assert result.returncode == 0, result.stderr
    assert f"resuming: {len(finished)} already done, {len(real_paths) - len(finished)} to go" in result.stderr
    _, rows = read_csv(out)
    assert [Path(r["path"]) for r in rows] == real_paths  # every image once, in order
    assert all(r["error"] == "" and r["predicted"] in CLASS_NAMES for r in rows)
    before_kill = {os.path.abspath(r["path"]): r for r in finished}
    for row in rows:
        earlier = before_kill.get(os.path.abspath(row["path"]))
        if earlier is not None:  # kept from the journal, not classified again
            assert row["predicted"] == earlier["predicted"]
            assert float(row["confidence"]) == pytest.approx(earlier["confidence"], abs=1e-6)


def test_rows_without_duplicate_grouping_are_the_same_rows_less_the_hash(
    model_folder: Path, real_paths: list[Path], tmp_path: Path
) -> None:
    """The Review tab groups duplicates with its own hash pass: classify_paths then skips its hash, nothing else."""
    from allgui.core.classify import classify_paths
    from allgui.core.models.store import load_model

    loaded = load_model(model_folder)
    paths = real_paths[::30]
    grouped = classify_paths(paths, loaded, batch_size=4)
    plain = classify_paths(paths, loaded, batch_size=4, group_duplicates=False)
    assert all(len(row.phash) == 16 for row in grouped)
    assert all(row.phash == "" and row.duplicate_group is None for row in plain)
    assert [dataclasses.replace(row, phash="", duplicate_group=None) for row in grouped] == plain
    with pytest.raises(ValueError, match="perceptual hash"):  # a journal row needs its hash to resume
        classify_paths(paths, loaded, journal=tmp_path / "j.jsonl", group_duplicates=False)
    assert not (tmp_path / "j.jsonl").exists()
