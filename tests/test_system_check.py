"""The first start on Linux: missing X11 libraries are found before Qt aborts, and the one install command is shown."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from allgui.system_check import (
    PACKAGES,
    README_PACKAGES,
    install_advice,
    missing_libraries,
    missing_xcb_libraries,
    uses_xcb,
    xcb_plugin,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ldd") is None, reason="needs gcc and ldd")
def test_missing_libraries_asks_the_dynamic_linker(tmp_path: Path) -> None:
    """A real shared object linked against a library that is then removed, as on a PC without libxcb-icccm4."""
    (tmp_path / "dep.c").write_text("int dep(void) { return 1; }\n")
    (tmp_path / "plugin.c").write_text("int dep(void);\nint plugin(void) { return dep(); }\n")
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-Wl,-soname,libfakexcb-icccm.so.4", "-o", "libfakexcb-icccm.so.4", "dep.c"],
        cwd=tmp_path,
        check=True,
    )
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", "plugin.so", "plugin.c", "-L.", "-l:libfakexcb-icccm.so.4"],
        cwd=tmp_path,
        check=True,
    )
    (tmp_path / "libfakexcb-icccm.so.4").unlink()
    assert missing_libraries(tmp_path / "plugin.so") == ["libfakexcb-icccm.so.4"]
    assert missing_libraries(Path(sys.executable)) == []


def test_which_platform_qt_would_use() -> None:
    assert uses_xcb({"DISPLAY": ":0"}) is sys.platform.startswith("linux")
    assert not uses_xcb({"QT_QPA_PLATFORM": "offscreen"})
    assert not uses_xcb({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"})
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb"}) is sys.platform.startswith("linux")


def test_advice_names_the_packages_and_not_a_reinstall() -> None:
    advice = install_advice(["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in advice
    assert "Reinstalling AllGUI does not help" in advice


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb platform is Linux's")
def test_gui_start_prints_the_install_command_instead_of_a_qt_abort(tmp_path: Path) -> None:
    missing = missing_xcb_libraries()
    if xcb_plugin() is None or not missing:
        pytest.skip("every library Qt's xcb plugin needs is installed on this machine")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "XDG_SESSION_TYPE", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=":99", ALLGUI_HOME=str(tmp_path / "home"))
    result = subprocess.run(
        [sys.executable, "-m", "allgui"], capture_output=True, text=True, env=env, timeout=120, cwd=REPO
    )
    assert result.returncode == 2, result.stderr
    packages = " ".join(sorted({PACKAGES.get(name, name) for name in missing}))
    assert f"sudo apt-get install {packages}" in result.stderr
    assert "Reinstalling the application" not in result.stderr + result.stdout


def test_readme_install_line_is_the_checks_line() -> None:
    """The README's one apt-get line is the check's list, and names only packages the check knows a library of."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"sudo apt-get install {README_PACKAGES}" in readme
    unknown = set(README_PACKAGES.split()) - set(PACKAGES.values())
    assert not unknown, unknown
