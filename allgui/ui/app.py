"""Application start-up (placeholder window until the GUI lands)."""

from __future__ import annotations

import sys


def run_app(argv: list[str]) -> int:
    from PySide6.QtWidgets import QApplication, QLabel

    from allgui import DISCLAIMER

    app = QApplication.instance() or QApplication([sys.argv[0], *argv])
    label = QLabel(f"AllGUI\n{DISCLAIMER}")
    label.resize(480, 200)
    label.show()
    return app.exec()
