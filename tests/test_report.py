"""`allgui report`: the case report of a real classification of 200 real images (PDF read back with pdftotext, HTML
with one embedded thumbnail per flagged image), and hostile results files: unreadable rows, an empty file, an
HTML-injection file name, an unknown model, and an --out that would overwrite the input."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from allgui import DISCLAIMER
from allgui.cli.main import main
from allgui.core.classes import CLASS_NAMES
from allgui.core.classify import classify_paths, csv_cell, parse_rows, render, write_rows
from allgui.core.dataset import LabelledDataset
from allgui.core.models.store import ModelStore
from allgui.core.report import limits_paragraph
from allgui.core.result import ResultRow
from tests.realsubset import spread_indices

REPO = Path(__file__).resolve().parent.parent
THUMBNAIL = 'src="data:image/png;base64,'


@pytest.fixture(scope="module")
def results(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `allgui classify` CSV: 200 real images (50 per class, spread over capture order), the default model."""
    dataset = LabelledDataset.from_folder(data_dir)
    paths = [dataset.paths[i] for i in spread_indices(dataset, 50)]
    store = ModelStore(tmp_path_factory.mktemp("home"))
    rows = classify_paths(paths, store.load("secnn-default"))
    out = tmp_path_factory.mktemp("results") / "results.csv"
    write_rows(rows, out)
    return out


@pytest.fixture(scope="module")
def pdftotext() -> str:
    found = shutil.which("pdftotext")
    if found is None:
        pytest.skip("pdftotext (Debian package poppler-utils) is not installed; .ci/run installs it when missing")
    return found


def report_html(*args: object) -> str:
    """Run `allgui report ... --out X.html` in this process and return the page."""
    out = Path(str(args[-1]))
    assert main(["report", *map(str, args[:-1]), "--out", str(out)]) == 0
    return out.read_text(encoding="utf-8")


