"""The model card is rendered from its templates; a measurement file it needs is never silently left out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from allgui.core.models import store
from allgui.resources import shipped_models_dir
from training import model_card

FOLDER = shipped_models_dir() / "secnn-default"


def _inputs() -> tuple[dict, dict, int, dict[int, float]]:
    manifest = store.read_manifest(FOLDER)
    manifest["files"].pop(model_card.CARD)
    speed = {int(k): v for k, v in manifest["metrics"].pop("speed_ms_per_image_cpu").items()}
    heldout = json.loads((model_card.RESULTS / "heldout.json").read_text(encoding="utf-8"))
    return manifest, heldout, model_card.card_size(FOLDER, manifest), speed


@pytest.mark.parametrize("missing", ["ensemble.json", "stain-drift.json", "review-rule.json", "recency.json"])
def test_a_missing_results_file_is_an_error_naming_it(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    shutil.copytree(model_card.RESULTS, results)
    (results / missing).unlink()
    monkeypatch.setattr(model_card, "RESULTS", results)
    with pytest.raises(model_card.MissingResultError, match=str(results / missing)):
        model_card.render(*_inputs())


def test_without_a_held_out_evaluation_the_card_says_so() -> None:
    manifest, _, size, speed = _inputs()
    card = model_card.render(manifest, None, size, speed)
    assert "## Held-out evaluation\n\nNot run for this folder.\n\n## Recipe search" in card
    assert "$" not in card  # every placeholder was filled


def test_the_command_refuses_a_missing_held_out_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        model_card.main([str(tmp_path), "--heldout", str(tmp_path / "heldout.json")])
    assert "heldout.json is missing" in capsys.readouterr().err
