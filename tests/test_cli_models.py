"""`allgui train` and `allgui models list|show|activate|import` on a small real data folder; Ctrl-C during
training stops cleanly and keeps the best checkpoint."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from allgui.cli.main import main
from allgui.core.models.store import ModelStore, load_model
from tests.realsubset import linked_data_folder

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture):
    """Run the CLI in this process (the Ctrl-C test below uses a real subprocess)."""

    def run(*args: object) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run


@pytest.fixture(scope="module")
def small_data(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return linked_data_folder(data_dir, tmp_path_factory.mktemp("data"), per_class=24)


def test_train_list_show_activate_import(small_data: Path, tmp_path: Path, isolated_home: Path, run_cli) -> None:
    trained = run_cli("train", small_data, "--model", "svm", "--image-size", "12", "--id", "svm-a")
    assert trained.returncode == 0, trained.stderr
    assert "held-out accuracy" in trained.stderr and "saved model svm-a" in trained.stdout
    manifest = json.loads(run_cli("models", "show", "svm-a", "--json").stdout)
    assert manifest["kind"] == "svm" and manifest["metrics"]["held_out"]["n"] > 0
    assert manifest["training"]["held_out_images"] == manifest["metrics"]["held_out"]["n"]

    outside = tmp_path / "colleague-model"
    trained = run_cli("train", small_data, "--model", "color-baseline", "--holdout", "0", "--out", outside)
    assert trained.returncode == 0, trained.stderr
    assert not json.loads((outside / "manifest.json").read_text())["metrics"]  # nothing held out, nothing claimed
    imported = run_cli("models", "import", outside)
    assert imported.returncode == 0, imported.stderr
    assert run_cli("models", "import", outside).returncode == 2  # already in the list

    assert run_cli("models", "activate", "svm-a").returncode == 0
    listing = run_cli("models", "list").stdout
    assert "* svm-a" in listing and "colleague-model" in listing and "(comparison only)" in listing
    assert run_cli("models", "activate", "colleague-model").returncode == 2  # the baseline is never active
    trained = run_cli("train", small_data, "--model", "rf", "--image-size", "12", "--id", "rf-b")
    assert trained.returncode == 0, trained.stderr
    assert run_cli("models", "activate", "rf-b").returncode == 0
    assert "* rf-b" in run_cli("models", "list").stdout
    assert ModelStore(isolated_home).active_id() == "rf-b"
    assert run_cli("models", "show", "nothing-here").returncode == 2
    assert run_cli("train", small_data, "--model", "svm", "--epochs", "3").returncode == 2


def test_ctrl_c_during_training_keeps_the_best_checkpoint(small_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    command = [
        sys.executable,
        "-m",
        "allgui",
        "train",
        str(small_data),
        "--model",
        "secnn",
        "--epochs",
        "40",
        "--image-size",
        "24",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("epoch 2/40"):
                process.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail("training did not reach epoch 2")
        rest_out, rest_err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, "".join(lines) + rest_err
    assert "kept the best checkpoint" in rest_out
    loaded = load_model(out)
    assert loaded.manifest["fit"]["cancelled"] is True
    assert 1 <= loaded.manifest["fit"]["best_epoch"] < 40
    assert loaded.manifest["training"]["cancelled"] is True


def test_an_se_cnn_trains_with_the_shipped_recipe_unless_told_otherwise() -> None:
    import argparse

    from allgui.cli.train import model_options
    from allgui.core.models.secnn.options import RECIPE as SECNN_RECIPE

    args = argparse.Namespace(model="secnn", image_size=24, epochs=3, device="cpu")
    assert model_options(args) == {**SECNN_RECIPE, "image_size": 24, "epochs": 3, "device": "cpu"}
    args = argparse.Namespace(model="svm", image_size=None, epochs=None, device="cpu")
    assert model_options(args) == {}


# ---- manifests saved before the run schema ---------------------------------------------------------------------

HELD_OUT = {"n": 48, "accuracy": 0.8125, "f1_macro": 0.8, "per_class_recall": {"Benign": 0.5, "Pro-B": 1.0}}
OLD_SHAPES = {
    # allgui train before the schema: flat metrics, training.holdout_images
    "cli-old": (
        {"data_root": "/data/lab", "counts": {"Benign": 60}, "train_images": 160, "holdout_images": 48},
        {**HELD_OUT, "evaluated_on": "block hold-out: last 15% of captures per class"},
    ),
    # the retraining wizard before the schema: metrics.held_out, training.test_images and test_fraction
    "wizard-old": (
        {"data_root": "/data/lab", "train_images": 160, "test_images": 48, "test_fraction": 0.15, "split": "blocks"},
        {"held_out": HELD_OUT},
    ),
}


@pytest.mark.parametrize("model_id", list(OLD_SHAPES))
def test_a_model_saved_in_an_older_shape_loads_and_shows_its_accuracy(
    model_id: str, isolated_home: Path, run_cli
) -> None:
    from allgui.core.models.run_record import RunRecord
    from allgui.core.models.summary import summary_rows
    from allgui.resources import shipped_models_dir

    folder = isolated_home / "models" / model_id
    shutil.copytree(shipped_models_dir() / "svm-taleqani", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    training, metrics = OLD_SHAPES[model_id]
    manifest.update(id=model_id, training=training, metrics=metrics)
    manifest.pop("run_schema", None)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = (folder / "manifest.json").read_bytes()

    loaded = load_model(folder)  # the protected digest does not cover these blocks: it still loads
    record = RunRecord.read(loaded.manifest)
    assert record.held_out["accuracy"] == 0.8125 and record.training.held_out_images == 48
    assert record.training.train_images == 160 and record.training.data_root == "/data/lab"
    row = next(line for line in run_cli("models", "list").stdout.splitlines() if model_id in line)
    assert "81.2%" in row
    rows = dict(summary_rows(loaded.manifest))
    assert rows["Held-out accuracy"] == "81.2% on 48 images; macro-F1 0.800"
    assert rows["Recall per class"] == "Benign 50.0%, Pro-B 100.0%"
    assert rows["Trained on"].startswith("160 images of /data/lab")
    assert (folder / "manifest.json").read_bytes() == before  # migrated in memory, never rewritten
