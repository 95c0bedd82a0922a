"""One progress model per long task (allgui.core.progress), the training estimate, the wizard's verdict, and the
retraining wizard end to end on real images: a bar over the whole task, evaluating as its own phase."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from allgui.core.classes import CLASS_NAMES
from allgui.core.estimates import (
    EpochCost,
    duration_text,
    estimate_text,
    estimate_training,
    recorded_epoch_cost,
    training_phases,
)
from allgui.core.experiments import active_overlap_note, compare_to_active
from allgui.core.metrics import evaluate
from allgui.core.progress import Phase, ProgressModel, ProgressState, fit_progress
from allgui.resources import shipped_models_dir
from allgui.ui.batch_tab import BATCH_PHASES

from .helpers import close_window, open_window


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _model(phases, clock: Clock) -> tuple[ProgressModel, list[ProgressState]]:
    states: list[ProgressState] = []
    return ProgressModel(phases, states.append, clock), states


# ---- the progress model --------------------------------------------------------------------------------------------


def test_phases_cover_the_whole_task_by_their_weights() -> None:
    clock = Clock()
    model, states = _model([Phase("reading", 1), Phase("training", 3), Phase("evaluating", 1)], clock)
    model.update("reading", 50, 100)
    assert states[-1].fraction == pytest.approx(0.1) and states[-1].milestone
    model.update("training", 1, 4, "epoch 1/2")
    assert states[-1].phase == "training" and states[-1].number == 2 and states[-1].phases == 3
    assert states[-1].fraction == pytest.approx((1 + 3 * 0.25) / 5)
    model.update("reading", 100, 100)  # a late report for a phase already passed: the bar never runs back
    assert states[-1].phase == "training"
    model.note("reading", "fitting the SVM")  # a message filed under an earlier phase shows in the current one
    assert states[-1].phase == "training" and states[-1].message == "fitting the SVM"
    model.begin("evaluating", total=10)
    assert states[-1].fraction == pytest.approx(0.8) and states[-1].percent == 80
    model.finish()
    assert states[-1].finished and states[-1].fraction == 1.0 and states[-1].percent == 100


def test_time_left_comes_from_the_current_phase_and_skips_resumed_rows() -> None:
    """384 rows resumed from a journal are done at once: counted in the bar, not in the rate."""
    clock = Clock()
    model, states = _model(BATCH_PHASES, clock)
    model.begin("scanning")
    assert states[-1].fraction == 0 and states[-1].total == 0
    model.update("classifying", 384, 2767)
    assert states[-1].fraction == pytest.approx(384 / 2767)  # the bar is exactly done / total
    assert states[-1].rate is None and states[-1].seconds_left is None  # nothing measured yet
    clock.now += 0.5
    model.update("classifying", 416, 2767)
    assert states[-1].rate is None  # under a second: too early to trust
    clock.now += 9.5
    model.update("classifying", 704, 2767)
    assert states[-1].rate == pytest.approx(32.0)  # 320 images in 10 s, not 704 in 10 s
    assert states[-1].seconds_left == pytest.approx((2767 - 704) / 32.0)
    assert states[-1].percent == 704 * 100 // 2767
    assert "left in this phase" in states[-1].describe()


def test_a_fit_reports_reading_and_training_as_separate_phases() -> None:
    """An SE-CNN counts image reads and optimiser steps as one total: 2351 reads + 2 x 74 steps put the bar at
    95% in epoch 1 of 2. Routed into their phases, epoch 1 is the first half of training."""
    clock = Clock()
    phases = training_phases("secnn", 2767, 0.15, 2, 96, EpochCost(0.0113, 96, "test"), 2)
    assert [p.name for p in phases] == ["checking images", "reading images", "training", "calibrating", "evaluating"]
    model, states = _model(phases, clock)
    report = fit_progress(model, 2351, "reading images", "training")
    steps, total = 74, 2351 + 2 * 74
    report(2351, total, "reading images 2351/2351")
    assert states[-1].phase == "reading images" and states[-1].done == states[-1].total == 2351
    report(2351 + 37, total, "epoch 1/2, batch 37/74")
    weights = [p.weight for p in phases]
    start = sum(weights[:2]) / sum(weights)
    assert states[-1].phase == "training" and states[-1].done == 37 and states[-1].total == 2 * steps
    assert states[-1].fraction == pytest.approx(start + 0.25 * weights[2] / sum(weights))
    assert states[-1].fraction < 0.5
    report(2, 2, "fitting svm")  # a step without a count: the bar holds
    assert states[-1].fraction == pytest.approx(start + 0.25 * weights[2] / sum(weights))


# ---- the estimate before training ----------------------------------------------------------------------------------


def test_the_estimate_is_images_times_epochs_times_the_recorded_cost() -> None:
    manifest = {
        "id": "secnn-default",
        "kind": "secnn",
        "input_size": [96, 96],
        "fit": {"fit_seconds": 937.7, "epochs_run": 30, "device": "CPU"},
        "training": {"images": 2767},
    }
    cost = recorded_epoch_cost([{"kind": "svm"}, manifest], "secnn")
    assert cost is not None and cost.image_size == 96
    assert cost.seconds == pytest.approx(937.7 / (2767 * 30))
    assert "secnn-default" in cost.source and "30 epochs on 2767 images" in cost.source
    assert estimate_training(2352, 30, 96, cost) == pytest.approx(2352 * 30 * 937.7 / (2767 * 30))
    assert estimate_training(2352, 30, 48, cost) == pytest.approx(estimate_training(2352, 30, 96, cost) / 4)
    text = estimate_text("secnn", 2352, 30, 96, cost, "cpu", around_seconds=20)
    assert duration_text(estimate_training(2352, 30, 96, cost)) == "about 13 min" and "about 13 min" in text
    assert "estimate" in text and "2352 images x 30 epochs" in text
    # The wizard's own saves record their training images; a broken record is skipped, not trusted.
    saved = {"kind": "secnn", "input_size": [32, 32], "fit": {"fit_seconds": 8.0, "epochs_run": 2}}
    saved["training"] = {"train_images": 40}
    broken = {**saved, "fit": {"fit_seconds": "fast", "epochs_run": 2}}
    assert recorded_epoch_cost([broken, saved], "secnn").seconds == pytest.approx(0.1)
    assert recorded_epoch_cost([manifest], "svm") is None
    assert "no estimate" in estimate_text("svm", 100, 1, 32, None, "cpu")


def test_the_shipped_models_record_a_training_time() -> None:
    folder = shipped_models_dir() / "secnn-default"
    if not (folder / "manifest.json").is_file():
        pytest.skip("no shipped SE-CNN in this checkout")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    cost = recorded_epoch_cost([manifest], "secnn")
    assert cost is not None
    fit = manifest["fit"]
    assert cost.seconds == pytest.approx(fit["fit_seconds"] / (manifest["training"]["images"] * fit["epochs_run"]))


# ---- the verdict ---------------------------------------------------------------------------------------------------


def _metrics(truth: np.ndarray, predicted: np.ndarray) -> dict:
    return evaluate(truth, np.eye(len(CLASS_NAMES))[predicted])


def test_the_verdict_puts_benign_recall_first_and_respects_noise() -> None:
    truth = np.repeat(np.arange(4), 100)  # 100 held-out images per class
    perfect = _metrics(truth, truth)
    benign_missed = truth.copy()
    benign_missed[:15] = 1  # 15 hematogones called Early Pre-B
    worse_benign = compare_to_active(_metrics(truth, benign_missed), perfect)
    assert worse_benign.kind == "worse" and "worse on Benign recall" in worse_benign.text
    assert "keep the active one" in worse_benign.text
    sloppy = truth.copy()
    sloppy[100:160] = 3  # 60 Early Pre-B called Pro-B, Benign untouched
    assert compare_to_active(_metrics(truth, sloppy), perfect).kind == "worse"
    better = compare_to_active(perfect, _metrics(truth, sloppy))
    assert better.kind == "better" and "consider activating it" in better.text
    one_off = truth.copy()
    one_off[150] = 2  # one image apart: chance
    noise = compare_to_active(_metrics(truth, one_off), perfect)
    assert noise.kind == "noise" and "within noise on 400 held-out images" in noise.text
    assert compare_to_active(perfect, None).kind == "alone"


def test_the_overlap_note_says_when_the_comparison_flatters_the_active_model(tmp_path: Path) -> None:
    shipped = {"data": "taleqani-all", "images": 2767, "validation": "the newest 15% of each class"}
    note = active_overlap_note(shipped, "The active model", tmp_path, 0.15)
    assert "every image of the public taleqani-all set" in note and "flatters" in note
    assert "checkpoint and review thresholds" in note
    same = {"data_root": str(tmp_path), "test_fraction": 0.15, "split": "blocks"}
    assert "did not see these images" in active_overlap_note(same, "It", tmp_path, 0.15)
    assert "flatters" in active_overlap_note(same, "It", tmp_path, 0.25)
    assert "flatters" in active_overlap_note(None, "It", tmp_path, 0.15)


# ---- the wizard end to end -----------------------------------------------------------------------------------------


def test_wizard_with_an_empty_folder_field_lists_nothing(qtbot, store, monkeypatch, tmp_path: Path) -> None:
    for name in ("Benign", "Early", "Pre", "Pro"):  # a labelled folder as the current directory
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    window = open_window(qtbot, store, "test-svm")
    wizard = window.open_wizard()
    wizard.set_folder(str(tmp_path))
    assert wizard.folder_page.mapping_table.rowCount() == 4
    wizard.set_folder("")
    assert wizard.folder_page.mapping_table.rowCount() == 0  # Path("") is "." and listed these four
    assert wizard.folder_page.note.text() == "Choose a folder first." and not wizard.folder_page.isComplete()
    wizard.reject()
    close_window(qtbot, window)


def test_wizard_shows_an_estimate_one_bar_over_all_phases_and_a_verdict(qtbot, store, labelled_folder: Path) -> None:
    window = open_window(qtbot, store, "test-secnn")
    wizard = window.open_wizard()
    wizard.set_folder(labelled_folder)
    with qtbot.waitSignal(wizard.check_page.done, timeout=60000):
        wizard.next()
    wizard.next()
    page = wizard.model_page
    page.kind_combo.setCurrentIndex(page.kind_combo.findData("secnn"))
    page.epochs.setValue(2)
    page.image_size.setValue(32)
    page.device.setCurrentText("cpu")
    cost = recorded_epoch_cost([store.find("test-secnn").manifest], "secnn")
    train_images = 48 - round(48 * page.test_fraction.value())
    if cost is None:  # a checkout without the shipped models: the test SE-CNN recorded no training time
        assert "no estimate" in page.estimate.text()
    else:
        assert duration_text(estimate_training(train_images, 2, 32, cost)) in page.estimate.text()
        assert f"{train_images} images x 2 epochs" in page.estimate.text()
        assert "This is an estimate" in page.estimate.text()
    page.epochs.setValue(30)  # the estimate follows the options
    assert f"{train_images} images x 30 epochs" in page.estimate.text() or cost is None
    page.epochs.setValue(2)

    train_page = wizard.train_page
    shown: list[ProgressState] = []
    train_page.progress_shown.connect(shown.append)
    wizard.next()
    qtbot.waitUntil(train_page.isComplete, timeout=240000)
    phases = list(dict.fromkeys(state.phase for state in shown))
    assert phases == ["checking images", "reading images", "training", "calibrating", "evaluating"]
    fractions = [state.fraction for state in shown]
    assert fractions == sorted(fractions)  # one bar over the whole task, never back to 0
    weights = {p.name: p.weight for p in wizard.phases}
    total = sum(weights.values())
    training_end = (weights["checking images"] + weights["reading images"] + weights["training"]) / total
    first_epoch = [s for s in shown if s.phase == "training" and s.message.startswith("epoch 1/")]
    half_way = training_end - weights["training"] / total / 2
    assert first_epoch and max(s.fraction for s in first_epoch) <= half_way + 1e-9  # epoch 1 of 2: half of training
    evaluating = [s for s in shown if s.phase == "evaluating" and s.done < s.total]
    assert evaluating and all(s.percent < 100 for s in evaluating)  # evaluating is shown, not hidden behind 100%
    assert shown[-1].finished and shown[-1].done == 2 * wizard.result.metrics["n"]  # new and active model
    assert train_page.progress.value() == 100 and "trained in" in train_page.time_label.text()

    wizard.next()
    evaluation = wizard.evaluation_page
    result = wizard.result
    assert evaluation.verdict.text() == compare_to_active(result.metrics, result.compared.metrics).text
    assert "flatters" in evaluation.overlap.text()  # the test SE-CNN was fitted on the public set's images
    wizard.reject()
    close_window(qtbot, window)


def test_the_wizard_and_allgui_train_write_the_same_record(qtbot, store, data_dir: Path, tmp_path: Path) -> None:
    """One training run behind both: the same kind on the same real images with the same seed gives manifests with
    the same keys and the same held-out figures."""
    from allgui.cli.main import main
    from allgui.core.models.run_record import RUN_SCHEMA, RunRecord
    from allgui.core.training_run import run_training
    from tests.realsubset import linked_data_folder

    folder = linked_data_folder(data_dir, tmp_path / "data", per_class=16)
    window = open_window(qtbot, store, "test-svm")
    wizard = window.open_wizard()
    wizard.set_folder(folder)
    assert wizard.folder_page.validatePage()
    page = wizard.model_page
    page.kind_combo.setCurrentIndex(page.kind_combo.findData("svm"))
    page.image_size.setValue(16)
    assert not page.epochs.isEnabled() and not page.device.isEnabled()  # an SVM has neither
    assert page.validatePage()
    request = wizard.training_request()
    assert request.compare_with == "test-svm"
    wizard.result = run_training(request, store=store, phases=wizard.phases)  # what the training page runs
    assert wizard.result.compared is not None  # the active model on the same held-out images
    assert wizard.save_model("wizard-svm", activate=False)
    wizard.reject()
    close_window(qtbot, window)

    assert main(["train", str(folder), "--model", "svm", "--image-size", "16", "--id", "cli-svm"]) == 0
    by_wizard, by_cli = store.find("wizard-svm").manifest, store.find("cli-svm").manifest
    assert set(by_wizard) == set(by_cli)
    assert by_wizard["run_schema"] == by_cli["run_schema"] == RUN_SCHEMA
    assert by_wizard["training"] == by_cli["training"]
    assert set(by_wizard["metrics"]) == set(by_cli["metrics"]) == {"held_out"}
    assert by_wizard["metrics"]["held_out"] == by_cli["metrics"]["held_out"]
    assert by_wizard["options"] == by_cli["options"]
    record = RunRecord.read(by_cli)
    assert record.training.held_out_images == record.held_out["n"] > 0
    assert record.training.train_images + record.training.held_out_images == 64
