"""Re-write a model folder in the current file layout, with the same weights and the same manifest figures.

    python -m training.repackage FOLDER...

Used once per shipped model when the ONNX graphs were added: the classifier writes its files again (an SE-CNN:
weights.pt unchanged in content, model.onnx exported from those weights, calibration.safetensors holding the same
numbers as calibration.pt), files the classifier does not write (the model card) are kept, and the manifest keeps
every field, with its file list and checksums renewed and a ``repackaged`` note. The protected fields (classes,
review thresholds, options) are not touched, so the protected digest stays what it was.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from allgui.core.models import store
from allgui.core.models.manifest import MANIFEST, check_manifest, protected_digest
from allgui.core.models.secnn.classifier import LEGACY_CALIBRATION_FILE
from allgui.core.statefile import write_json_atomic


def repackage(folder: Path) -> dict:
    loaded = store.load_model(folder)
    old = loaded.manifest
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        temporary = Path(scratch) / folder.name
        fields = loaded.classifier.save_files(temporary) or {}
        written = set(store._model_files(temporary))
        for name in old["files"]:
            if name not in written and Path(name).name != LEGACY_CALIBRATION_FILE:
                (temporary / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / name, temporary / name)  # e.g. MODEL_CARD.md
        manifest = {**old, **{k: v for k, v in fields.items() if k not in ("files", "options")}}
        manifest["files"] = {name: store.sha256_of(temporary / name) for name in store._model_files(temporary)}
        manifest["repackaged"] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "why": "ONNX graph and safetensors calibration added; same weights and figures",
            "library_versions": store.library_versions(),
        }
        if protected_digest(manifest) != old.get("protected_sha256"):
            raise SystemExit(f"{folder}: repackaging would change protected fields; refused")
        check_manifest(manifest, needs_ood=bool(old.get("review", {}).get("ood_threshold")))
        write_json_atomic(temporary / MANIFEST, manifest)
        store._replace_folder(temporary, folder)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for folder in args.folders:
        manifest = repackage(folder)
        print(f"{folder}: {', '.join(sorted(manifest['files']))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
