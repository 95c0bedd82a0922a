"""The import contracts of pyproject.toml hold for the checkout, and they bite: a copy of the package with one
forbidden import per contract breaks every one of them. No violating file is ever written into the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.check import tool

ROOT = Path(__file__).resolve().parent.parent
_CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
CONTRACTS = {contract["id"]: contract["name"] for contract in _CONFIG["contracts"]}
# module (relative to the package copy) -> source; imports inside functions are the easy ones to miss.
VIOLATIONS = {
    "core-headless": {
        "core/_uses_qt.py": "def show():\n    from PySide6 import QtWidgets\n\n    return QtWidgets\n",
        "core/_uses_cli.py": "import allgui.ui.help\n",  # indirect: ui imports Qt
    },
    "ui-not-cli": {"ui/_uses_cli.py": "from allgui.cli import main\n"},
    "product-alone": {
        "_uses_training.py": "def card():\n    import training.model_card\n\n    return training.model_card\n",
        "_uses_tests.py": "from tests import foreign_images\n",
    },
}


def _lint(workdir: Path) -> subprocess.CompletedProcess[str]:
    # The package copy in workdir shadows the editable install: PYTHONPATH comes before site-packages.
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    return subprocess.run(
        [tool("lint-imports"), "--no-cache", "--config", str(workdir / "pyproject.toml")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "allgui", tmp_path / "allgui", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_checkout_keeps_every_contract() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    for name in CONTRACTS.values():
        assert f"{name} KEPT" in result.stdout


def test_the_copy_without_violations_keeps_them(tmp_path: Path) -> None:
    """The copy itself is analysed as the checkout is, so the breaks below come from the added modules alone."""
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize("contract", sorted(VIOLATIONS))
def test_a_forbidden_import_breaks_its_contract(contract: str, tmp_path: Path) -> None:
    package = _copy(tmp_path) / "allgui"
    for relative, source in VIOLATIONS[contract].items():
        (package / relative).write_text(source, encoding="utf-8")
    result = _lint(tmp_path)
    assert result.returncode != 0, result.stdout[-4000:]
    assert f"{CONTRACTS[contract]} BROKEN" in result.stdout, result.stdout[-4000:]
    for other in set(CONTRACTS) - {contract}:
        assert f"{CONTRACTS[other]} KEPT" in result.stdout, other
    for relative in VIOLATIONS[contract]:  # every added module is named in the report
        assert "allgui." + relative.removesuffix(".py").replace("/", ".") in result.stdout, relative


def test_every_contract_is_exercised() -> None:
    assert set(VIOLATIONS) == set(CONTRACTS)


def test_the_readme_and_ci_run_the_checks_before_the_tests() -> None:
    """A person who runs the README's test command runs what CI runs: the static checks, then pytest."""
    tail = ".venv/bin/python -m tests.check && .venv/bin/python -m pytest -p no:cacheprovider"
    readme = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if "[test]" in line]
    assert len(readme) == 1 and readme[0].endswith('.venv/bin/pip install -e ".[test]" && ' + tail), readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1] == tail and any('pip install -e ".[test]"' in line for line in ci[:-1])
