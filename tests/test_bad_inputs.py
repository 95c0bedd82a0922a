"""The bad-input corpus through the command line, as a technician would run it: every bad file gives exactly one
clear error line or row, every good file its normal result, and the run completes with exit status 0.

The unreadable-file case: these tests often run as root, for whom file permissions do not stop reads, so the
subprocess tests use a FIFO, a dangling symlink and a symlink to itself named .jpg instead (a chmod-0 file is
added to the corpus only for ordinary users); the in-process test below simulates a permission error directly.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from allgui.core.classify import parse_rows
from allgui.core.dataset import load_labelled
from allgui.core.hashing import hash_images
from allgui.core.imageio import ImageReadError
from tests.badcorpus import CorpusFile, long_name, make_corpus


def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "allgui", *map(str, args)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=full_env,
        timeout=300,
    )


def text(data: bytes) -> str:
    # Paths that are not valid UTF-8 come back as their original bytes: decode them the way Path does.
    return data.decode("utf-8", errors="surrogateescape")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CorpusFile]]:
    """root/Benign/<corpus> plus root/Benign/copies/<a copy of every good file>, so each good file is in a group."""
    root = tmp_path_factory.mktemp("corpus")
    folder = root / "Benign"
    entries = make_corpus(folder)
    copies = folder / "copies"
    copies.mkdir()
    for entry in entries:
        if entry.good:
            shutil.copyfile(entry.path, copies / entry.path.name)
    return root, entries


def good(entries: list[CorpusFile]) -> list[CorpusFile]:
    return [e for e in entries if e.good]


def bad(entries: list[CorpusFile]) -> list[CorpusFile]:
    return [e for e in entries if not e.good]


def assert_one_clear_line(lines: list[str], entry: CorpusFile) -> None:
    hits = [line for line in lines if str(entry.path) in line]
    assert len(hits) == 1, f"{entry.kind}: expected one line naming {entry.path.name}, got {hits}"
    reason = hits[0].split(str(entry.path), 1)[1].lower()  # the words after the name, not the name itself
    assert any(word in reason for word in entry.reason_words), f"{entry.kind}: unclear reason: {hits[0]}"


def test_corpus_has_every_kind(corpus: tuple[Path, list[CorpusFile]]) -> None:
    kinds = {e.kind for e in corpus[1]}
    expected = {
        "zero_byte",
        "truncated",
        "corrupt",
        "text_as_jpg",
        "html_as_png",
        "decompression_bomb",
        "tiff_16bit",
        "cmyk_jpeg",
        "palette_png_transparency",
        "greyscale_jpeg",
        "exif_rotated",
        "one_pixel",
        "huge_10000x10000",
        "non_ascii_name",
        "long_ascii_name",
        "long_non_ascii_name",
        "dangling_symlink",
        "fifo_named_jpg",
    }
    assert expected <= kinds
    for entry in corpus[1]:
        if "long" in entry.kind:
            assert 240 <= len(os.fsencode(entry.path.name)) <= 255


def test_dedupe_cli(corpus: tuple[Path, list[CorpusFile]], tmp_path: Path) -> None:
    root, entries = corpus
    out = tmp_path / "groups.csv"
    result = run_cli("dedupe", root, "--out", out)
    stderr = text(result.stderr)
    assert result.returncode == 0, stderr
    rows = list(csv.DictReader(io.StringIO(text(out.read_bytes()))))
    listed = [row["path"] for row in rows]
    assert len(listed) == len(set(listed)), "an image is listed twice"
    by_path = {row["path"]: row for row in rows}
    for entry in good(entries):
        # Each good file and its copy are read, hashed and grouped as exact duplicates of each other.
        original = by_path[str(entry.path)]
        copy = by_path[str(entry.path.parent / "copies" / entry.path.name)]
        assert original["sha256"] == copy["sha256"] and len(original["sha256"]) == 64, entry.kind
        assert original["group"] == copy["group"], entry.kind
    lines = stderr.splitlines()
    for entry in bad(entries):
        assert str(entry.path) not in by_path, entry.kind
        assert_one_clear_line(lines, entry)
    summary = lines[-1]
    readable = 2 * len(good(entries))
    assert summary.startswith(f"{readable + len([e for e in bad(entries) if e.path.is_file()])} images")


def test_dedupe_out_with_a_name_near_the_length_limit(corpus: tuple[Path, list[CorpusFile]], tmp_path: Path) -> None:
    root, entries = corpus
    out = tmp_path / long_name("r", ".csv")
    result = run_cli("dedupe", root, "--out", out)
    assert result.returncode == 0, text(result.stderr)
    rows = list(csv.DictReader(io.StringIO(text(out.read_bytes()))))
    assert {r["path"] for r in rows} >= {str(e.path) for e in good(entries)}
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left behind


def test_dedupe_stdout_survives_a_narrow_code_page(corpus: tuple[Path, list[CorpusFile]]) -> None:
    """Windows gives a redirected stdout its ANSI code page (cp1252): non-ASCII file names must not abort the run."""
    root, entries = corpus
    result = run_cli("dedupe", root, env={"PYTHONIOENCODING": "cp1252"})
    assert result.returncode == 0, text(result.stderr)
    rows = list(csv.DictReader(io.StringIO(text(result.stdout))))
    assert {r["path"] for r in rows} >= {str(e.path) for e in good(entries)}


def test_data_check_json(corpus: tuple[Path, list[CorpusFile]]) -> None:
    root, entries = corpus
    result = run_cli("data", "check", root, "--json")
    assert result.returncode == 0, text(result.stderr)
    report = json.loads(result.stdout)
    assert report["counts"]["Benign"] == 2 * len(good(entries))
    reported = [item["path"] for item in report["unreadable"] + report["scan_problems"]]
    assert len(reported) == len(set(reported)), "a file is reported twice"
    assert set(reported) == {str(e.path) for e in bad(entries)}
    reasons = {item["path"]: item["reason"] for item in report["unreadable"] + report["scan_problems"]}
    for entry in bad(entries):
        assert any(word in reasons[str(entry.path)].lower() for word in entry.reason_words), entry.kind


def test_data_check_text(corpus: tuple[Path, list[CorpusFile]]) -> None:
    root, entries = corpus
    result = run_cli("data", "check", root)
    output = text(result.stdout)
    assert result.returncode == 0, text(result.stderr)
    lines = output.splitlines()
    assert f"Unreadable files: {len(bad(entries))}" in lines
    for entry in bad(entries):
        assert_one_clear_line(lines, entry)
    count_line = next(line for line in lines if line.strip().startswith("Benign"))
    assert count_line.split()[-1] == str(2 * len(good(entries)))


def test_permission_denied_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads through chmod 000, so a permission error is simulated where the reader opens the file."""
    root = tmp_path / "data"
    entries = make_corpus(root / "Benign", large=False)
    readable = [e.path for e in entries if e.good]
    locked = readable[0]
    original = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    records = hash_images(readable)
    errors = {r.path: r.error for r in records if r.error}
    assert errors == {locked: "permission denied"}
    prepared = load_labelled(root)
    assert (locked, "permission denied") in prepared.unreadable
    assert locked not in prepared.dataset.paths
    assert len(prepared.dataset) == len(readable) - 1


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "ICO", "PPM", "TGA", "EPS"])
def test_other_formats_named_jpg_are_refused_without_starting_ghostscript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """Only the JPEG, PNG, TIFF and BMP decoders run; Pillow would hand EPS content to Ghostscript, a program."""
    from PIL import EpsImagePlugin, Image

    started: list[object] = []
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kwargs: started.append(args))
    if fmt == "EPS":
        data = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto 8 8 lineto stroke\n%%EOF\n"
    else:
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (180, 90, 140)).save(buffer, fmt)
        data = buffer.getvalue()
    path = tmp_path / "disguised.jpg"
    path.write_bytes(data)
    (record,) = hash_images([path])
    assert record.error is not None and "not an image" in record.error
    assert started == []


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small real SVM and SE-CNN (the SE-CNN takes the batch fast path), trained on generated images."""
    import torch

    from allgui.core.models.classical import SVMClassifier
    from allgui.core.models.secnn import SECNNClassifier
    from allgui.core.models.store import save_model
    from tests.test_model_files import synthetic_training_set

    torch.set_num_threads(1)
    paths, labels = synthetic_training_set(tmp_path_factory.mktemp("train"))
    models = {
        "svm": SVMClassifier(image_size=16, pca_components=8, C=[1.0], cv_folds=2),
        "secnn": SECNNClassifier(
            image_size=24, width=8, blocks=2, convs_per_block=1, epochs=1, threads=1, device="cpu"
        ),
    }
    folders = {}
    for kind, model in models.items():
        model.fit(paths, labels)
        folders[kind] = tmp_path_factory.mktemp("models") / f"tiny-{kind}"
        save_model(model, folders[kind])
    return folders


@pytest.mark.parametrize(("kind", "fmt"), [("svm", "json"), ("secnn", "csv")])
def test_classify_cli(
    corpus: tuple[Path, list[CorpusFile]], model_folders: dict[str, Path], tmp_path: Path, kind: str, fmt: str
) -> None:
    from allgui.core.classes import CLASS_NAMES
    from allgui.core.export import row_from_cells
    from allgui.core.result import ReviewCode

    root, entries = corpus
    out = tmp_path / f"results.{fmt}"
    result = run_cli("classify", root / "Benign", "--model", model_folders[kind], "--out", out, "--batch-size", "4")
    assert result.returncode == 0, text(result.stderr)
    rows = [{k: "" if v is None else v for k, v in row.items()} for row in parse_rows(text(out.read_bytes()))]
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)), "an image has two rows"
    by_path = {row["path"]: row for row in rows}
    assert len(rows) == 2 * len(good(entries)) + len(bad(entries))
    for entry in good(entries):
        row = by_path[str(entry.path)]
        assert row["error"] == "" and row["predicted"] in CLASS_NAMES, entry.kind
        total = sum(float(row[f"p_{key}"]) for key in ("benign", "early_pre_b", "pre_b", "pro_b"))
        assert abs(total - 1) < 1e-4 and len(row["image_sha256"]) == 64, entry.kind
    for entry in bad(entries):
        row = by_path[str(entry.path)]
        assert row["predicted"] == "" and row["p_benign"] == "" and row["confidence"] == "", entry.kind
        assert any(word in row["error"].lower() for word in entry.reason_words), (entry.kind, row["error"])
        assert row_from_cells(row).codes == (ReviewCode.UNREADABLE,), (entry.kind, row["review_reasons"])


def test_huge_file_is_refused_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1.5 GiB file named .tif (a whole-slide scan, a video renamed): refused from its size, never loaded."""
    from allgui.core.imageio import read_rgb

    path = tmp_path / "whole-slide.tif"
    with open(path, "wb") as handle:
        handle.truncate(3 << 29)  # sparse: takes no disk space
    original = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        assert self != path, "the huge file was read into memory"
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(ImageReadError, match="too large"):
        read_rgb(path)
    (record,) = hash_images([path])
    assert record.error is not None and "too large" in record.error


