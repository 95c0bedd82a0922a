"""The comparison runner: the study's rows as declared specs, honest metrics, and every output of `compare`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from allgui.cli.main import main
from allgui.core.classes import CLASS_NAMES
from allgui.core.experiments import EXPERIMENTS, dedupe, select, with_cnn_options
from allgui.core.metrics import evaluate
from allgui.core.models.registry import KINDS


def test_specs_are_the_study_rows_plus_the_colour_baseline() -> None:
    by_name = {spec.name: spec for spec in EXPERIMENTS}
    assert list(by_name) == ["cnn-dedup", "cnn", "svm", "cnn-hash-svm", "rf", "color-baseline"]
    assert all(spec.kind in KINDS for spec in EXPERIMENTS)
    assert [s.name for s in EXPERIMENTS if s.dedupe_training] == ["cnn-dedup"]
    assert by_name["cnn-dedup"].kind == by_name["cnn"].kind == "secnn"
    assert by_name["cnn-dedup"].options == by_name["cnn"].options  # the one difference is the de-duplication
    assert sum(bool(s.study_row) for s in EXPERIMENTS) == 5 and not by_name["color-baseline"].study_row
    with pytest.raises(ValueError, match="unknown experiment"):
        select(["cnn", "knn"])


def test_dedupe_keeps_the_first_image_of_each_group() -> None:
    ids = np.array([7, 7, 3, 9, 9, 9, 4])
    kept = dedupe(np.array([0, 1, 2, 3, 4, 5, 6]), ids)
    assert kept.tolist() == [0, 2, 3, 6]
    assert dedupe(np.array([1, 4, 6]), ids).tolist() == [1, 4, 6]  # groups already cut down by the split


def test_cnn_options_reach_only_the_rows_that_train_an_se_cnn() -> None:
    options = {"epochs": 9, "image_size": 40}
    assert with_cnn_options("secnn", {"epochs": 5, "width": 12}, options) == {
        "epochs": 9,
        "width": 12,
        "image_size": 40,
    }
    hashed = with_cnn_options("cnn-hash-svm", {"cnn": {"width": 12}, "n_bits": 64}, options)
    assert hashed == {"cnn": {"width": 12, "epochs": 9, "image_size": 40}, "n_bits": 64}
    assert with_cnn_options("svm", {"image_size": 32}, options) == {"image_size": 32}


def test_metrics_on_a_worked_example() -> None:
    truth = np.array([0, 0, 1, 1, 2, 3, 3, 3])
    predicted = np.array([0, 1, 1, 1, 2, 3, 3, 0])
    probabilities = np.eye(4)[predicted] * 0.7 + 0.075
    m = evaluate(truth, probabilities)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["per_class_recall"] == {"Benign": 0.5, "Early Pre-B": 1.0, "Pre-B": 1.0, "Pro-B": pytest.approx(2 / 3)}
    assert m["recall_macro"] == pytest.approx((0.5 + 1 + 1 + 2 / 3) / 4)
    assert m["recall_weighted"] == pytest.approx(m["accuracy"])  # weighted recall is accuracy by definition
    # Precision: Benign 1/2, Early 2/3, Pre 1, Pro 1.
    assert m["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 1 + 1) / 4)
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [1, 0, 0, 2]]
    assert m["ece"] == pytest.approx(abs(0.775 - 0.75))


def test_compare_quick_writes_json_markdown_and_pngs(data_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "quick"
    assert main(["compare", str(data_dir), "--quick", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    names = [spec.name for spec in EXPERIMENTS]
    assert [r["name"] for r in results["experiments"]] == names
    assert results["split"]["name"] == "blocks" and results["quick"] is True
    for result in results["experiments"]:
        assert "error" not in result, result.get("error")
        m = result["metrics"]
        assert m["n"] == results["split"]["test_images"] == sum(results["split"]["test_counts"].values())
        assert set(m["per_class_recall"]) == set(CLASS_NAMES)
        assert np.asarray(m["confusion_matrix"]).sum() == m["n"]
        assert result["fit_seconds"] >= 0 and result["predict_ms_per_image"] > 0
        assert result["removed_by_dedup"] >= 0 and (result["removed_by_dedup"] == 0 or result["name"] == "cnn-dedup")
        with Image.open(out / f"confusion-{result['name']}.png") as png:
            assert png.size[0] > 200 and png.size[1] > 200
    table = (out / "results.md").read_text()
    assert "block split" in table and "| Experiment | Acc |" in table
    assert "not a diagnosis" in table and "not a diagnosis" in results["disclaimer"]
    assert all(f"| {name} |" in table for name in names)
    assert "| Experiment | Acc |" in capsys.readouterr().out


def test_random_split_is_labelled_in_every_output(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "random"
    assert (
        main(
            [
                "compare",
                str(data_dir),
                "--quick",
                "--split",
                "random",
                "--experiments",
                "color-baseline",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["split"]["name"] == "random" and "RANDOM" in results["split"]["label"]
    assert "RANDOM" in (out / "results.md").read_text()
    assert (out / "confusion-color-baseline.png").is_file()


def test_compare_refuses_unknown_experiments(data_dir: Path, tmp_path: Path) -> None:
    assert main(["compare", str(data_dir), "--experiments", "cnn,knn", "--out", str(tmp_path / "x")]) == 2
    assert main(["compare", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
