"""The comparison runner: one data folder, one split, every declared experiment trained and measured alike through
:mod:`allgui.core.training_run`.

The default split holds out, per class, the last-captured block of images (later imaging sessions), never splitting
a duplicate group; the random split is offered for comparison with the study and is labelled as such in every
output, because neighbouring captures then leak into the test part.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from allgui import DISCLAIMER
from allgui.core.classes import CLASS_NAMES
from allgui.core.dataset import LabelledDataset, PreparedData
from allgui.core.duplicates import find_groups, group_ids
from allgui.core.experiments.report import write_outputs
from allgui.core.experiments.specs import QUICK_IMAGES_PER_CLASS, SPLIT_LABELS, ExperimentSpec, select
from allgui.core.hashing import hash_images
from allgui.core.metrics import evaluate
from allgui.core.models import registry
from allgui.core.progress import Cancelled, CancelToken, LogCallback, ProgressCallback, check
from allgui.core.splits import block_split, stratified_group_split
from allgui.core.training_run import HeldOutImages, fit_classifier


def prepare(
    root: str | Path,
    per_class: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> PreparedData:
    """Scan a labelled folder, optionally keep ``per_class`` images per class spread over the capture order, then
    hash and group only those (the quick configuration never hashes the whole folder)."""
    full = LabelledDataset.from_folder(root, cancel=cancel)
    if per_class:
        keep: list[int] = []
        for label in range(len(CLASS_NAMES)):
            members = np.flatnonzero(full.labels == label)
            members = members[np.argsort(full.numbers[members], kind="stable")]
            if len(members):
                spread = np.linspace(0, len(members) - 1, min(per_class, len(members))).round().astype(int)
                keep.extend(members[np.unique(spread)].tolist())
        full = full.subset(sorted(keep))
    records = hash_images(full.paths, "phash", progress, cancel)
    readable = [i for i, r in enumerate(records) if r.error is None]
    dataset = full.subset(readable)
    kept = [records[i] for i in readable]
    groups = find_groups(kept)
    unreadable = [(r.path, r.error or "") for r in records if r.error is not None]
    return PreparedData(dataset, kept, groups, group_ids(len(kept), groups), unreadable)


def dedupe(indices: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Keep the first image (in capture order) of each duplicate group among ``indices``."""
    _, first = np.unique(ids[indices], return_index=True)
    return np.sort(indices[first])


def run_experiment(
    spec: ExperimentSpec,
    data: PreparedData,
    train_idx: np.ndarray,
    held_out: HeldOutImages,
    *,
    quick: bool = False,
    device: str = "auto",
    cnn_options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    log: LogCallback | None = None,
) -> dict[str, Any]:
    used = dedupe(train_idx, data.group_ids) if spec.dedupe_training else train_idx
    options = with_cnn_options(spec.kind, dict(spec.quick_options if quick else spec.options), cnn_options or {})
    options = registry.with_settings(spec.kind, options, {"device": device})
    fitted = fit_classifier(spec.kind, options, data, used, progress=progress, cancel=cancel, log=log)
    check(cancel)
    probabilities, predict_seconds = held_out.score(fitted.classifier)
    return {
        "name": spec.name,
        "title": spec.title,
        "kind": spec.kind,
        "study_row": spec.study_row,
        "options": options,
        "train_images": int(len(used)),
        "removed_by_dedup": int(len(train_idx) - len(used)),
        "test_images": len(held_out),
        "fit_seconds": round(fitted.seconds, 2),
        "predict_ms_per_image": round(1000 * predict_seconds / max(1, len(held_out)), 3),
        "metrics": evaluate(held_out.labels, probabilities),
        "fit": fitted.summary,
    }


