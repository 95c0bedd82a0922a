"""Shared fixtures: the real data folder, an isolated user data directory, and a check for leaked threads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

DATA_ENV = "ALLGUI_TEST_DATA"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real Taleqani images: skip when the variable is unset, fail when it points nowhere."""
    value = os.environ.get(DATA_ENV)
    if not value:
        pytest.skip(f"{DATA_ENV} is not set; point it at the taleqani-all folder to run tests on real images")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{DATA_ENV}={value} is set but is not a folder")
    return path


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own user data directory (models, settings, journals), never the real one."""
    home = tmp_path_factory.mktemp("allgui-home")
    monkeypatch.setenv("ALLGUI_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves a Python thread running (workers must be stopped and joined)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"test left threads running: {[t.name for t in leaked]}"
