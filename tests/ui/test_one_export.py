"""One exporter: the Review tab, the Batch tab and `allgui classify` write the same bytes for the same images (CSV
and JSON), and a person's label adds reviewed_label, reviewed_by and reviewed_at to that row only."""

from __future__ import annotations

import json
from pathlib import Path

from allgui.cli.main import main
from allgui.core.classify import parse_rows

from .helpers import close_window, open_window


def test_review_batch_and_cli_exports_are_the_same_bytes(
    qtbot, store, ui_models: Path, image_folder: Path, tmp_path: Path
) -> None:
    cli = {fmt: tmp_path / f"cli.{fmt}" for fmt in ("csv", "json")}
    for out in cli.values():
        model = ui_models / "test-secnn"
        assert main(["classify", str(image_folder), "--model", str(model), "--out", str(out)]) == 0

    window = open_window(qtbot, store, "test-secnn")
    review, batch = window.review, window.batch
    with qtbot.waitSignals([review.predictions_done, review.duplicates_done], timeout=120000):
        window.open_paths([image_folder])
    window.tabs.setCurrentWidget(batch)
    with qtbot.waitSignal(batch.finished, timeout=120000):
        assert batch.start(image_folder)
    for fmt, expected in cli.items():
        written = {
            tab: tab_widget.export(tmp_path / f"{tab}.{fmt}")
            for tab, tab_widget in [("review", review), ("batch", batch)]
        }
        for tab, path in written.items():
            assert path.read_bytes() == expected.read_bytes(), f"{tab} tab's {fmt} differs from allgui classify's"
    rows = parse_rows(cli["csv"].read_text(encoding="utf-8"))
    assert len(rows) == 21 and sum(1 for r in rows if r["duplicate_group"]) == 2  # the byte copy and its original
    assert all(r["reviewed_label"] == "" for r in rows)

    # A person corrects one image: only its row changes, by the three reviewed_ columns.
    window.settings.reviewer = "T. Reviewer"
    first = review.session.items[0]
    corrected = (first.predicted + 1) % 4
    review.set_labels({0: corrected})
    labelled = parse_rows(review.export(tmp_path / "labelled.csv").read_text(encoding="utf-8"))
    changed = labelled[0]
    assert changed["path"] == str(first.path) == rows[0]["path"]
    assert changed["reviewed_label"] != changed["predicted"] and changed["reviewed_by"] == "T. Reviewer"
    assert changed["reviewed_at"] == first.reviewed_at and changed["reviewed_at"].endswith("+00:00")
    blank = {"reviewed_label": "", "reviewed_by": "", "reviewed_at": ""}
    assert {**changed, **blank} == rows[0] and labelled[1:] == rows[1:]
    document = json.loads(review.export(tmp_path / "labelled.json").read_text(encoding="utf-8"))
    assert document["rows"][0]["reviewed_by"] == "T. Reviewer" and document["rows"][1]["reviewed_label"] is None
    close_window(qtbot, window)
