"""Render docs/screenshots/gallery.png: the Review tab's gallery with real images (offscreen, via window.grab()).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_gallery_screenshot.py [--data ../shared/data/taleqani-all]

A few images of each class, a few the shipped SE-CNN flags and two it gets wrong, opened as a technician would; the
two wrong ones moved to their class (the folder they come from) and two confirmed with the keys, one shown large. Works
in a temporary user data directory; the images are linked there, never copied into the project.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "docs"))

from make_screenshots import SIZE, pick, wait  # noqa: E402 - after the path set-up

OUT = REPO / "docs" / "screenshots" / "gallery.png"


def truth(path: Path) -> int:
    """The class of the folder a (linked) image comes from."""
    from allgui.core.classes import class_index

    return class_index(path.resolve().parent.name)  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("ALLGUI_TEST_DATA") or str(REPO.parent / "shared" / "data" / "taleqani-all")
    parser.add_argument("--data", type=Path, default=Path(default))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="allgui-gallery-shot-"))
    os.environ["ALLGUI_HOME"] = str(work / "home")
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from allgui.core.classes import CLASS_NAMES
    from allgui.core.classify import classify_paths
    from allgui.core.models.store import ModelStore
    from allgui.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    store = ModelStore()
    window = MainWindow(store=store)
    window.resize(*SIZE)
    window.show()
    wait(app, lambda: window.models.current is not None, 300, "the model")

    # Nine images of each class, two the model gets wrong, and up to three of each class that it flags for review.
    everything = pick(args.data, 10_000)
    rows = classify_paths(everything, window.models.current, group_duplicates=False)
    flagged = [Path(row.path) for row in rows if row.needs_review]
    mistaken = [Path(r.path) for r in rows if r.predicted != CLASS_NAMES[truth(Path(r.path))]]
    chosen = pick(args.data, 9, offset=4) + mistaken[:2]
    for name in ("Benign", "Early", "Pre", "Pro"):
        chosen += [path for path in flagged if path.parent.name == name][:3]
    folder = work / "smears"
    folder.mkdir()
    for path in dict.fromkeys(chosen):
        (folder / path.name).symlink_to(path.resolve())

    review = window.review
    done: list[bool] = []
    review.predictions_done.connect(lambda: done.append(True))
    window.open_paths([folder])
    wait(app, lambda: bool(done) and not window.runner.busy, 300, "the predictions")
    review.set_view_mode("gallery")
    view, model, session = review.gallery.view, review.gallery.model, review.session
    wait(app, lambda: True, 1, "")

    # The technician moves the wrongly classified images to their class, and confirms two.
    wrong = [i for i, item in enumerate(session.items) if item.predicted != truth(item.path)]
    keys = (Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3, Qt.Key.Key_4)
    for row in wrong[:2]:
        view.select_row(row)
        QTest.keyClick(view, keys[truth(session.items[row].path)])
    for row in model.group_rows(0)[1:3]:
        view.select_row(row)
        QTest.keyClick(view, Qt.Key.Key_Return)
    view.select_row(model.group_rows(1)[0])
    QTest.keyClick(view, Qt.Key.Key_Space)
    view.scrollToTop()
    wait(app, lambda: bool(review.gallery.thumbnails.cache) and not window.runner.busy, 60, "the thumbnails")
    wait(app, lambda: True, 1, "")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(OUT))
    print(OUT, flush=True)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
