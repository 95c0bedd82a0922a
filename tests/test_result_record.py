"""One result record: real rows of the shipped model carry coded review reasons that agree with the review policy,
the one exporter writes them (README's columns first and in order, then the new ones) and reads them back, the
drift warning counts codes whatever the words, and journals and review files of AllGUI 0.x still read."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from allgui.core.classes import BENIGN, CLASS_NAMES
from allgui.core.classify import classify_paths, parse_rows, read_journal, render, rows_from_cells
from allgui.core.dataset import LabelledDataset
from allgui.core.export import COLUMNS
from allgui.core.journal import journal_header, model_digest
from allgui.core.models.store import LoadedModel, ModelStore
from allgui.core.result import ResultRow, ReviewCode, ReviewReason, unlike_training_warning
from allgui.core.review_session import ReviewSession
from tests.realsubset import spread_indices

REPO = Path(__file__).resolve().parent.parent
NEW_COLUMNS = ("review_reasons", "reviewed_label", "reviewed_by", "reviewed_at")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    model = ModelStore(tmp_path_factory.mktemp("home")).load("secnn-default")
    # Stricter levels than the shipped ones, so that each code occurs among 80 real images.
    model.classifier.review.min_confidence = 0.999
    model.classifier.review.benign_alert = 1e-4
    return model


@pytest.fixture(scope="module")
def rows(data_dir: Path, loaded: LoadedModel) -> list[ResultRow]:
    dataset = LabelledDataset.from_folder(data_dir)
    paths = [dataset.paths[i] for i in spread_indices(dataset, 20)]
    return classify_paths([*paths, data_dir / "README.md"], loaded)  # and one file that is no image


def test_codes_agree_with_the_review_policy_on_real_rows(rows: list[ResultRow], loaded: LoadedModel) -> None:
    review = loaded.classifier.review
    classified = [r for r in rows if not r.error]
    assert len(classified) == 80
    seen: set[ReviewCode] = set()
    for row in classified:
        probabilities = np.array(row.probabilities)
        expected = set()
        if review.low_confidence(probabilities):
            expected.add(ReviewCode.LOW_CONFIDENCE)
        if review.benign_alerts(probabilities):
            expected.add(ReviewCode.BENIGN_ALERT)
        assert set(row.codes) - {ReviewCode.UNLIKE_TRAINING} == expected, row.path
        assert row.needs_review == bool(row.codes)
        assert all(reason.text for reason in row.reasons)  # the words a person reads beside each code
        seen |= set(row.codes)
    assert {ReviewCode.LOW_CONFIDENCE, ReviewCode.BENIGN_ALERT} <= seen
    benign_alerted = next(r for r in classified if ReviewCode.BENIGN_ALERT in r.codes)
    assert benign_alerted.predicted != CLASS_NAMES[BENIGN]
    (bad,) = [r for r in rows if r.error]
    assert bad.codes == (ReviewCode.UNREADABLE,) and bad.needs_review and bad.predicted is None


def test_the_readme_columns_come_first_and_in_order() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    documented = re.search(r"one row per image: `([a-z_0-9,]+)`", readme)
    assert documented is not None
    old = tuple(documented.group(1).split(","))
    assert (*old, *NEW_COLUMNS) == COLUMNS
    assert all(f"`{column}`" in readme for column in NEW_COLUMNS)


def test_csv_and_json_read_back_as_the_same_rows(rows: list[ResultRow]) -> None:
    text = render(rows, "csv")
    header = text.splitlines()[1].split(",")
    assert tuple(header) == COLUMNS
    cells = parse_rows(text)
    for row, cell in zip(rows, cells, strict=True):
        assert cell["review_reasons"] == ";".join(row.codes)  # codes in CSV, e.g. low_confidence;benign_alert
    from_csv = rows_from_cells(cells)
    from_json = rows_from_cells(parse_rows(render(rows, "json")))
    for row, csv_row, json_row in zip(rows, from_csv, from_json, strict=True):
        # The hash stays in the journal; an unreadable file's row names no model (README: path and error only).
        kept = dataclasses.replace(row, phash="", model_id="" if row.error else row.model_id)
        assert json_row == kept  # JSON keeps the reasons' words too
        assert csv_row.codes == row.codes
        assert dataclasses.replace(csv_row, reasons=row.reasons) == dataclasses.replace(
            kept, probabilities=csv_row.probabilities, confidence=csv_row.confidence
        )
        if row.probabilities is not None:  # six decimals in CSV
            assert np.allclose(csv_row.probabilities, row.probabilities, atol=5e-7)
    assert render(from_json, "json") == render(rows, "json")


def test_the_drift_warning_counts_codes_not_words(rows: list[ResultRow]) -> None:
    classified = [r for r in rows if not r.error]
    unlike = ReviewReason(ReviewCode.UNLIKE_TRAINING, "ungewöhnliches Bild")  # any words: the code is what counts
    drifted = [dataclasses.replace(r, reasons=(*r.reasons, unlike), needs_review=True) for r in classified]
    warning = unlike_training_warning(drifted)
    assert warning is not None and warning.startswith(f"{len(classified)} of {len(classified)} images")
    words_only = ReviewReason(ReviewCode.LOW_CONFIDENCE, "image is unlike the training images")
    relabelled = [dataclasses.replace(r, reasons=(words_only,)) for r in classified]
    assert unlike_training_warning(relabelled) is None
    assert unlike_training_warning(rows) is None  # 80 images of the training laboratory


def test_a_journal_of_allgui_0x_with_reasons_as_words_still_resumes(rows: list[ResultRow], loaded: LoadedModel) -> None:
    lines = [json.dumps(journal_header(loaded))]
    for row in rows:
        record = row.to_record()
        if "review_reasons" in record:  # as 0.x wrote it: the words only
            record["review_reasons"] = [reason.text for reason in row.reasons]
        lines.append(json.dumps(record))
    _, read, _ = read_journal(("\n".join(lines) + "\n").encode(), model_digest(loaded))
    assert read is not None and len(read) == len(rows)
    for row, again in zip(rows, read.values(), strict=True):
        assert again.codes == row.codes and again.probabilities == row.probabilities


def test_a_review_file_of_allgui_0x_loads_with_codes(rows: list[ResultRow], tmp_path: Path) -> None:
    session = ReviewSession([r.path for r in rows])
    for index, row in enumerate(rows):
        if row.error:
            session.set_error(index, row.error)
        else:
            session.set_prediction(index, row.probabilities, row.needs_review, row.reasons)
    session.reviewer = "A. Person"
    session.set_label(0, 2)
    data = session.to_dict()
    data["version"] = 1
    for item in data["items"]:
        item["review_reasons"] = [reason["text"] for reason in item["review_reasons"]]
        item.pop("reviewed_by")
    path = tmp_path / "old-review.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    loaded_session = ReviewSession.load(path)
    for item, again in zip(session.items, loaded_session.items, strict=True):
        assert [r.code for r in again.review_reasons] == [r.code for r in item.review_reasons]
    assert loaded_session.items[0].label == 2 and loaded_session.items[0].reviewed_by == ""
    exported = loaded_session.rows()[0]
    assert exported.reviewed_label == CLASS_NAMES[2] and exported.reviewed_at == session.items[0].reviewed_at
    assert session.rows()[0].reviewed_by == "A. Person"