def test_pipe_opened_by_name_is_refused_not_waited_on(tmp_path: Path) -> None:
    """Reading a FIFO blocks until someone writes to it; the reader must refuse it instead (alarm as a backstop)."""
    import signal

    from allgui.core.imageio import read_rgb

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)

    def hang(signum: int, frame: object) -> None:
        raise TimeoutError("read_rgb blocked on a pipe")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(10)
    try:
        with pytest.raises(ImageReadError, match="not a regular file"):
            read_rgb(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_review_session_keeps_labels_for_any_file_name(tmp_path: Path) -> None:
    """The technician's labels are saved, restored and exported even when a name is non-ASCII or not UTF-8."""
    from allgui.core.review_session import ReviewSession, autosave_path

    entries = [e for e in make_corpus(tmp_path / "folder", large=False) if e.good]
    names = {e.kind for e in entries}
    assert {"non_ascii_name", "long_non_ascii_name"} <= names
    session = ReviewSession([e.path for e in entries], folder=tmp_path / "folder")
    for index in range(len(entries)):
        session.set_label(index, index % 4)
    saved = session.save(autosave_path(tmp_path / "home", tmp_path / "folder"))
    restored = ReviewSession([e.path for e in entries], folder=tmp_path / "folder")
    assert restored.restore_labels(ReviewSession.load(saved)) == len(entries)
    assert [item.label for item in restored.items] == [index % 4 for index in range(len(entries))]
    exported = session.export(tmp_path / "labels.csv")
    lines = text(exported.read_bytes()).splitlines()
    assert all(any(str(e.path) in line for line in lines) for e in entries)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "home", "labels.csv"]  # no temporary files


def test_settings_keep_a_recent_folder_with_any_name(tmp_path: Path) -> None:
    from allgui.core.settings import Settings, load_settings, save_settings

    folders = [tmp_path / os.fsdecode(b"caf\xe9-latin1"), tmp_path / "Ausstrich-Äöü_血液", tmp_path / "plain"]
    settings = Settings()
    for folder in folders:
        settings.add_recent(folder)
    save_settings(settings, tmp_path)
    assert load_settings(tmp_path).recent_folders == settings.recent_folders
    assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.iterdir()).name]  # one file, no temporary