def with_cnn_options(kind: str, options: dict[str, Any], cnn_options: dict[str, Any]) -> dict[str, Any]:
    """Apply SE-CNN settings (e.g. epochs, image size sized to the hardware) to the rows that train an SE-CNN."""
    return registry.with_network_options(kind, options, cnn_options)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def run_comparison(
    data_root: str | Path,
    *,
    names: Sequence[str] | None = None,
    split: str = "blocks",
    quick: bool = False,
    out_dir: str | Path | None = None,
    device: str = "auto",
    cnn_options: dict[str, Any] | None = None,
    seed: int = 0,
    command: str = "",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    log: LogCallback | None = None,
) -> dict[str, Any]:
    """Run the selected experiments on one split; write results.json, results.md and PNGs when ``out_dir`` is set.

    A failing experiment is recorded with its error and the others still run; on cancel the finished experiments
    are written and :class:`Cancelled` is raised.
    """
    if split not in SPLIT_LABELS:
        raise ValueError(f"split must be one of {', '.join(SPLIT_LABELS)}")
    specs = select(names)
    log = log or (lambda _: None)
    total = len(specs) + 1

    def outer(step: int, label: str) -> ProgressCallback:
        def forward(done: int, count: int, message: str) -> None:
            if progress is not None:
                progress(step, total, f"[{step + 1}/{total}] {label}: {message}")

        return forward

    data = prepare(data_root, QUICK_IMAGES_PER_CLASS if quick else None, outer(0, "hashing"), cancel)
    dataset = data.dataset
    if split == "blocks":
        train_idx, test_idx = block_split(dataset.labels, dataset.numbers, data.group_ids)
    else:
        train_idx, test_idx = stratified_group_split(dataset.labels, data.group_ids, seed=seed)
    log(
        f"{len(dataset)} images ({len(data.unreadable)} unreadable set aside), {len(data.groups)} duplicate groups; "
        f"{len(train_idx)} train / {len(test_idx)} test; {SPLIT_LABELS[split]}"
    )
    held_out = HeldOutImages([dataset.paths[i] for i in test_idx], dataset.labels[test_idx], cancel)
    results: dict[str, Any] = {
        "format_version": 1,
        "disclaimer": DISCLAIMER,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "data": {
            "root": str(Path(data_root).resolve()),
            "images": len(dataset),
            "unreadable": len(data.unreadable),
            "counts": dataset.counts(),
            "duplicate_groups": len(data.groups),
            "images_in_duplicate_groups": int(sum(len(g.members) for g in data.groups)),
        },
        "split": {
            "name": split,
            "label": SPLIT_LABELS[split],
            "train_images": int(len(train_idx)),
            "test_images": int(len(test_idx)),
            "test_counts": {n: int((dataset.labels[test_idx] == i).sum()) for i, n in enumerate(CLASS_NAMES)},
        },
        "quick": quick,
        "cnn_options": cnn_options or {},
        "machine": machine(),
        "experiments": [],
        "specs": [asdict(s) for s in specs],
    }
    try:
        for step, spec in enumerate(specs, start=1):
            check(cancel)
            log(f"--- {spec.name}: {spec.title}")
            try:
                result = run_experiment(
                    spec,
                    data,
                    train_idx,
                    held_out,
                    quick=quick,
                    device=device,
                    cnn_options=cnn_options,
                    progress=outer(step, spec.name),
                    cancel=cancel,
                    log=log,
                )
            except Cancelled:
                raise
            except Exception as error:  # noqa: BLE001 - one failing model must not lose the others' results
                log(f"{spec.name} failed: {type(error).__name__}: {error}")
                result = {
                    "name": spec.name,
                    "title": spec.title,
                    "kind": spec.kind,
                    "study_row": spec.study_row,
                    "error": f"{type(error).__name__}: {error}",
                }
            else:
                m = result["metrics"]
                log(
                    f"{spec.name}: accuracy {m['accuracy']:.3f}, macro F1 {m['f1_macro']:.3f}, "
                    f"fit {result['fit_seconds']:.0f} s"
                )
            results["experiments"].append(result)
            if out_dir is not None:
                write_outputs(results, Path(out_dir))  # after every experiment: a long run is never lost
        results["cancelled"] = False
    except Cancelled:
        results["cancelled"] = True
        if out_dir is not None:
            write_outputs(results, Path(out_dir))
        raise
    if progress is not None:
        progress(total, total, "done")
    return results
