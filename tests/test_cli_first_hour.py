"""The command line as a new user meets it: wrong paths and misspelt options are named, an empty folder is not a
success, `models show` reads as a summary, and no command dies on a closed pipe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from allgui.resources import shipped_models_dir

REPO = Path(__file__).resolve().parent.parent


def allgui(*args: object, home: Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALLGUI_HOME": str(home), "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    command = [sys.executable, "-m", "allgui", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180, cwd=cwd)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_a_path_that_does_not_exist_is_reported_as_such(home: Path) -> None:
    result = allgui("/no/such/smears", home=home)
    assert result.returncode == 2 and "no such file or folder: /no/such/smears" in result.stderr, result.stderr
    assert "invalid choice" not in result.stderr
    typo = allgui("clasify", home=home)
    assert typo.returncode == 2 and "did you mean 'classify'?" in typo.stderr, typo.stderr


def test_a_misspelt_option_gets_the_nearest_match_and_the_commands_usage(home: Path, tmp_path: Path) -> None:
    result = allgui("classify", tmp_path, "--ouput", "x.csv", home=home)
    assert result.returncode == 2, result.stderr
    assert "--ouput: did you mean --out?" in result.stderr
    assert "usage: allgui classify" in result.stderr
    nested = allgui("data", "check", tmp_path, "--jsn", home=home)
    assert "usage: allgui data check" in nested.stderr and "did you mean --json?" in nested.stderr, nested.stderr


@pytest.mark.parametrize("command", ["classify", "dedupe"])
def test_a_folder_without_images_is_an_error_naming_what_was_skipped(home: Path, tmp_path: Path, command: str) -> None:
    folder = tmp_path / "exported"
    (folder / "notes").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt", "notes/report.pdf"):
        (folder / name).write_text("not an image")
    result = allgui(command, folder, home=home)
    assert result.returncode == 2, result.stderr
    assert "no images found" in result.stderr and "3 .txt files and 1 .pdf file were skipped" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "the folders are empty" in allgui(command, empty, home=home).stderr


def test_help_lists_the_self_test(home: Path) -> None:
    result = allgui("--help", home=home)
    assert result.returncode == 0 and "--self-test" in result.stdout


def test_models_show_is_a_readable_summary_and_json_on_request(home: Path) -> None:
    shown = allgui("models", "show", "secnn-default", home=home)
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(":", 1) for line in shown.stdout.splitlines())
    assert lines["Held-out accuracy"].strip().startswith("99.3% on 416 images")
    assert lines["Unlike training images above"].strip() == "1.0"
    assert "{" not in shown.stdout
    manifest = json.loads(allgui("models", "show", "secnn-default", "--json", home=home).stdout)
    assert manifest["id"] == "secnn-default" and manifest["review"]["ood_threshold"] == 1.0


def test_models_list_shows_the_accuracy_of_a_wizard_trained_model(home: Path) -> None:
    """The wizard stored its figures under metrics.held_out: they were shown as '-'."""
    folder = home / "models" / "wizard-svm"
    shutil.copytree(shipped_models_dir() / "svm-taleqani", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(id="wizard-svm", metrics={"held_out": {"accuracy": 0.8125, "n": 48}})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    listing = allgui("models", "list", home=home)
    row = next(line for line in listing.stdout.splitlines() if "wizard-svm" in line)
    assert "81.2%" in row, listing.stdout


@pytest.mark.parametrize(
    "args", [("models", "show", "secnn-default", "--json"), ("models", "list"), ("dedupe", "IMAGES"), ("--help",)]
)
def test_a_closed_pipe_ends_quietly(home: Path, data_dir: Path, args: tuple[str, ...]) -> None:
    """`allgui ... | head`: the reader goes away before the output is written."""
    args = tuple(str(data_dir / "Pro") if a == "IMAGES" else a for a in args)
    env = {**os.environ, "ALLGUI_HOME": str(home), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "allgui", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO
    )
    process.stdout.close()  # the reader is gone before anything is written
    _, stderr = process.communicate(timeout=180)
    text = stderr.decode()
    assert process.returncode in (0, 141), text
    assert "Traceback" not in text and "internal error" not in text and "BrokenPipe" not in text, text


def test_data_check_and_train_take_a_folder_to_class_mapping(home: Path, tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "lab"
    for source, target in (("Benign", "Normal-controls"), ("Early", "Early"), ("Pre", "Pre"), ("Pro", "Pro")):
        (folder / target).mkdir(parents=True)
        for path in sorted((data_dir / source).iterdir())[:2]:
            shutil.copy(path, folder / target / path.name)
    refused = allgui("data", "check", folder, home=home)
    assert refused.returncode == 2 and "--map FOLDER=CLASS" in refused.stderr, refused.stderr
    mapped = allgui("data", "check", folder, "--map", "Normal-controls=Benign", home=home)
    assert mapped.returncode == 0, mapped.stderr
    assert "Benign" in mapped.stdout and "unknown class" not in mapped.stdout
    bad = allgui("data", "check", folder, "--map", "Normal-controls", home=home)
    assert bad.returncode == 2 and "FOLDER=CLASS" in bad.stderr


def test_the_self_test_prints_no_offscreen_platform_noise(tmp_path: Path) -> None:
    result = allgui("--self-test", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "propagateSizeHints" not in result.stdout + result.stderr
