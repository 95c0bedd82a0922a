"""Render a screenshot of each part of the GUI with real data into docs/screenshots/ (PNG, via widget.grab()).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py [--data ../shared/data/taleqani-all]

Uses the shipped SE-CNN when resources/models holds one; otherwise trains a small SE-CNN first (a few minutes on
two cores). Works in a temporary user data directory, so the user's own models and settings are never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUT = REPO / "docs" / "screenshots"
SIZE = (1500, 900)


def wait(app, condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)
    for _ in range(20):  # let queued paints and layout settle
        app.processEvents()


def pick(data: Path, per_class: int, offset: int = 0) -> list[Path]:
    from allgui.core.dataset import LabelledDataset

    dataset = LabelledDataset.from_folder(data)
    chosen: list[Path] = []
    for label in range(4):
        members = [p for p, lab in zip(dataset.paths, dataset.labels, strict=True) if lab == label]
        step = max(1, len(members) // per_class)
        chosen += members[offset::step][:per_class]
    return chosen


def ensure_model(store, data: Path) -> str:
    """The shipped default model's id, or a small SE-CNN trained now on real images."""
    offered = [m for m in store.list() if m.offered and m.kind == "secnn"]
    if offered:
        return offered[0].id
    from allgui.core.dataset import LabelledDataset
    from allgui.core.models import registry

    print("no shipped SE-CNN: training a small one for the screenshots…", flush=True)
    full = LabelledDataset.from_folder(data)
    paths = set(pick(data, 60))
    keep = [i for i, p in enumerate(full.paths) if p in paths]
    subset = full.subset(keep)
    model = registry.create("secnn", image_size=64, width=12, blocks=4, epochs=10, device="cpu")
    model.fit(subset.paths, subset.labels, log=print)
    store.save(model, model_id="secnn-screenshots", title="SE-CNN (small, for screenshots)")
    return "secnn-screenshots"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("ALLGUI_TEST_DATA") or str(REPO.parent / "shared" / "data" / "taleqani-all")
    parser.add_argument("--data", type=Path, default=Path(default))
    args = parser.parse_args()
    if not args.data.is_dir():
        parser.error(f"no data folder at {args.data}")

    work = Path(tempfile.mkdtemp(prefix="allgui-shots-"))
    os.environ["ALLGUI_HOME"] = str(work / "home")
    from PySide6.QtWidgets import QApplication

    from allgui.core.models.store import ModelStore
    from allgui.core.scan import natural_key
    from allgui.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    store = ModelStore()
    model_id = ensure_model(store, args.data)
    store.activate(model_id)
    OUT.mkdir(parents=True, exist_ok=True)

    # A review folder: real images of every class, with neighbouring captures (near-duplicates in this release).
    review_folder = work / "smears"
    review_folder.mkdir()
    for path in pick(args.data, 8, offset=2) + sorted((args.data / "Pro").iterdir(), key=natural_key)[:12]:
        shutil.copy(path, review_folder / path.name)

    window = MainWindow(store=store)
    window.resize(*SIZE)
    window.show()
    wait(app, lambda: window.models.current is not None, 300, "the model")
    wait(app, lambda: window.models.network_device is not None, 120, "the device probe")

    window.open_paths([review_folder])
    review = window.review
    wait(app, lambda: len(review.session) and not review.predicting and review.table_model.rowCount(), 300, "review")
    wait(app, lambda: any(i.phash is not None for i in review.session.items), 120, "duplicates")
    wait(app, lambda: bool(review.class_averages), 300, "class averages")
    grouped = [i for i, item in enumerate(review.session.items) if item.duplicate_group is not None]
    row = grouped[0] if grouped else 0
    shown: list[int] = []
    review.details_shown.connect(shown.append)
    review.select_row(row)
    wait(app, lambda: row in shown, 60, "the selected image")
    review.image_panel.opacity.setValue(40)
    window.grab().save(str(OUT / "review.png"))
    print("review.png", flush=True)

    from allgui.ui.preferences import PreferencesDialog

    preferences = PreferencesDialog(window.settings, window)
    preferences.show()
    wait(app, lambda: True, 1, "")
    preferences.grab().save(str(OUT / "preferences.png"))
    preferences.reject()
    print("preferences.png", flush=True)

    batch = window.batch
    window.tabs.setCurrentWidget(batch)
    batch_folder = work / "batch"
    for path in pick(args.data, 50, offset=1):
        target = batch_folder / path.parent.name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    (batch_folder / "Pro" / "damaged.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    done: list[int] = []
    batch.finished.connect(done.append)
    batch.start(batch_folder)
    wait(app, lambda: bool(done), 600, "the batch")
    window.grab().save(str(OUT / "batch.png"))
    print("batch.png", flush=True)

    training = window.training
    window.tabs.setCurrentWidget(training)
    wait(app, training.run_button.isEnabled, 120, "the experiment list")
    training.set_selected(["svm", "rf", "color-baseline"])
    finished: list[object] = []
    training.finished.connect(finished.append)
    training.start(args.data)
    wait(app, lambda: bool(finished), 900, "the comparison")
    window.grab().save(str(OUT / "training.png"))
    training.views.setCurrentIndex(1)
    wait(app, lambda: True, 1, "")
    window.grab().save(str(OUT / "training-confusion.png"))
    print("training.png, training-confusion.png", flush=True)
    # The laboratory bundle, which has no torch: the network rows say they need the full bundle.
    from allgui.core import experiments
    from allgui.core.models import runtime

    installed, runtime.torch_installed = runtime.torch_installed, lambda: False
    training.views.setCurrentIndex(0)
    training.set_experiments(list(experiments.EXPERIMENTS))
    wait(app, lambda: True, 1, "")
    window.grab().save(str(OUT / "training-lab-bundle.png"))
    runtime.torch_installed = installed
    training.set_experiments(list(experiments.EXPERIMENTS))
    print("training-lab-bundle.png", flush=True)

    wizard = window.open_wizard()
    wizard.resize(1000, 720)
    # Consecutive captures, unequal per class: the data check then has duplicates and imbalance to report.
    labelled = work / "labelled"
    for folder, count in (("Benign", 25), ("Early", 45), ("Pre", 40), ("Pro", 45)):
        (labelled / folder).mkdir(parents=True)
        for path in sorted((args.data / folder).iterdir(), key=natural_key)[:count]:
            shutil.copy(path, labelled / folder / path.name)
    wizard.set_folder(labelled)
    wizard.next()
    wait(app, lambda: wizard.check_page.report is not None, 300, "the data check")
    wizard.grab().save(str(OUT / "wizard-data-check.png"))
    wizard.next()
    page = wizard.model_page
    page.kind_combo.setCurrentIndex(page.kind_combo.findData("secnn"))
    page.epochs.setValue(12)
    page.image_size.setValue(64)
    wizard.next()
    wait(app, wizard.train_page.isComplete, 900, "the wizard's training")
    wizard.grab().save(str(OUT / "wizard-training.png"))
    wizard.next()
    wait(app, lambda: True, 1, "")
    wizard.grab().save(str(OUT / "wizard-evaluation.png"))
    print("wizard-*.png", flush=True)
    wizard.reject()

    window.close()
    shutil.rmtree(work, ignore_errors=True)
    print(f"screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
