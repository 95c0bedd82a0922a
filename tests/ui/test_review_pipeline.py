"""The Review tab predicts through the one pipeline: its results are ``classify_paths``' rows, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest

from allgui.core.classify import classify_paths
from allgui.core.models.base import BatchPredictor

from .helpers import close_window, open_window


@pytest.mark.parametrize("model_id", ["test-secnn", "test-svm"])
def test_review_predictions_are_the_rows_of_classify_paths(
    qtbot, store, image_folder: Path, data_dir: Path, model_id: str
) -> None:
    window = open_window(qtbot, store, model_id)
    review = window.review
    with qtbot.waitSignals([review.predictions_done, review.duplicates_done], timeout=120000):
        window.open_paths([image_folder])
    loaded = window.models.current
    items = review.session.items
    assert len(items) == 21 and all(item.error is None for item in items)
    rows = {row.path: row for row in classify_paths([item.path for item in items], loaded)}
    for item in items:
        row = rows[str(item.path)]
        assert item.probabilities == list(row.probabilities)  # equal floats, not close ones
        assert item.needs_review == row.needs_review and item.review_reasons == list(row.reasons)
    # And the rows are what the model's batch predictor gives for the images read one by one, as the Review tab
    # predicted before it called classify_paths (the SE-CNN's fast path; the SVM's own predict).
    classifier = loaded.classifier
    predictor = classifier.batch_predictor()
    assert (type(predictor) is BatchPredictor) == (model_id == "test-svm")
    images = [classifier.read(item.path) for item in items]
    direct = predictor.predict(images) if model_id == "test-secnn" else classifier.predict(images)
    for item, prediction in zip(items, direct, strict=True):
        assert item.probabilities == [float(p) for p in prediction.probabilities]
        assert item.review_reasons == prediction.review_reasons
    close_window(qtbot, window)
