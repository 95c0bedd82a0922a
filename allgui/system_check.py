"""Before Qt starts on Linux: are the system libraries its X11 (xcb) platform plugin needs installed?

Without them Qt aborts with "xcb-cursor0 or libxcb-cursor0 is needed ... Reinstalling the application may fix this
problem", which names the wrong package (it misses libxcb-icccm4 and libxcb-keysyms1 on a fresh Debian) and gives
the wrong advice. So the plugin's dependencies are asked of the dynamic linker first, and the one command that
installs what is missing is printed instead. Nothing here imports Qt itself.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Debian/Ubuntu packages for the libraries Qt 6's xcb plugin links or opens (Qt's own list for X11 platforms).
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}
# Everything the README's install line names: the packages above that a desktop Debian may lack.
README_PACKAGES = (
    "libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 "
    "libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3"
)
NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def xcb_plugin() -> Path | None:
    """Qt's X11 platform plugin in the installed PySide6, or None (not installed, or not Linux)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        plugin = Path(root) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return plugin
    return None


def missing_libraries(binary: Path) -> list[str]:
    """Shared libraries ``binary`` needs that the dynamic linker cannot find (empty when ``ldd`` is absent)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        output = subprocess.run([ldd, str(binary)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(set(NOT_FOUND.findall(output)))


def missing_xcb_libraries(plugin: Path | None = None) -> list[str]:
    """What Qt's xcb plugin would fail on: its linked libraries, and libxcb-cursor, which Qt opens at start."""
    plugin = plugin or xcb_plugin()
    if plugin is None:
        return []
    missing = set(missing_libraries(plugin))
    if ctypes.util.find_library("xcb-cursor") is None:
        missing.add("libxcb-cursor.so.0")
    return sorted(missing)


def uses_xcb(environ: dict[str, str] | None = None) -> bool:
    """Whether Qt would start its X11 platform here (not Wayland, offscreen, or another platform asked for)."""
    environ = dict(os.environ if environ is None else environ)
    if not sys.platform.startswith("linux"):
        return False
    platform = environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(";")[0].split(":")[0] == "xcb"
    return not (environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY"))


def install_advice(missing: list[str]) -> str:
    packages = sorted({PACKAGES.get(name, name) for name in missing})
    return (
        "AllGUI cannot open its window: Qt's X11 support needs system libraries that are not installed "
        f"({', '.join(missing)}). Install them with:\n\n    sudo apt-get install {' '.join(packages)}\n\n"
        "(Debian/Ubuntu; other distributions name these packages similarly). Reinstalling AllGUI does not help. "
        "The command-line tools (allgui classify, dedupe, ...) work without them."
    )


def check_gui_libraries() -> str | None:
    """Advice to print instead of starting Qt when its X11 libraries are missing; None when Qt can start."""
    if getattr(sys, "frozen", False) or not uses_xcb():
        return None  # the desktop bundle carries its own copies
    missing = missing_xcb_libraries()
    return install_advice(missing) if missing else None
