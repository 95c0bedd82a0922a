"""The network engine in the GUI: the Preferences' choice is saved and reloads the model in that engine, a settings
file with an engine that does not exist falls back to automatic, and without torch the choices that need it are
offered disabled, with the reason (Preferences, the training tab's experiments, the retraining wizard)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from allgui.core import experiments
from allgui.core.models import registry, runtime
from allgui.core.settings import Settings, load_settings, settings_path
from allgui.ui.preferences import PreferencesDialog

from .helpers import Accepting, close_window, open_window

ENGINE_NAMES = {"onnx": "ONNX Runtime", "torch": "torch"}


def _choose_engine(qtbot, window, engine: str) -> None:
    """Pick ``engine`` in a real Preferences dialog, accept it, and wait for the model to load again."""
    dialog = PreferencesDialog(window.settings, window)
    index = dialog.engine.findData(engine)
    assert index >= 0 and dialog.engine.model().item(index).isEnabled()
    dialog.engine.setCurrentIndex(index)
    with qtbot.waitSignal(window.models.loaded, timeout=120000):
        window.edit_preferences(Accepting(dialog))
    qtbot.waitUntil(lambda: not window.runner.is_running("model"), timeout=5000)  # its task's end comes after


def _saved_engine() -> str:
    return json.loads(settings_path().read_text(encoding="utf-8"))["engine"]


@pytest.mark.skipif(not runtime.torch_installed(), reason="choosing the torch engine needs torch")
def test_the_chosen_engine_is_saved_and_the_model_runs_in_it(qtbot, store) -> None:
    window = open_window(qtbot, store, "test-secnn")
    assert window.models.engine == "auto" and window.settings.engine == "auto"
    for engine in ("torch", "onnx"):
        before = window.models.current
        _choose_engine(qtbot, window, engine)
        loaded = window.models.current
        assert loaded is not before and loaded.id == "test-secnn"  # loaded again, the same model
        assert loaded.classifier.engine_choice == engine
        assert loaded.classifier.engine_name == ENGINE_NAMES[engine]
        assert window.status_label.text().endswith(f"({ENGINE_NAMES[engine]})"), window.status_label.text()
        assert window.models.engine == engine
        assert _saved_engine() == engine and load_settings().engine == engine

    # Accepting the dialog without changing the engine keeps the model as it is loaded.
    loaded = window.models.current
    window.edit_preferences(Accepting(PreferencesDialog(window.settings, window)))
    assert not window.runner.is_running("model") and window.models.current is loaded
    close_window(qtbot, window)

    # The next start loads the model in the saved engine.
    window = open_window(qtbot, store, "test-secnn")
    assert window.models.engine == "onnx" and window.models.current.classifier.engine_name == "ONNX Runtime"
    close_window(qtbot, window)


@pytest.mark.parametrize("value", ["cuda", "ONNX", "", None, 1, ["torch"]])
def test_a_saved_engine_that_does_not_exist_falls_back_to_automatic(qtbot, store, value) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**Settings(duplicate_threshold=3).to_dict(), "engine": value}
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_settings().duplicate_threshold == 3  # the rest of the file is read
    assert load_settings().engine == "auto"
    dialog = PreferencesDialog(load_settings())
    assert dialog.engine.currentData() == "auto"
    assert dialog.apply()[2] is False  # nothing chosen: the engine did not change


def test_a_saved_engine_is_used_when_the_window_opens(qtbot, store) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**Settings().to_dict(), "engine": "onnx"}), encoding="utf-8")
    window = open_window(qtbot, store, "test-secnn")
    assert window.settings.engine == "onnx" and window.models.engine == "onnx"
    assert window.models.current.classifier.engine_choice == "onnx"
    assert window.models.current.classifier.engine_name == "ONNX Runtime"
    close_window(qtbot, window)


# ---- without torch ---------------------------------------------------------------------------------------------
@pytest.fixture
def no_torch(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """As in the laboratory bundle: torch is not installed (the code asks through runtime.torch_installed)."""
    monkeypatch.setattr(runtime, "torch_installed", lambda: False)
    return monkeypatch


def _network_kinds() -> set[str]:
    kinds = {kind for kind, info in registry.KINDS.items() if info.has_network}
    assert kinds and kinds != set(registry.KINDS)
    return kinds


def test_without_torch_the_preferences_offer_the_torch_engine_disabled(qtbot, no_torch) -> None:
    dialog = PreferencesDialog(Settings())
    qtbot.addWidget(dialog)
    items = {dialog.engine.itemData(i): dialog.engine.model().item(i) for i in range(dialog.engine.count())}
    assert set(items) == set(runtime.ENGINE_CHOICES)
    assert not items["torch"].isEnabled()
    assert items["auto"].isEnabled() and items["onnx"].isEnabled()
    assert "full AllGUI bundle" in dialog.engine.toolTip() and "allgui[torch]" in dialog.engine.toolTip()

    # With torch there, the same dialog offers it.
    no_torch.setattr(runtime, "torch_installed", lambda: True)
    dialog = PreferencesDialog(Settings())
    qtbot.addWidget(dialog)
    assert dialog.engine.model().item(dialog.engine.findData("torch")).isEnabled()
    assert "full AllGUI bundle" not in dialog.engine.toolTip()


def test_without_torch_the_network_experiments_cannot_be_chosen(qtbot, store, no_torch) -> None:
    window = open_window(qtbot, store, "test-svm")
    training = window.training
    qtbot.waitUntil(training.run_button.isEnabled, timeout=60000)  # the experiments load in the background
    networks = _network_kinds()
    specs = {spec.name: spec for spec in experiments.EXPERIMENTS}
    needing = {name for name, spec in specs.items() if spec.kind in networks}
    assert needing and needing != set(specs)
    rows = {}
    for i in range(training.experiment_list.count()):
        item = training.experiment_list.item(i)
        rows[item.data(Qt.ItemDataRole.UserRole)] = item
    assert set(rows) == set(specs)
    for name, item in rows.items():
        if name in needing:
            assert not item.flags() & Qt.ItemFlag.ItemIsEnabled, name
            assert item.checkState() == Qt.CheckState.Unchecked, name
            assert item.text() == f"{name}: {specs[name].title} — needs the full bundle"
            assert "needs torch to train" in item.toolTip() and "full AllGUI bundle" in item.toolTip()
        else:
            assert item.flags() & Qt.ItemFlag.ItemIsEnabled, name
            assert item.checkState() == Qt.CheckState.Checked, name
            assert item.text() == f"{name}: {specs[name].title}"
    assert set(training.selected()) == set(specs) - needing

    # With torch, every experiment is offered and checked.
    no_torch.setattr(runtime, "torch_installed", lambda: True)
    training.set_experiments(list(experiments.EXPERIMENTS))
    items = [training.experiment_list.item(i) for i in range(training.experiment_list.count())]
    assert all(item.flags() & Qt.ItemFlag.ItemIsEnabled for item in items)
    assert set(training.selected()) == set(specs)
    assert not any("needs the full bundle" in item.text() for item in items)
    close_window(qtbot, window)


def test_without_torch_the_wizard_will_not_train_a_network(qtbot, store, no_torch, labelled_folder: Path) -> None:
    window = open_window(qtbot, store, "test-svm")
    wizard = window.open_wizard()
    wizard.set_folder(labelled_folder)
    with qtbot.waitSignal(wizard.check_page.done, timeout=60000):
        wizard.next()
    wizard.next()
    page = wizard.model_page
    assert wizard.currentPage() is page
    offered = [page.kind_combo.itemData(i) for i in range(page.kind_combo.count())]
    networks = _network_kinds() & set(offered)
    classical = set(offered) - networks
    assert networks and classical
    for kind in offered:
        page.kind_combo.setCurrentIndex(page.kind_combo.findData(kind))
        if kind in networks:
            assert not page.isComplete(), kind
            assert page.estimate.text().startswith("⚠ ") and "needs torch to train" in page.estimate.text()
            assert "full AllGUI bundle" in page.estimate.text()
        else:
            assert page.isComplete(), kind
            assert "needs torch" not in page.estimate.text() and not page.estimate.text().startswith("⚠")
        assert wizard.button(wizard.WizardButton.NextButton).isEnabled() == (kind in classical), kind

    # With torch, a network can be trained.
    no_torch.setattr(runtime, "torch_installed", lambda: True)
    page.kind_combo.setCurrentIndex(page.kind_combo.findData("secnn"))
    assert page.isComplete() and "needs torch" not in page.estimate.text()
    wizard.reject()
    close_window(qtbot, window)
