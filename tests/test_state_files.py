"""Hostile or mistaken state files and model folders: nothing outside what the user named is deleted or replaced,
a bad file is refused (or ignored) with a reason naming it, and nothing hangs or exhausts memory.

Model folders are real shipped models copied and tampered with; the CLI runs as a real subprocess where a hang or
memory use is what is being tested.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from allgui.cli.main import main
from allgui.core.models.manifest import protected_digest
from allgui.core.models.store import ManifestError, ModelActivationError, ModelStore, load_model, sha256_of
from allgui.core.settings import Settings, load_settings, save_settings
from allgui.resources import shipped_models_dir

REPO = Path(__file__).resolve().parent.parent
# Runs the CLI and reports its own peak memory. VmHWM belongs to the process's own address space: ru_maxrss would
# also count the pages it shared with pytest when it was forked (Linux keeps that peak across exec).
MEASURED = (
    "import os, sys\n"
    "from allgui.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "if os.path.exists('/proc/self/status'):\n"
    "    peak = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
    "    sys.stderr.write(f'\\nmaxrss_kb={peak}\\n')\n"
    "sys.exit(code)\n"
)


def allgui(home: Path, *args: object, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALLGUI_HOME": str(home), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", MEASURED, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def peak_mib(result: subprocess.CompletedProcess) -> float:
    lines = [x for x in result.stderr.splitlines() if x.startswith("maxrss_kb=")]
    if not lines:
        pytest.skip("peak memory is read from /proc/self/status (Linux)")
    return int(lines[-1].split("=")[1]) / 1024


def copy_shipped(name: str, target: Path, **changes: object) -> Path:
    """A copy of a shipped model with manifest fields changed (the digest is left as it was)."""
    shutil.copytree(shipped_models_dir() / name, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest.update(changes)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def reseal(folder: Path, **changes: object) -> None:
    """What an attacker who controls the folder does: update every SHA-256 and the protected digest."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    manifest["files"] = {name: sha256_of(folder / name) for name in manifest["files"]}
    manifest["protected_sha256"] = protected_digest(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def run_cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def store_with_user_model(isolated_home: Path, tmp_path: Path) -> ModelStore:
    """The shipped models plus one user model, "my-svm", made active."""
    store = ModelStore()
    store.import_folder(copy_shipped("svm-taleqani", tmp_path / "colleague", id="my-svm"))
    store.activate("my-svm")
    return store


# ---- model ids -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["", ".", "..", "../../victim", "VICTIM", "a/b", ".hidden", "-rf", "x" * 65, 7])
def test_import_never_leaves_the_models_folder(
    store_with_user_model: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture, bad_id: object
) -> None:
    store = store_with_user_model
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("keep me")
    model_id = str(victim) if bad_id == "VICTIM" else bad_id  # an absolute path
    hostile = copy_shipped("svm-taleqani", tmp_path / "hostile", id=model_id)
    before = sorted(p.name for p in store.user_dir.iterdir())

    code, _, err = run_cli(capsys, "models", "import", hostile)

    assert code != 0 and "model id" in err and "not allowed" in err, err
    assert (victim / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in store.user_dir.iterdir()) == before
    assert store.active_id() == "my-svm" and store.load().id == "my-svm"


def test_saving_never_replaces_a_folder_that_is_not_a_model(tmp_path: Path, data_dir: Path) -> None:
    """`allgui train DATA --out ~/Documents` must not swap the user's folder for a model."""
    documents = tmp_path / "Documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("years of work")
    command = [sys.executable, "-m", "allgui", "train", str(data_dir), "--model", "svm", "--out", str(documents)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and "not an AllGUI model folder" in result.stderr, result.stderr
    assert (documents / "thesis.txt").read_text() == "years of work"

    from allgui.core.models.store import save_model

    loaded = load_model(shipped_models_dir() / "svm-taleqani")
    with pytest.raises(ModelActivationError, match="not an AllGUI model folder"):
        save_model(loaded.classifier, documents, model_id="documents")
    assert [p.name for p in documents.iterdir()] == ["thesis.txt"]
    with pytest.raises(ManifestError, match="not allowed"):
        ModelStore().save(loaded.classifier, "../escape")


# ---- the review thresholds and sizes in a manifest ---------------------------------------------------------------

TAMPERED_REVIEW = {
    "no confidence minimum": {"min_confidence": 0.0, "ood_threshold": 1.0, "benign_alert": 0.02},
    "huge OOD threshold": {"min_confidence": 0.83, "ood_threshold": 1e300, "benign_alert": 0.02},
    "OOD threshold removed": {"min_confidence": 0.83, "ood_threshold": None, "benign_alert": 0.02},
    "NaN": {"min_confidence": math.nan, "ood_threshold": 1.0, "benign_alert": 0.02},
    "a text": {"min_confidence": "0.8", "ood_threshold": 1.0, "benign_alert": 0.02},
    "alert above 1": {"min_confidence": 0.83, "ood_threshold": 1.0, "benign_alert": 5},
    "no thresholds": {},
}


@pytest.mark.parametrize("case", list(TAMPERED_REVIEW))
def test_tampered_review_thresholds_are_refused(tmp_path: Path, case: str) -> None:
    review = TAMPERED_REVIEW[case]
    edited = copy_shipped("secnn-default", tmp_path / "edited", review=review)
    with pytest.raises(ManifestError, match="changed after the model was saved"):
        load_model(edited)  # a hand edit: the protected digest no longer matches

    resealed = copy_shipped("secnn-default", tmp_path / "resealed")
    reseal(resealed, review=review)
    with pytest.raises(ManifestError, match=r"review|min_confidence") as caught:
        load_model(resealed)  # digest made to match: the bounds refuse it
    assert str(resealed) in str(caught.value)

    # Downgraded to the format before the digest: still refused by the bounds.
    old = copy_shipped("secnn-default", tmp_path / "old-format", review=review, format_version=1)
    with pytest.raises(ManifestError, match=r"review|min_confidence"):
        load_model(old)


def test_untampered_copy_and_old_format_with_sound_thresholds_load(tmp_path: Path) -> None:
    """Controls: an exact copy loads with the shipped thresholds; a manifest saved before the digest existed (format
    1, no digest) still loads when its thresholds are within bounds, so users' older models keep working."""
    shipped = load_model(shipped_models_dir() / "secnn-default")
    copy = load_model(copy_shipped("secnn-default", tmp_path / "copy"))
    assert copy.classifier.review == shipped.classifier.review
    assert copy.classifier.review.ood_threshold == 1.0 and copy.classifier.review.benign_alert is not None
    older = copy_shipped("secnn-default", tmp_path / "older", format_version=1)
    manifest = json.loads((older / "manifest.json").read_text())
    del manifest["protected_sha256"]
    (older / "manifest.json").write_text(json.dumps(manifest))
    assert load_model(older).classifier.review == shipped.classifier.review


def test_classify_refuses_a_model_whose_thresholds_were_zeroed(tmp_path: Path, data_dir: Path) -> None:
    """The probe's case: thresholds set so nothing is ever flagged; no rows come out of such a model."""
    folder = copy_shipped("secnn-default", tmp_path / "zeroed")
    reseal(folder, review={"min_confidence": 0, "ood_threshold": 1e300, "benign_alert": None})
    image = next((data_dir / "Benign").iterdir())
    result = allgui(tmp_path / "home", "classify", image, "--model", folder)
    assert result.returncode == 1 and "cannot use the model" in result.stderr, result.stderr
    assert "min_confidence" in result.stderr and "Traceback" not in result.stderr
    assert "path,predicted" not in result.stdout


CRAFTED_SIZES = {
    "secnn width": ("secnn-default", "secnn.json", ("network", "width"), 4096),
    "secnn input size": ("secnn-default", "secnn.json", ("options", "image_size"), 20000),
    "secnn blocks": ("secnn-default", "secnn.json", ("network", "blocks"), 50),
    "cnn-hash-svm width": ("cnn-hash-svm-taleqani", "cnn/secnn.json", ("network", "width"), 2048),
    "svm input size": ("svm-taleqani", "manifest.json", ("options", "image_size"), 100000),
    "rf trees": ("rf-taleqani", "manifest.json", ("options", "n_estimators"), 10**9),
}


@pytest.mark.parametrize("case", list(CRAFTED_SIZES))
def test_crafted_sizes_are_refused_within_bounded_memory(tmp_path: Path, case: str) -> None:
    name, file_name, (section, key), value = CRAFTED_SIZES[case]
    folder = copy_shipped(name, tmp_path / "crafted")
    data = json.loads((folder / file_name).read_text())
    data[section][key] = value
    (folder / file_name).write_text(json.dumps(data))
    reseal(folder)  # every checksum made to match

    result = allgui(tmp_path / "home", "models", "import", folder)

    assert result.returncode == 1 and "refused" in result.stderr and key in result.stderr, result.stderr
    assert not (tmp_path / "home" / "models" / "crafted").exists()
    assert peak_mib(result) < 1500, f"{peak_mib(result):.0f} MiB to refuse {case}"


def test_huge_manifest_is_refused_before_it_is_parsed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = copy_shipped("svm-taleqani", tmp_path / "huge")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["padding"] = "x" * (100 << 20)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "models", "import", folder)
    assert code == 1 and "larger than 1,048,576 bytes" in err, err
    assert not (ModelStore().user_dir / "svm-taleqani").exists()


# ---- state files that are not what they seem ----------------------------------------------------------------------


def make_hostile(path: Path, kind: str) -> None:
    """Put something other than a small JSON file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    elif kind == "deep":
        path.write_text("[" * 200_000 + "]" * 200_000)
    elif kind == "wrong-shape":
        path.write_text(json.dumps({"version": "abc", "active_model": ["x"], "recent_folders": 3}))
    else:
        raise AssertionError(kind)


HOSTILE = ["fifo", "dev-zero", "folder", "deep", "wrong-shape"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", HOSTILE)
def test_bad_active_model_file_is_ignored_with_a_warning(tmp_path: Path, data_dir: Path, kind: str) -> None:
    home = tmp_path / "home"
    make_hostile(home / "active_model.json", kind)
    listing = allgui(home, "models", "list", timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "* secnn-default" in listing.stdout
    assert "active_model.json" in listing.stderr and "Traceback" not in listing.stderr
    image = next((data_dir / "Pre").iterdir())
    classified = allgui(home, "classify", image, timeout=120)
    assert classified.returncode == 0 and ",secnn-default," in classified.stdout, classified.stderr


@pytest.mark.timeout(180)
def test_bad_user_model_folders_do_not_stop_list_or_classify(tmp_path: Path, data_dir: Path) -> None:
    home = tmp_path / "home"
    models = home / "models"
    copy_shipped("svm-taleqani", models / "bad-version", id="bad-version", format_version="abc")
    copy_shipped("svm-taleqani", models / "bad-review", id="bad-review", review={"min_confidence": "high"})
    for kind in ("fifo", "dev-zero", "deep"):
        make_hostile(models / f"bad-{kind}" / "manifest.json", kind)
    good = copy_shipped("svm-taleqani", tmp_path / "good", id="good-svm")
    assert allgui(home, "models", "import", good).returncode == 0

    listing = allgui(home, "models", "list", timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "good-svm" in listing.stdout and "secnn-default" in listing.stdout
    for name in ("bad-version", "bad-review", "bad-fifo", "bad-dev-zero", "bad-deep"):
        assert name not in listing.stdout
        assert f"{name}: manifest.json" in listing.stderr, (name, listing.stderr)
    assert "Traceback" not in listing.stderr and "internal error" not in listing.stderr

    image = next((data_dir / "Pro").iterdir())
    classified = allgui(home, "classify", image, "--model", "secnn-default")
    assert classified.returncode == 0 and ",secnn-default," in classified.stdout, classified.stderr
    shown = allgui(home, "models", "show", models / "bad-deep", timeout=60)
    assert shown.returncode == 1 and "nested too deeply" in shown.stderr, shown.stderr
    assert "RecursionError" not in shown.stderr and "Traceback" not in shown.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", HOSTILE)
def test_bad_settings_file_gives_defaults_and_one_warning(isolated_home: Path, kind: str) -> None:
    make_hostile(isolated_home / "settings.json", kind)
    if kind == "wrong-shape":  # valid JSON of the wrong types: the bad fields fall back, silently
        assert load_settings() == Settings()
        return
    with pytest.warns(UserWarning, match="settings.json") as caught:
        assert load_settings() == Settings()
    assert len(caught) == 1


def test_settings_round_trip_and_a_link_is_replaced_not_followed(isolated_home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_text("someone else's file")
    (isolated_home / "settings.json").symlink_to(outside)
    settings = Settings(last_open_dir="/data/smears")
    save_settings(settings)
    assert outside.read_text() == "someone else's file"
    assert not (isolated_home / "settings.json").is_symlink()
    assert load_settings() == settings


# ---- a data folder that cannot be written --------------------------------------------------------------------------


def unwritable_home(tmp_path: Path) -> Path:
    """A data folder below a plain file: nothing can be created in it, even by root (permissions do not stop root)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    return blocker / "home"


def test_cli_works_with_a_data_folder_that_cannot_be_written(tmp_path: Path, data_dir: Path) -> None:
    home = unwritable_home(tmp_path)
    image = next((data_dir / "Early").iterdir())
    classified = allgui(home, "classify", image)
    assert classified.returncode == 0 and ",secnn-default," in classified.stdout, classified.stderr
    activated = allgui(home, "models", "activate", "svm-taleqani")
    assert activated.returncode == 2 and "cannot be saved" in activated.stderr, activated.stderr
    assert "internal error" not in activated.stderr


def test_store_keeps_an_unsaved_choice_for_the_session(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "home")
    make_hostile(store.active_file, "folder")
    with pytest.warns(UserWarning, match="active_model.json"):
        assert store.active_id() == "secnn-default"
    loaded = store.activate("svm-taleqani")
    assert loaded.id == "svm-taleqani" and "cannot be saved" in (store.unsaved_reason or "")
    assert store.active_id() == "svm-taleqani" and store.active_file.is_dir()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", HOSTILE)
def test_bad_review_file_is_refused_with_its_name(tmp_path: Path, kind: str) -> None:
    from allgui.core.review_session import ReviewSession

    path = tmp_path / "reviews" / "smears-0123456789ab.json"
    make_hostile(path, kind)
    with pytest.raises(ValueError, match="smears-0123456789ab.json"):
        ReviewSession.load(path)


# ---- decoded-image memory ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def huge_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """49-megapixel PNGs that are small on disk (flat content), in 8-bit RGB and 16-bit grey."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("huge")
    rgb = np.zeros((7000, 7000, 3), np.uint8)
    rgb[::50] = (200, 120, 160)
    grey16 = np.zeros((7000, 7000), np.uint16)
    grey16[::40] = 50000
    folders = {"rgb": root / "rgb", "grey16": root / "grey16"}
    for kind, array, copies in (("rgb", rgb, 16), ("grey16", grey16, 6)):
        folders[kind].mkdir()
        first = folders[kind] / "field-01.png"
        Image.fromarray(array).save(first, compress_level=1)
        for number in range(2, copies + 1):
            shutil.copy(first, folders[kind] / f"field-{number:02d}.png")
    return folders


@pytest.mark.parametrize("kind", ["rgb", "grey16"])
def test_a_classical_batch_of_huge_images_stays_within_bounded_memory(
    tmp_path: Path, huge_images: dict[str, Path], kind: str
) -> None:
    """A batch of 16 such images held 16 full-size decoded images (13 GB for 64 of them); 16-bit conversion took
    400 MB per temporary. Now a batch keeps the model's 32-px input and conversion works in slices of rows."""
    result = allgui(tmp_path / "home", "classify", huge_images[kind], "--model", "svm-taleqani", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(str(huge_images[kind]))]
    assert len(rows) == len(list(huge_images[kind].iterdir())) and all(",svm-taleqani," in row for row in rows)
    assert peak_mib(result) < 1600, f"{peak_mib(result):.0f} MiB for {kind}"


@pytest.mark.parametrize("alert", [1e-14, 0.0])
def test_a_tiny_benign_alert_from_a_very_confident_network_is_accepted(tmp_path: Path, alert: float) -> None:
    """Fitting on validation images can give an alert level that underflows: it flags more, so it must save and
    load (a bound of 1e-12 refused it after the whole training)."""
    folder = copy_shipped("secnn-default", tmp_path / "confident")
    reseal(folder, review={"min_confidence": 0.83, "ood_threshold": 1.0, "benign_alert": alert})
    assert load_model(folder).classifier.review.benign_alert == alert
