"""The review session on real images: predictions, duplicate groups, labels, JSON round trip, labelled export."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from allgui import DISCLAIMER
from allgui.core.classes import CLASS_NAMES
from allgui.core.dataset import LabelledDataset
from allgui.core.duplicates import find_groups
from allgui.core.export import COLUMNS
from allgui.core.hashing import hash_images
from allgui.core.result import ReviewCode, ReviewReason
from allgui.core.review_session import ReviewSession, autosave_path


@pytest.fixture
def images(data_dir: Path, tmp_path: Path) -> list[Path]:
    """Eight Pro-B images with capture numbers 1-8 (the release has near-duplicates among neighbours) and a copy."""
    folder = tmp_path / "images"
    folder.mkdir()
    sources = sorted((data_dir / "Pro").iterdir())[:8]
    paths = [Path(shutil.copy(p, folder / p.name)) for p in sources]
    copy = folder / f"copy-of-{sources[0].name}"
    shutil.copy(sources[0], copy)
    return [*paths, copy]


def test_duplicates_predictions_and_labels(images: list[Path], tmp_path: Path) -> None:
    session = ReviewSession(images, images[0].parent)
    records = hash_images(images)
    session.set_duplicates(records, find_groups(records))
    first, copy = 0, len(images) - 1
    assert session.items[first].duplicate_group is not None
    assert session.items[first].duplicate_group == session.items[copy].duplicate_group
    assert (copy, 0) in session.duplicates_of(first)

    session.reviewer = "R. Tester"
    low = ReviewReason(ReviewCode.LOW_CONFIDENCE, "confidence 0.70 below 0.90")
    session.set_prediction(0, [0.1, 0.2, 0.3, 0.4], needs_review=False)
    session.set_prediction(1, [0.7, 0.1, 0.1, 0.1], needs_review=True, reasons=[low])
    session.set_error(2, "image file is corrupt")
    session.set_prediction(copy, [0.1, 0.2, 0.3, 0.4], needs_review=False)
    session.confirm(0)
    session.set_label(1, CLASS_NAMES.index("Pro-B"))
    assert session.items[0].status == "confirmed" and session.items[0].label == 3
    assert session.items[1].status == "corrected"
    assert session.items[2].review_reasons == [ReviewReason(ReviewCode.UNREADABLE, "image file is corrupt")]
    assert session.items[1].reviewed_by == "R. Tester" and session.items[3].reviewed_by == ""
    with pytest.raises(ValueError):
        session.confirm(2)

    saved = session.save(tmp_path / "review.json")
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert data["disclaimer"] == DISCLAIMER and data["version"] == 2
    assert data["items"][1]["review_reasons"] == [{"code": "low_confidence", "text": "confidence 0.70 below 0.90"}]
    again = ReviewSession.load(saved)
    assert [i.to_dict() for i in again.items] == [i.to_dict() for i in session.items]
    assert again.items[1].review_reasons == [low] and again.items[1].reviewed_by == "R. Tester"

    exported = session.export(tmp_path / "rows.csv")
    lines = exported.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# {DISCLAIMER}"
    rows = list(csv.DictReader(lines[1:]))
    assert list(rows[0]) == list(COLUMNS)  # the columns of `allgui classify`, the person's label among them
    assert rows[1]["predicted"] == "Benign" and rows[1]["reviewed_label"] == "Pro-B"
    assert rows[1]["reviewed_by"] == "R. Tester" and rows[1]["reviewed_at"] == session.items[1].reviewed_at
    assert rows[1]["needs_review"] == "true" and rows[1]["review_reasons"] == "low_confidence"
    assert rows[0]["predicted"] == rows[0]["reviewed_label"] == "Pro-B" and rows[0]["review_reasons"] == ""
    assert rows[2]["error"] == "image file is corrupt" and rows[2]["review_reasons"] == "unreadable"
    assert rows[2]["predicted"] == rows[2]["reviewed_label"] == ""
    assert rows[3]["reviewed_label"] == rows[3]["reviewed_by"] == rows[3]["reviewed_at"] == ""  # not reviewed
    # Duplicate groups are counted from 1, as `allgui classify` counts them.
    assert (
        rows[first]["duplicate_group"] == rows[copy]["duplicate_group"] == str(session.items[first].duplicate_group + 1)
    )
    assert all(row["duplicate_group"] != "0" for row in rows)


def test_labelled_export_is_a_wizard_folder(images: list[Path], tmp_path: Path) -> None:
    session = ReviewSession(images)
    for index in range(4):
        session.set_prediction(index, [0.9, 0.05, 0.03, 0.02], needs_review=False)
    session.confirm(0)
    session.confirm(1)
    session.set_label(2, 3)
    session.set_label(3, 3)
    with pytest.raises(ValueError):
        ReviewSession(images).export_labelled(tmp_path / "nothing")
    counts = session.export_labelled(tmp_path / "labelled")
    assert counts == {"Benign": 2, "Early Pre-B": 0, "Pre-B": 0, "Pro-B": 2}
    dataset = LabelledDataset.from_folder(tmp_path / "labelled")
    assert dataset.counts() == counts
    assert sorted(p.name for p in dataset.paths) == sorted(p.name for p in images[:4])


def test_labels_restored_only_for_unchanged_files(images: list[Path], tmp_path: Path, isolated_home: Path) -> None:
    earlier = ReviewSession(images, images[0].parent)
    earlier.set_duplicates(hash_images(images), [])
    earlier.set_label(0, 1)
    earlier.set_label(1, 2)
    path = earlier.save(autosave_path(isolated_home, images[0].parent))
    assert path.parent == isolated_home / "reviews"
    shutil.copy(images[2], images[1])  # the second file now holds other bytes
    later = ReviewSession(images, images[0].parent)
    later.set_duplicates(hash_images(images), [])
    assert later.restore_labels(ReviewSession.load(path)) == 1
    assert later.items[0].label == 1 and later.items[1].label is None
