"""Application start-up: the window shows first, then the tabs, the model (and torch) load behind it."""

from __future__ import annotations

import logging
import sys
import time

STARTED = time.perf_counter()


def run_app(argv: list[str]) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from allgui import __version__
    from allgui.ui.main_window import MainWindow

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication([sys.argv[0], *argv])
    app.setApplicationName("AllGUI")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("AllGUI")
    window = MainWindow(build_now=False)
    window.show()
    logging.getLogger(__name__).info("window shown %.2f s after start-up", time.perf_counter() - STARTED)
    # The tabs import pyqtgraph and start the model loading; doing it after the first paint keeps start-up quick.
    QTimer.singleShot(0, window.build_tabs)
    paths = [arg for arg in argv if not arg.startswith("-")]
    if paths:
        window.tabs_ready.connect(lambda: window.open_paths(paths))
    return app.exec()
