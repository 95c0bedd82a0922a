"""The training tab (quick comparison) and the retraining wizard, end to end on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from allgui.core.classes import CLASS_NAMES

from .helpers import close_window, open_window


def test_training_tab_runs_a_quick_comparison(qtbot, store, data_dir: Path, tmp_path: Path) -> None:
    window = open_window(qtbot, store, "test-svm")
    training = window.training
    window.tabs.setCurrentWidget(training)
    qtbot.waitUntil(training.run_button.isEnabled, timeout=60000)  # the experiment list loads in the background
    assert training.experiment_list.count() == 6
    training.set_selected(["svm", "color-baseline"])
    assert training.quick_radio.isChecked() and training.split_combo.currentData() == "blocks"
    with qtbot.waitSignal(training.finished, timeout=240000) as blocker:
        assert training.start(data_dir)
    results = blocker.args[0]
    assert results is not None
    assert [r["name"] for r in results["experiments"]] == ["svm", "color-baseline"]
    assert training.log_view.toPlainText().count("---") == 2
    assert training.table.rowCount() == 2
    for row, result in enumerate(results["experiments"]):
        assert training.table.item(row, 0).text() == result["name"]
        assert training.table.item(row, 1).text() == f"{100 * result['metrics']['accuracy']:.1f}"
        matrix = training.matrix_views[row].matrix
        assert matrix.sum() == results["split"]["test_images"]
        assert np.array_equal(matrix, np.asarray(result["metrics"]["confusion_matrix"]))
    bars = training.chart.items[0].opts["height"]
    assert np.allclose(bars, [r["metrics"]["accuracy"] for r in results["experiments"]])

    saved = training.save_results(tmp_path / "comparison")
    assert json.loads((saved / "results.json").read_text(encoding="utf-8"))["experiments"][0]["name"] == "svm"
    assert (saved / "confusion-svm.png").is_file()
    close_window(qtbot, window)


def _walk_to_training(qtbot, wizard, folder: Path, kind: str, epochs: int = 2, size: int = 32) -> None:
    wizard.set_folder(folder)
    page = wizard.folder_page
    assert page.isComplete()
    assert page.mapping() == {"Benign": "Benign", "Early": "Early Pre-B", "Pre": "Pre-B", "Pro": "Pro-B"}
    with qtbot.waitSignal(wizard.check_page.done, timeout=60000):
        wizard.next()
    report = wizard.check_page.report
    assert report.counts == dict.fromkeys(CLASS_NAMES, 12)
    assert "Images per class" in wizard.check_page.text.toPlainText()
    assert wizard.check_page.isComplete()
    wizard.next()
    model_page = wizard.model_page
    model_page.kind_combo.setCurrentIndex(model_page.kind_combo.findData(kind))
    model_page.epochs.setValue(epochs)
    model_page.image_size.setValue(size)
    model_page.device.setCurrentText("cpu")
    wizard.next()


def test_wizard_end_to_end_with_live_curves(qtbot, store, labelled_folder: Path) -> None:
    window = open_window(qtbot, store, "test-svm")
    models_before = [m.id for m in store.list()]
    wizard = window.open_wizard()
    _walk_to_training(qtbot, wizard, labelled_folder, "secnn")
    train_page = wizard.train_page
    qtbot.waitUntil(train_page.isComplete, timeout=240000)
    assert len(train_page.loss_plot.data["training"][0]) == 2  # one point per epoch
    assert set(train_page.accuracy_plot.curves) == {"training", "validation"}
    assert [m.id for m in store.list()] == models_before  # nothing saved yet
    wizard.next()
    evaluation = wizard.evaluation_page
    result = wizard.result
    assert result.metrics["n"] == result.record.training.held_out_images > 0
    assert result.compared.metrics["n"] == result.metrics["n"]  # the active model on the same images
    table = evaluation.table
    assert table.item(1, 1).text() == f"{100 * result.metrics['accuracy']:.1f}"
    assert table.item(1, 2).text() == f"{100 * result.compared.metrics['accuracy']:.1f}"
    evaluation.name_edit.setText("retrained-1")
    evaluation.activate_box.setChecked(True)
    wizard.next()  # Finish on the last page
    qtbot.waitUntil(lambda: window.models.current.id == "retrained-1", timeout=60000)
    assert wizard.saved_id == "retrained-1"
    assert store.active_id() == "retrained-1"
    saved = store.find("retrained-1").manifest["training"]["held_out_images"]
    assert saved == result.record.training.held_out_images
    # Retraining uses the shipped default model's recipe, with the epochs and size chosen in the wizard.
    from allgui.core.models.secnn.options import RECIPE as SECNN_RECIPE

    options = store.load("retrained-1").classifier.options
    colour = ("normalise", "stain_transfer", "grey_prob", "stain_jitter", "mask_corner", "convs_per_block")
    assert {k: options[k] for k in colour} == {k: SECNN_RECIPE[k] for k in colour}
    assert options["epochs"] == 2 and options["image_size"] == wizard.model_page.image_size.value()
    close_window(qtbot, window)


def test_cancelled_wizard_training_keeps_the_active_model(qtbot, store, labelled_folder: Path) -> None:
    window = open_window(qtbot, store, "test-svm")
    models_before = [m.id for m in store.list()]
    wizard = window.open_wizard()
    _walk_to_training(qtbot, wizard, labelled_folder, "secnn", epochs=200)
    train_page = wizard.train_page
    qtbot.waitUntil(lambda: "epoch 1/" in train_page.log_view.toPlainText(), timeout=240000)
    train_page.cancel_button.click()
    assert not train_page.running and "unchanged" in train_page.time_label.text()
    assert window.runner.wait(30000)
    assert not train_page.isComplete()
    wizard.reject()
    assert [m.id for m in store.list()] == models_before
    assert store.active_id() == "test-svm" and window.models.current.id == "test-svm"
    close_window(qtbot, window)
