"""What `allgui classify` and `allgui dedupe` write, and where, when the user hands over hostile paths (issue 16).

An output never replaces an input; CSV cells never reach a spreadsheet as formulas; a hand-edited journal is read
only as far as its rows are rows; a journal path that is a link, pipe, device or folder is refused; awkward named
paths give error rows; names near the length limit, full and read-only disks and a second run writing the same
output each end with one clear message. Every run is a real subprocess on real images with the shipped models.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from allgui.core.classes import CLASS_NAMES
from allgui.core.classify import classify_paths, journal_path_for, model_digest, parse_rows, read_journal
from allgui.core.dataset import LabelledDataset
from allgui.core.models.base import Prediction
from allgui.core.models.store import LoadedModel, load_model
from allgui.core.result import ReviewCode
from allgui.core.statefile import StateFileWarning
from allgui.resources import shipped_models_dir
from tests.badcorpus import long_name
from tests.realsubset import spread_indices

MODEL = "secnn-default"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def run_cli(
    *args: object, cwd: Path | None = None, timeout: float = 300, memory_cap: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python -m allgui ARGS``; ``memory_cap`` stops a run that reads without end at 4 GiB instead of the machine."""

    def cap() -> None:
        import resource  # POSIX only, like the pipes and signals below

        resource.setrlimit(resource.RLIMIT_DATA, (4 << 30, 4 << 30))

    result = subprocess.run(
        [sys.executable, "-m", "allgui", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        preexec_fn=cap if memory_cap else None,
    )
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(path: Path) -> str:
    """A file's text as written: no newline translation, since a name may hold a carriage return."""
    return path.read_bytes().decode("utf-8", errors="surrogateescape")


def csv_cells(path: Path) -> list[list[str]]:
    text = read(path)
    return list(csv.reader(io.StringIO(text.split("\n", 1)[1] if text.startswith("#") else text, newline="")))


@pytest.fixture(scope="module")
def images(data_dir: Path) -> list[Path]:
    """Eight real images, two of each class."""
    dataset = LabelledDataset.from_folder(data_dir)
    return [dataset.paths[i] for i in spread_indices(dataset, 2)]


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    """The shipped default model, loaded as `allgui classify --model secnn-default` loads it."""
    return load_model(shipped_models_dir() / MODEL)


@pytest.fixture
def folder(images: list[Path], tmp_path: Path) -> Path:
    target = tmp_path / "in"
    target.mkdir()
    for path in images:
        shutil.copyfile(path, target / path.name)
    return target


# ---- 1. an output is never an input ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["classify_image", "classify_link_to_image", "classify_journal", "dedupe_image"])
def test_an_output_that_is_an_input_is_refused_before_any_work(folder: Path, tmp_path: Path, case: str) -> None:
    victim = sorted(folder.iterdir())[0]
    before = sha256(victim)
    command, args = case.split("_", 1)[0], [folder]
    if case == "classify_link_to_image":
        out = tmp_path / "out.csv"
        out.symlink_to(victim)
    elif case == "classify_journal":  # a named file that the journal of --out would be
        out = tmp_path / "notes"
        notes = tmp_path / "notes.journal.jsonl"
        notes.write_text("my notes\n")
        args.append(notes)
    else:
        out = victim
    extra = ["--model", MODEL] if command == "classify" else []
    result = run_cli(command, *args, *extra, "--out", out)
    assert result.returncode == 2, result.stderr
    assert f"--out {out}" in result.stderr and "one of the inputs" in result.stderr
    assert "model secnn-default" not in result.stderr  # refused before the model was even loaded
    assert sha256(victim) == before
    if case == "classify_journal":
        assert notes.read_text() == "my notes\n"


# ---- 2. CSV cells are never formulas ---------------------------------------------------------------------------

DANGEROUS = ['=HYPERLINK("https:evil.example","x").jpg', "+1.jpg", "-x.jpg", "@a.jpg", "\tt.jpg", "\rr.jpg", "'=q.jpg"]


def guarded(name: str) -> str:
    """The cell a spreadsheet shows as text: a quote before a formula start (and before a quote run leading to one)."""
    return "'" + name if name.lstrip("'").startswith(FORMULA_STARTS) else name


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(images: list[Path], tmp_path: Path) -> None:
    cells = tmp_path / "cells"
    cells.mkdir()
    names = [*DANGEROUS, "plain.jpg"]
    for name in names:  # copies of one image, so that dedupe lists every one of them
        shutil.copyfile(images[0], cells / name)
    for out in ("r.csv", "r.json", "d.csv"):
        command = ["dedupe"] if out == "d.csv" else ["classify", "--model", MODEL]
        result = run_cli(*command, ".", "--out", tmp_path / out, cwd=cells)  # relative paths: cells start "="
        assert result.returncode == 0, result.stderr

    table = csv_cells(tmp_path / "r.csv")
    assert sorted(row[0] for row in table[1:]) == sorted(guarded(n) for n in names)
    assert guarded("'=q.jpg") == "''=q.jpg" and guarded("plain.jpg") == "plain.jpg"
    assert not [cell for row in table for cell in row if cell.startswith(FORMULA_STARTS)]
    exported = parse_rows(read(tmp_path / "r.csv"))
    assert sorted(row["path"] for row in exported) == sorted(names)  # read back as the real file names
    assert all(row["predicted"] in CLASS_NAMES for row in exported)
    document = json.loads(read(tmp_path / "r.json"))
    assert sorted(row["path"] for row in document["rows"]) == sorted(names)  # JSON keeps the raw value

    groups = csv_cells(tmp_path / "d.csv")
    assert groups[0] == ["group", "path", "sha256", "hash", "distance", "kind"]
    assert sorted(row[1] for row in groups[1:]) == sorted(guarded(n) for n in names)
    assert not [cell for row in groups for cell in row if cell.startswith(FORMULA_STARTS)]


# ---- 3. the journal is read only as far as its rows are rows ---------------------------------------------------


def damage(row: dict, how: str) -> str:
    if how == "no_probabilities":  # was exported as a blank row counted as classified
        del row["probabilities"]
    elif how == "no_path":  # was "internal error: KeyError"
        del row["path"]
    elif how == "reasons_not_a_list":  # was: export written, journal deleted, then exit 1
        row["review_reasons"] = 7
    elif how == "unknown_reason_code":  # a reason is a code AllGUI writes, with its words
        row["review_reasons"] = [{"code": "not_a_code", "text": "confidence 0.50 below 0.90"}]
    elif how == "reason_code_not_text":  # was "internal error: TypeError: unhashable type"
        row["review_reasons"] = [{"code": [1], "text": "x"}]
    elif how == "nan_probability":
        row["probabilities"][0] = math.nan
    else:
        return "[1, 2]"
    return json.dumps(row)


@pytest.mark.parametrize(
    "how",
    [
        "no_probabilities",
        "no_path",
        "reasons_not_a_list",
        "unknown_reason_code",
        "reason_code_not_text",
        "nan_probability",
        "a_list",
    ],
)
def test_a_wrong_shaped_journal_line_is_classified_again_with_one_warning(
    images: list[Path], loaded: LoadedModel, tmp_path: Path, how: str
) -> None:
    out = tmp_path / "results.csv"
    journal = journal_path_for(out)
    reference = classify_paths(images, loaded, journal=journal)  # a journal as a killed run leaves it, all rows
    lines = journal.read_text().split("\n")
    for line in lines[1:-1]:  # each reason journalled as its code and its words
        reasons = json.loads(line)["review_reasons"]
        assert all(set(r) == {"code", "text"} and r["code"] in ReviewCode._value2member_map_ for r in reasons)
    lines[3] = damage(json.loads(lines[3]), how)  # the third row: line 4
    journal.write_text("\n".join(lines))

    result = run_cli("classify", *images, "--model", MODEL, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [warnings[0]] and warnings[0].startswith(f"allgui: warning: {journal}: line 4 ")
    assert "resuming: 2 already done, 6 to go" in result.stderr
    rows = parse_rows(read(out))
    assert [row["path"] for row in rows] == [str(path) for path in images]
    for row, expected in zip(rows, reference, strict=True):
        assert row["predicted"] == expected.predicted and row["error"] == ""
        assert row["review_reasons"] == ";".join(expected.codes)
        assert float(row["p_benign"]) == pytest.approx(expected.probabilities[0], abs=1e-4)
    assert not journal.exists()


def test_read_journal_keeps_the_batch_tabs_signature(images: list[Path], loaded: LoadedModel, tmp_path: Path) -> None:
    journal = tmp_path / "batch.jsonl"
    classify_paths(images[:4], loaded, journal=journal)
    lines = journal.read_bytes().split(b"\n")
    data = b"\n".join([*lines[:3], b'{"path": "x.jpg"}', *lines[4:]])
    with pytest.warns(StateFileWarning, match="line 4 "):
        header, rows, end = read_journal(data, model_digest(loaded))  # as allgui/ui/batch_tab.py calls it
    assert header is not None and header["model_id"] == MODEL
    assert rows is not None and sorted(rows) == sorted(os.path.abspath(p) for p in images[:2])
    assert end == sum(len(line) + 1 for line in lines[:3])


# ---- 4. a journal path that is not a plain file ----------------------------------------------------------------


@pytest.mark.parametrize("resume", [False, True])
@pytest.mark.parametrize("kind", ["fifo", "link_to_dev_zero", "link_to_a_file", "folder"])
def test_a_journal_path_that_is_no_plain_file_is_refused(folder: Path, tmp_path: Path, kind: str, resume: bool) -> None:
    out = tmp_path / "results.csv"
    journal = journal_path_for(out)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    if kind == "fifo":
        os.mkfifo(journal)
    elif kind == "link_to_dev_zero":
        journal.symlink_to("/dev/zero")
    elif kind == "link_to_a_file":
        journal.symlink_to(precious)
    else:
        journal.mkdir()
    # Before the fix a pipe blocked forever and /dev/zero was read without end: the timeout and cap stop those.
    result = run_cli(
        "classify",
        folder,
        "--model",
        MODEL,
        "--out",
        out,
        *(["--resume"] if resume else []),
        timeout=120,
        memory_cap=True,
    )
    assert result.returncode == 2, result.stderr
    assert f"the journal {journal} is " in result.stderr
    assert precious.read_text() == "keep me\n" and not out.exists()


# ---- 5. awkward paths: links, long names, folders, full and read-only disks -------------------------------------


def test_a_named_broken_link_and_link_loop_get_error_rows(images: list[Path], tmp_path: Path) -> None:
    dangling, loop = tmp_path / "gone.jpg", tmp_path / "loop.jpg"
    dangling.symlink_to(tmp_path / "nowhere.jpg")
    loop.symlink_to(loop)
    out = tmp_path / "results.csv"
    result = run_cli("classify", images[0], dangling, loop, "--model", MODEL, "--out", out)
    assert result.returncode == 0, result.stderr
    rows = {row["path"]: row for row in parse_rows(read(out))}
    assert rows[str(images[0])]["predicted"] in CLASS_NAMES
    assert "link" in rows[str(dangling)]["error"] and "link" in rows[str(loop)]["error"]
    assert rows[str(dangling)]["predicted"] == rows[str(loop)]["predicted"] == ""


@pytest.mark.parametrize("where", ["input", "out"])
def test_a_path_part_over_255_bytes_is_a_clear_usage_error(folder: Path, tmp_path: Path, where: str) -> None:
    name = "é" * 130 + ".jpg"  # 264 bytes
    args = [tmp_path / name, "--out", tmp_path / "r.csv"] if where == "input" else [folder, "--out", tmp_path / name]
    result = run_cli("classify", *args, "--model", MODEL)
    assert result.returncode == 2, result.stderr
    assert "264 bytes long" in result.stderr and "at most 255" in result.stderr


def test_an_out_name_near_the_limit_journals_under_a_short_name(
    images: list[Path], loaded: LoadedModel, tmp_path: Path
) -> None:
    out = tmp_path / long_name("r", ".csv")
    assert 242 <= len(os.fsencode(out.name)) <= 255
    journal = journal_path_for(out)
    assert journal == journal_path_for(out) and journal.parent == out.parent  # the resume finds it again
    assert journal.name.startswith(".allgui-journal-") and len(journal.name) < 64
    assert journal_path_for(tmp_path / "r.csv").name == "r.csv.journal.jsonl"  # short names as before
    classify_paths(images[:3], loaded, journal=journal)  # a run killed after three images

    result = run_cli("classify", *images, "--model", MODEL, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert "resuming: 3 already done, 5 to go" in result.stderr
    assert [row["path"] for row in parse_rows(read(out))] == [str(p) for p in images]
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no journal or temporary file left


@pytest.mark.parametrize("target", ["folder", "under_a_file", "pipe", "link"])
def test_an_out_that_cannot_be_a_file_is_refused_before_work(folder: Path, tmp_path: Path, target: str) -> None:
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("keep me\n")
    out, reason = {
        "folder": (tmp_path, "it is a folder"),
        "under_a_file": (sorted(folder.iterdir())[0] / "r.csv", "not a folder"),
        "pipe": (tmp_path / "r.csv", "not a regular file"),
        "link": (tmp_path / "r.csv", "symbolic link"),  # the rename would replace the link, not its file
    }[target]
    if target == "pipe":
        os.mkfifo(out)
    elif target == "link":
        out.symlink_to(elsewhere)
    result = run_cli("classify", folder, "--model", MODEL, "--out", out)
    assert result.returncode == 2, result.stderr
    assert f"--out {out}: cannot be written: " in result.stderr and reason in result.stderr
    assert "model secnn-default" not in result.stderr
    assert elsewhere.read_text() == "keep me\n"
    assert out.is_symlink() if target == "link" else (target != "pipe" or out.is_fifo())


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a small tmpfs (root only): a real file system that fills up or is read-only."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command: the full-disk cases need a small tmpfs")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"mounting a small tmpfs is not permitted here ({done.stderr.decode().strip()})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], capture_output=True, timeout=60)


def fill(disk: Path, leave_pages: int) -> Path:
    """Fill ``disk`` with one file until ``leave_pages`` blocks are free."""
    info = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * ((info.f_bavail - leave_pages) * info.f_frsize))
    assert os.statvfs(disk).f_bavail == leave_pages
    return filler


def test_a_full_disk_ends_with_a_clear_message_and_resumes(
    images: list[Path], loaded: LoadedModel, tmp_path: Path, small_disk: Callable[[str], Path]
) -> None:
    disk = small_disk("size=256k")
    out = disk / "results.csv"
    journal = journal_path_for(out)
    filler = fill(disk, 0)
    result = run_cli("classify", *images, "--model", MODEL, "--out", out)
    assert result.returncode == 2, result.stderr
    assert f"{journal}: cannot be written (the disk is full)" in result.stderr

    # Room for the journal but not for the export: the journal keeps every row for --resume.
    trial = tmp_path / "trial.jsonl"
    classify_paths(images, loaded, journal=trial)
    size, page = trial.stat().st_size, os.statvfs(disk).f_frsize
    assert 64 < size % page < page - 64, "the journal's size is too near a page boundary for this check"
    journal.unlink(missing_ok=True)
    filler.unlink()
    filler = fill(disk, math.ceil(size / page))
    result = run_cli("classify", *images, "--model", MODEL, "--out", out)
    assert result.returncode == 2, result.stderr
    assert f"cannot write {out}: the disk is full; every row is kept in {journal}" in result.stderr
    assert len(journal.read_bytes().split(b"\n")) == len(images) + 2 and not out.exists()
    filler.unlink()
    result = run_cli("classify", *images, "--model", MODEL, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert f"resuming: {len(images)} already done, 0 to go" in result.stderr
    assert len(parse_rows(read(out))) == len(images) and not journal.exists()


def test_a_read_only_out_folder_is_refused_before_work(folder: Path, small_disk: Callable[[str], Path]) -> None:
    disk = small_disk("ro,size=64k")
    for command in (["classify", "--model", MODEL], ["dedupe"]):
        result = run_cli(command[0], folder, *command[1:], "--out", disk / "sub" / "r.csv")
        assert result.returncode == 2, result.stderr
        assert f"cannot be written: {disk} is on a read-only file system" in result.stderr
        assert "model secnn-default" not in result.stderr


# ---- 6. the self-test's report ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["under_a_file", "folder"])
def test_a_self_test_report_that_cannot_be_written_is_a_clear_message(tmp_path: Path, where: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    report = tmp_path / "file.txt" / "report.json" if where == "under_a_file" else tmp_path
    result = run_cli("--self-test", "--report", report, timeout=600)
    assert result.returncode == 2, result.stderr
    assert f"allgui --self-test: error: cannot write the report {report}: " in result.stderr
    assert ("not a folder" if where == "under_a_file" else "it is a folder") in result.stderr


# ---- 7. two runs writing the same output -----------------------------------------------------------------------


def test_a_second_run_writing_the_same_out_is_refused(data_dir: Path, tmp_path: Path) -> None:
    dataset = LabelledDataset.from_folder(data_dir)
    paths = [dataset.paths[i] for i in spread_indices(dataset, 10)]
    out = tmp_path / "results.csv"
    journal = journal_path_for(out)
    command = [sys.executable, "-m", "allgui", "classify", *map(str, paths), "--model", MODEL, "--out", str(out)]
    first = subprocess.Popen([*command, "--batch-size", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240  # a guard against a hang, not a timing assertion
        while not (journal.exists() and journal.read_bytes().count(b"\n") >= 3):
            assert first.poll() is None and time.monotonic() < deadline, "the first run ended before it wrote rows"
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)  # holds its lock, mid-run, for as long as the second run takes
        assert first.poll() is None, "the first run finished before it could be paused"
        written = journal.read_bytes()
        second = run_cli("classify", *paths, "--model", MODEL, "--out", out)
        assert second.returncode == 2, second.stderr
        assert f"another allgui run is writing {out}" in second.stderr
        assert journal.read_bytes() == written and not out.exists()
    finally:
        first.send_signal(signal.SIGCONT)
    stderr = first.communicate(timeout=300)[1].decode()
    assert first.returncode == 0, stderr
    assert [row["path"] for row in parse_rows(read(out))] == [str(p) for p in paths]


# ---- 8. --resume after a finished run --------------------------------------------------------------------------


def test_resume_after_a_finished_run_keeps_the_export(images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    assert run_cli("classify", *images[:2], "--model", MODEL, "--out", out).returncode == 0
    with open(out, "a", encoding="utf-8") as handle:
        handle.write("# checked by hand\n")
    edited = out.read_bytes()
    result = run_cli("classify", *images[:2], "--model", MODEL, "--out", out, "--resume")
    assert result.returncode == 2, result.stderr
    assert f"{out} is a finished run: nothing to resume" in result.stderr
    assert out.read_bytes() == edited


# ---- 9. warnings as one line -----------------------------------------------------------------------------------


def test_a_device_warning_is_one_line(images: list[Path]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: this test needs CUDA to be missing")
    result = run_cli("classify", images[0], "--model", MODEL, "--device", "cuda")
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if "CUDA" in line]
    assert notices == ["allgui: warning: CUDA was requested but no GPU is available; using the CPU"]
    assert "DeviceWarning" not in result.stderr and ".py:" not in result.stderr


# ---- 10. classical models keep their reduced images ------------------------------------------------------------


def test_the_plain_path_keeps_what_the_model_reduces_images_to(images: list[Path]) -> None:
    from allgui.core.classify import batch_hash
    from allgui.core.imageio import read_rgb

    loaded = load_model(shipped_models_dir() / "svm-taleqani")
    classifier = loaded.classifier
    reduced: dict[int, tuple[int, int]] = {}
    kept: list[Image.Image] = []  # alive until the end, so that no id is reused by a later image
    real_predict = classifier.predict

    def reduce(image: Image.Image) -> Image.Image:  # stands in for a classical model's reduce
        small = image.resize((48, 48))
        kept.append(small)
        reduced[id(small)] = image.size
        return small

    def predict(batch: list[Image.Image]) -> list[Prediction]:
        assert all(id(image) in reduced for image in batch), "the model was given images that were not reduced"
        return real_predict(batch)

    classifier.reduce, classifier.predict = reduce, predict
    rows = classify_paths(images, loaded, batch_size=3)
    assert len(reduced) == len(images)
    for row, path in zip(rows, images, strict=True):  # the duplicate hash is still of the full image
        assert row.phash == f"{batch_hash(read_rgb(path, draft=classifier.decode_draft)):016x}"