def test_pdf_and_html_of_200_real_images(results: Path, pdftotext: str, tmp_path: Path) -> None:
    rows = parse_rows(results.read_text(encoding="utf-8"))
    assert len(rows) == 200 and not any(r["error"] for r in rows)
    flagged = [Path(r["path"]).name for r in rows if r["needs_review"] == "true"]
    assert flagged  # the default model flags a few of these (9 when this was written)

    pdf = tmp_path / "case.pdf"
    command = [sys.executable, "-m", "allgui", "report", results, "--out", pdf, "--reviewer", "R. Tester"]
    done = subprocess.run(list(map(str, command)), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert pdf.read_bytes().startswith(b"%PDF")
    text = subprocess.run([pdftotext, "-layout", pdf, "-"], capture_output=True, text=True, check=True).stdout
    # In the order drawn, each cell's text is in one piece (-layout puts the cells of a row side by side).
    drawn = subprocess.run([pdftotext, "-raw", pdf, "-"], capture_output=True, text=True, check=True).stdout
    joined = "".join(drawn.split())  # a long name may wrap inside its cell
    assert DISCLAIMER in " ".join(text.split())
    assert "secnn-default" in text and "R. Tester" in text and "taleqani-all" in text
    for name in CLASS_NAMES:  # the counts table: class, predicted, confirmed
        count = sum(r["predicted"] == name for r in rows)
        assert re.search(rf"(?<![\w-]){re.escape(name)}\s+{count}\s+—", text), (name, count)
    for name in flagged:
        assert "".join(name.split()) in joined, name
    assert "flow cytometry" in text  # the model card's limits

    page = report_html(results, tmp_path / "case.html")
    assert page.count(THUMBNAIL) == len(flagged) == page.count("<img ")
    for name in flagged:
        assert f"<b>{name}</b>" in page
    assert "http://" not in page and "https://" not in page  # self-contained


def test_unreadable_rows_and_an_empty_file_give_a_report(tmp_path: Path) -> None:
    errors = [ResultRow.unreadable(f"/lab/case/bad-{i}.jpg", "image file is truncated", "") for i in range(3)]
    only_errors = tmp_path / "errors.csv"
    write_rows(errors, only_errors)
    page = report_html(only_errors, tmp_path / "errors.html")
    assert "Unreadable images (3)" in page and page.count("image file is truncated") == 3
    assert "3 rows: 0 classified (0 need review), 3 unreadable" in page
    assert "No image needs review." in page and "The results file names no model." in page

    for name, text in (("empty.csv", ""), ("header.csv", render([])), ("empty.json", '{"rows": []}')):
        (tmp_path / name).write_text(text, encoding="utf-8")
        page = report_html(tmp_path / name, tmp_path / f"{name}.html")
        assert "No images: the results hold no rows." in page and DISCLAIMER in page

    (tmp_path / "bad.json").write_text('{"rows": 5}', encoding="utf-8")
    assert main(["report", str(tmp_path / "bad.json"), "--out", str(tmp_path / "bad.html")]) == 2
    assert not (tmp_path / "bad.html").exists()


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """Rows as a results CSV, with the disclaimer line and the formula guard, as ``allgui classify`` writes them."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(f"# {DISCLAIMER}\n")
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    return path


def test_hostile_names_are_escaped(results: Path, tmp_path: Path) -> None:
    row = parse_rows(results.read_text(encoding="utf-8"))[0]
    hostile = '=HYPERLINK("x")<img src=x onerror=alert(1)>&.jpg'
    copied = tmp_path / "case" / hostile
    copied.parent.mkdir()
    shutil.copyfile(row["path"], copied)
    rows = [
        dict(row, path=str(copied), needs_review="true"),
        dict(row, path=hostile, needs_review="true", duplicate_group="1"),  # relative: "=..." gets the guard
        dict(row, model_id="<b>unknown-model</b>", needs_review="false", duplicate_group="1"),
    ]
    source = write_csv(tmp_path / "hostile.csv", rows)
    assert "\"'=HYPERLINK(" in source.read_text(encoding="utf-8")  # the formula guard, taken off on reading

    page = report_html(source, tmp_path / "hostile.html")
    assert "<img src=x" not in page and "<b>unknown-model</b>" not in page
    assert page.count("=HYPERLINK(&quot;x&quot;)&lt;img src=x onerror=alert(1)&gt;&amp;.jpg") >= 3
    assert "'=HYPERLINK" not in page  # the guard is the CSV's, not part of the name
    assert "&lt;b&gt;unknown-model&lt;/b&gt;: it is not in this computer&#x27;s model store" in page
    assert "not available: file not found" in page  # the relative name, not here
    assert page.count(THUMBNAIL) == 1


def test_odd_values_of_a_json_file_are_shown_or_left_out(results: Path, tmp_path: Path) -> None:
    row = parse_rows(results.read_text(encoding="utf-8"))[0]
    odd = [
        dict(row, path="bad\u0000name\u202egpj.exe", needs_review=True, predicted="Pro-B"),
        dict(row, p_benign=10**400, confidence=[1], duplicate_group={"a": 1}, predicted="=1+1", needs_review=True),
        "not a row",
    ]
    source = tmp_path / "odd.json"
    source.write_text(json.dumps({"rows": odd}), encoding="utf-8")
    page = report_html(source, tmp_path / "odd.html")
    assert "not available: no file can have this name" in page and "bad\ufffdname\ufffdgpj.exe" in page
    assert "2 rows: 1 classified (1 need review), 0 unreadable, 1 without a class" in page
    (tmp_path / "many.csv").write_text("path\n" + "x\n" * 600_000, encoding="utf-8")
    assert main(["report", str(tmp_path / "many.csv"), "--out", str(tmp_path / "many.html")]) == 2


def test_images_found_under_another_root(results: Path, data_dir: Path, tmp_path: Path) -> None:
    """Results from another computer: each row's path re-rooted under --images-root, never outside it."""
    rows = parse_rows(results.read_text(encoding="utf-8"))[:3]
    elsewhere = [
        dict(r, path="C:\\lab\\" + str(Path(r["path"]).relative_to(data_dir.parent)).replace("/", "\\")) for r in rows
    ]
    elsewhere[0]["path"] = "/other-pc/../../../etc/passwd"
    for r in elsewhere:
        r["needs_review"] = "true"
    source = write_csv(tmp_path / "elsewhere.csv", elsewhere)
    page = report_html(source, "--images-root", data_dir.parent, tmp_path / "elsewhere.html")
    assert page.count(THUMBNAIL) == 2 and page.count("not available: file not found") == 1


def test_out_never_overwrites_the_input(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    named_html = tmp_path / "results.html"  # a results file may have any name
    shutil.copyfile(results, named_html)
    before = named_html.read_bytes()
    assert main(["report", str(named_html), "--out", str(named_html)]) == 2
    assert "is one of the inputs" in capsys.readouterr().err
    assert named_html.read_bytes() == before
    (tmp_path / "folder.pdf").mkdir()
    assert main(["report", str(results), "--out", str(tmp_path / "folder.pdf")]) == 2
    assert "it is a folder" in capsys.readouterr().err
    assert main(["report", str(results), "--out", str(tmp_path / "report.txt")]) == 2
    assert "name a .pdf or .html file" in capsys.readouterr().err


def test_limits_come_from_a_limits_section_else_the_opening_paragraph() -> None:
    card = "# Card: x\n\nWhat it is for.\nNot a diagnosis.\n\n## Model\n- a\n\n## Known limits\n\nOnly **one** lab.\n\n"
    assert limits_paragraph(card) == "Only one lab."
    assert limits_paragraph(card.replace("## Known limits", "## Other")) == "What it is for. Not a diagnosis."
    shipped = (REPO / "resources/models/secnn-default/MODEL_CARD.md").read_text(encoding="utf-8")
    assert "it never replaces flow cytometry" in (limits_paragraph(shipped) or "")


def test_a_model_without_a_card_says_so(results: Path, tmp_path: Path) -> None:
    rows = [dict(r, model_id="svm-taleqani") for r in parse_rows(results.read_text(encoding="utf-8"))[:5]]
    source = tmp_path / "svm.json"
    source.write_text(json.dumps({"rows": rows}), encoding="utf-8")
    page = report_html(source, tmp_path / "svm.html")
    assert "This model has no model card." in page and "pipeline.skops" in page
