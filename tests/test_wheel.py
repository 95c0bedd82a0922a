"""The wheel is the product: built from the checkout, it holds the package ``allgui`` alone with its shipped models,
and installed into a fresh virtual environment it lists and runs every shipped model from outside the checkout."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from allgui.resources import shipped_models_dir

ROOT = Path(__file__).resolve().parent.parent
# What the build reads, copied so that it runs on a clean tree: setuptools' build/ folder keeps modules that the
# checkout has since removed, and a stale one would ship. training/ and tests/ come along so that leaving them out
# is something the build does, not something the copy does.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "allgui", "resources", "training", "tests")
SHIPPED_IDS = sorted(p.name for p in shipped_models_dir().iterdir() if (p / "manifest.json").is_file())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    # No build isolation: the test venv's setuptools builds it, so the test needs no package registry.
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (built,) = out.glob("allgui-*.whl")
    return built


@pytest.mark.slow
def test_wheel_holds_allgui_alone_with_the_shipped_models(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"allgui"}, top
    assets = "allgui/assets/"
    for model_id in SHIPPED_IDS:
        folder = shipped_models_dir() / model_id
        expected = {
            f"{assets}models/{model_id}/{f.relative_to(folder).as_posix()}" for f in folder.rglob("*") if f.is_file()
        }
        assert expected <= set(names), model_id
    assert len(SHIPPED_IDS) == 4
    assert f"{assets}docs/USER_GUIDE.md" in names and f"{assets}icons/allgui.png" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", "make_icon.py"))]
    assert not [n for n in names if n.startswith(("training/", "tests/"))]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed --no-deps; torch, Qt and the rest come from the test venv's
    site-packages through a .pth file (``--system-site-packages`` would see the base Python's, not this venv's)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # Appended after the new venv's own site-packages, so its allgui wins. Only this folder is added: the editable
    # install's .pth files in it are not run, so the checkout is not mapped in.
    Path(purelib, "test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    # --ignore-installed: pip sees the test venv's editable allgui through the .pth and must not touch it.
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return python


def _run(python: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = python.parent / ("allgui.exe" if os.name == "nt" else "allgui")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(ALLGUI_HOME=str(cwd / "home"), OMP_NUM_THREADS="2")
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_installed_wheel_lists_and_runs_every_shipped_model(installed: Path, data_dir: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed), "-c", "import allgui, json; from allgui.resources import resources_dir; "
         "print(json.dumps([allgui.__file__, str(resources_dir())]))"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    package, resources = (Path(p) for p in json.loads(where.stdout))
    venv = installed.parent.parent
    assert venv in package.parents and venv in resources.parents, (package, resources)
    assert ROOT not in package.parents and ROOT not in resources.parents

    listing = _run(installed, ["models", "list"], tmp_path)
    assert listing.returncode == 0, listing.stderr
    listed = {line.lstrip("* ").split()[0] for line in listing.stdout.splitlines()[1:] if line.strip()}
    assert listed == set(SHIPPED_IDS), listing.stdout

    image = sorted((data_dir / "Pro").glob("*.jpg"))[0]
    for model_id in SHIPPED_IDS:
        out = tmp_path / f"{model_id}.csv"
        run = _run(installed, ["classify", str(image), "--model", model_id, "--out", str(out)], tmp_path)
        assert run.returncode == 0, (model_id, run.stderr[-3000:])
        lines = out.read_text(encoding="utf-8").splitlines()
        (row,) = csv.DictReader(line for line in lines if not line.startswith("#"))
        assert row["path"] == str(image) and row["model_id"] == model_id and row["error"] == "", row
        assert row["predicted"] in ("Benign", "Early Pre-B", "Pre-B", "Pro-B"), row
        assert abs(sum(float(row[k]) for k in ("p_benign", "p_early_pre_b", "p_pre_b", "p_pro_b")) - 1) < 1e-3
        if model_id == "secnn-default":
            assert row["predicted"] == "Pro-B", row
