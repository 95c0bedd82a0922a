"""The study's comparison as data: declared experiment specs run by one runner that measures them all alike.

One data folder, one split for every experiment. The default split holds out, per class, the last-captured block
of images (later imaging sessions), never splitting a duplicate group; the random split is offered for comparison
with the study and is labelled as such in every output, because neighbouring captures then leak into the test part.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from allgui import DISCLAIMER
from allgui.core.classes import CLASS_NAMES
from allgui.core.dataset import LabelledDataset, PreparedData
from allgui.core.duplicates import find_groups, group_ids
from allgui.core.hashing import hash_images
from allgui.core.imageio import read_rgb
from allgui.core.metrics import evaluate
from allgui.core.models import registry
from allgui.core.progress import Cancelled, CancelToken, LogCallback, ProgressCallback, check
from allgui.core.splits import block_split, stratified_group_split
from allgui.core.statefile import write_bytes_atomic

SPLIT_LABELS = {
    "blocks": "block split: last 15% of captures per class held out, duplicate groups kept whole",
    "random": "RANDOM stratified split (duplicate groups kept whole, but neighbouring captures of one session "
    "fall on both sides: optimistic, for comparison with the study only)",
}


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    title: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    quick_options: dict[str, Any] = field(default_factory=dict)
    # Drop all but the first image of every near-duplicate group from the training part before fitting.
    dedupe_training: bool = False
    study_row: str = ""  # the row of the study's table this reproduces ("" for our additions)


# SE-CNN settings sized for a two-core CPU machine (one torch thread; the full comparison takes about half an hour
# there). A 5-epoch, 32 px run reached only 74-76%: the network needs the epochs more than the pixels.
_SECNN_FULL: dict[str, Any] = {
    "image_size": 48,
    "width": 12,
    "epochs": 12,
    "patience": 5,
    "hue_jitter": 0.0,
    "threads": 1,
}
_SECNN_QUICK: dict[str, Any] = {
    "image_size": 24,
    "width": 8,
    "blocks": 2,
    "convs_per_block": 1,
    "epochs": 2,
    "batch_size": 16,
    "patience": 2,
    "hue_jitter": 0.0,
    "threads": 1,
}
_HASH_FULL: dict[str, Any] = {"cnn": dict(_SECNN_FULL)}
_HASH_QUICK: dict[str, Any] = {"cnn": _SECNN_QUICK, "C": [1.0]}

EXPERIMENTS: tuple[ExperimentSpec, ...] = (
    ExperimentSpec(
        "cnn-dedup",
        "SE-CNN, training set de-duplicated by hash",
        "secnn",
        _SECNN_FULL,
        _SECNN_QUICK,
        dedupe_training=True,
        study_row="CNN with hash-based de-duplication",
    ),
    ExperimentSpec(
        "cnn", "SE-CNN, all training images", "secnn", _SECNN_FULL, _SECNN_QUICK, study_row="CNN without de-duplication"
    ),
    ExperimentSpec(
        "svm",
        "SVM: scaling + PCA + SMOTE + grid search",
        "svm",
        {},
        {"image_size": 12, "C": [1.0, 10.0]},
        study_row="SVM (scaling, PCA, SMOTE, GridSearch)",
    ),
    ExperimentSpec(
        "cnn-hash-svm",
        "SE-CNN features + hash code + SVM",
        "cnn-hash-svm",
        _HASH_FULL,
        _HASH_QUICK,
        study_row="SVM with CNN features and hashing",
    ),
    ExperimentSpec(
        "rf",
        "Random Forest: augmentation + PCA + SMOTE",
        "rf",
        {},
        {"image_size": 12, "n_estimators": 30},
        study_row="Random Forest (augmentation, PCA, SMOTE)",
    ),
    ExperimentSpec(
        "color-baseline", "Colour statistics only (shortcut detector)", "color-baseline", {}, {"image_size": 32}
    ),
)

QUICK_IMAGES_PER_CLASS = 24


def experiment_names() -> list[str]:
    return [spec.name for spec in EXPERIMENTS]


def select(names: Sequence[str] | None) -> list[ExperimentSpec]:
    if not names:
        return list(EXPERIMENTS)
    by_name = {spec.name: spec for spec in EXPERIMENTS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
    return [by_name[n] for n in names]


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


class _TestImages:
    """The test images, decoded once for each way models read their files (``Classifier.decode_draft``)."""

    def __init__(self, paths: Sequence[Path], cancel: CancelToken | None) -> None:
        self.paths = list(paths)
        self.cancel = cancel
        self._decoded: dict[tuple[int, int] | None, list[Image.Image]] = {}

    def for_model(self, model: registry.Classifier) -> list[Image.Image]:
        draft = model.decode_draft
        if draft not in self._decoded:
            images = []
            for path in self.paths:
                check(self.cancel)
                images.append(read_rgb(path, draft=draft))
            self._decoded[draft] = images
        return self._decoded[draft]


def _predict(model: registry.Classifier, images: list[Image.Image], batch: int = 64) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    parts = [model.predict_proba(images[i : i + batch]) for i in range(0, len(images), batch)]
    seconds = time.perf_counter() - started
    return (np.concatenate(parts) if parts else np.zeros((0, len(CLASS_NAMES)))), seconds


def run_experiment(
    spec: ExperimentSpec,
    data: PreparedData,
    train_idx: np.ndarray,
    test_images: _TestImages,
    test_labels: np.ndarray,
    *,
    quick: bool = False,
    device: str = "auto",
    cnn_options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    log: LogCallback | None = None,
) -> dict[str, Any]:
    log = log or (lambda _: None)
    dataset = data.dataset
    used = dedupe(train_idx, data.group_ids) if spec.dedupe_training else train_idx
    options = with_cnn_options(spec.kind, dict(spec.quick_options if quick else spec.options), cnn_options or {})
    if registry.kind_info(spec.kind).needs_torch:
        options["device"] = device
    model = registry.create(spec.kind, **options)
    started = time.perf_counter()
    summary = model.fit(
        [dataset.paths[i] for i in used],
        dataset.labels[used],
        groups=data.group_ids[used],
        progress=progress,
        cancel=cancel,
        log=log,
    )
    fit_seconds = time.perf_counter() - started
    check(cancel)
    probabilities, predict_seconds = _predict(model, test_images.for_model(model))
    metrics = evaluate(test_labels, probabilities)
    return {
        "name": spec.name,
        "title": spec.title,
        "kind": spec.kind,
        "study_row": spec.study_row,
        "options": options,
        "train_images": int(len(used)),
        "removed_by_dedup": int(len(train_idx) - len(used)),
        "test_images": int(len(test_labels)),
        "fit_seconds": round(fit_seconds, 2),
        "predict_ms_per_image": round(1000 * predict_seconds / max(1, len(test_labels)), 3),
        "metrics": metrics,
        "fit": _jsonable(summary),
    }


def with_cnn_options(kind: str, options: dict[str, Any], cnn_options: dict[str, Any]) -> dict[str, Any]:
    """Apply SE-CNN settings (e.g. epochs, image size sized to the hardware) to the rows that train an SE-CNN."""
    if not cnn_options:
        return options
    if kind == "secnn":
        return {**options, **cnn_options}
    if kind == "cnn-hash-svm":
        return {**options, "cnn": {**options.get("cnn", {}), **cnn_options}}
    return options


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


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
    test_images = _TestImages([dataset.paths[i] for i in test_idx], cancel)
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
                    test_images,
                    dataset.labels[test_idx],
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


# ---- outputs ---------------------------------------------------------------------------------------------------


def write_outputs(results: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
    write_bytes_atomic(out_dir / "results.md", markdown_table(results).encode())
    for result in results["experiments"]:
        if "metrics" in result:
            image = confusion_png(
                result["metrics"]["confusion_matrix"], f"{result['name']} ({results['split']['name']} split)"
            )
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            write_bytes_atomic(out_dir / f"confusion-{result['name']}.png", buffer.getvalue())


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def markdown_table(results: dict[str, Any]) -> str:
    split = results["split"]
    lines = [
        f"# Model comparison{' (quick configuration)' if results.get('quick') else ''}",
        "",
        f"*{DISCLAIMER}*",
        "",
        f"- Split: **{split['label']}**",
        f"- Data: `{results['data']['root']}`: {results['data']['images']} images, "
        f"{split['train_images']} train / {split['test_images']} test "
        f"({', '.join(f'{k} {v}' for k, v in split['test_counts'].items())} in test)",
        f"- Run: {results['created']} on {results['machine'].get('processor')} "
        f"({results['machine'].get('cpu_count')} CPUs)"
        + (f"; command `{results['command']}`" if results["command"] else ""),
        *(
            [f"- SE-CNN rows run with {', '.join(f'{k}={v}' for k, v in results['cnn_options'].items())}"]
            if results.get("cnn_options")
            else []
        ),
        "",
        "Percentages on the held-out part. Weighted averages as the study reports them; macro averages and per-class "
        "recall show the small Benign class.",
        "",
        "| Experiment | Acc | P (w) | R (w) | F1 (w) | P (m) | R (m) | F1 (m) | Recall Benign / Early / Pre / Pro "
        "| De-dup removed | Fit s | Predict ms/img |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["experiments"]:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error'][:80]} |  |  |  |  |  |  |  |  |  |  |")
            continue
        m = r["metrics"]
        recalls = " / ".join(_pct(m["per_class_recall"][n]) for n in CLASS_NAMES)
        lines.append(
            f"| {r['name']} | {_pct(m['accuracy'])} | {_pct(m['precision_weighted'])} | {_pct(m['recall_weighted'])} "
            f"| {_pct(m['f1_weighted'])} | {_pct(m['precision_macro'])} | {_pct(m['recall_macro'])} "
            f"| {_pct(m['f1_macro'])} | {recalls} | {r['removed_by_dedup']} | {r['fit_seconds']:.0f} "
            f"| {r['predict_ms_per_image']:.1f} |"
        )
    lines += ["", "| Experiment | What it is | Study row |", "|---|---|---|"]
    lines += [
        f"| {r['name']} | {r['title']} | {r.get('study_row') or '(ours: shortcut detector)'} |"
        for r in results["experiments"]
    ]
    if results.get("cancelled"):
        lines += ["", "**Cancelled before all experiments finished.**"]
    return "\n".join(lines) + "\n"


def confusion_png(matrix: list[list[int]], title: str, cell: int = 72) -> Image.Image:
    """A confusion matrix as an image (rows: true class, columns: predicted), shaded by row share."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = ["Benign", "Early", "Pre-B", "Pro-B"]
    font = ImageFont.load_default(size=13)
    left, top = 110, 60
    size = len(names)
    image = Image.new("RGB", (left + size * cell + 20, top + size * cell + 50), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill="black", font=font)
    draw.text((left, top - 40), "predicted", fill="black", font=font)
    draw.text((10, top + size * cell + 20), "rows: true class", fill="black", font=font)
    for j, name in enumerate(names):
        draw.text((left + j * cell + 6, top - 20), name, fill="black", font=font)
    for i, name in enumerate(names):
        draw.text((10, top + i * cell + cell // 2 - 7), name, fill="black", font=font)
        for j in range(size):
            shade = int(255 - 200 * shares[i, j])
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 2, top + (i + 1) * cell - 2)
            draw.rectangle(box, fill=(shade, shade, 255), outline=(160, 160, 160))
            ink = "white" if shares[i, j] > 0.55 else "black"
            draw.text((box[0] + 8, box[1] + cell // 2 - 16), f"{int(counts[i, j])}", fill=ink, font=font)
            draw.text((box[0] + 8, box[1] + cell // 2 + 2), f"{100 * shares[i, j]:.0f}%", fill=ink, font=font)
    return image


# ---- a retrained model against the active one ------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    kind: str  # "worse", "better", "noise" or "alone" (nothing to compare with)
    text: str


def _noise(p_new: float, p_old: float, count: int) -> float:
    """Half-width of a 95% interval for the difference of two proportions over ``count`` images each.

    The two models are scored on the same images, so this unpaired width is on the safe (wide) side: a difference
    inside it is not evidence either way. Never below one image's worth.
    """
    if count <= 0:
        return math.inf
    spread = 1.96 * math.sqrt((p_new * (1 - p_new) + p_old * (1 - p_old)) / count)
    return max(spread, 1.0 / count)


def compare_to_active(new: dict[str, Any], active: dict[str, Any] | None) -> Verdict:
    """A verdict on a retrained model against the active one, from their metrics on the same held-out images.

    Benign recall comes first: hematogones taken for blasts are this data's commonest error. A model significantly
    worse there is not worth switching to whatever its accuracy; otherwise accuracy decides, and a difference
    within chance variation on this many images says nothing.
    """
    n = int(new.get("n", 0))
    if active is None:
        return Verdict(
            "alone", f"No active model to compare with: judge the new model by its own figures on {n} held-out images."
        )
    benign = CLASS_NAMES[0]
    benign_n = int((new.get("support") or {}).get(benign, 0))
    b_new = float(new["per_class_recall"][benign])
    b_old = float(active["per_class_recall"][benign])
    a_new, a_old = float(new["accuracy"]), float(active["accuracy"])
    benign_margin = _noise(b_new, b_old, benign_n)
    margin = _noise(a_new, a_old, n)
    figures = (
        f"accuracy {a_new:.1%} against {a_old:.1%}; Benign recall {b_new:.1%} against {b_old:.1%} "
        f"on {benign_n} Benign images"
    )
    if b_old - b_new > benign_margin:
        return Verdict(
            "worse",
            f"The new model is worse on Benign recall than the active model ({figures}): keep the active one.",
        )
    if a_old - a_new > margin:
        return Verdict(
            "worse", f"The new model is worse overall than the active model ({figures}): keep the active one."
        )
    if a_new - a_old > margin:
        return Verdict(
            "better", f"The new model is better overall than the active model ({figures}): consider activating it."
        )
    return Verdict(
        "noise",
        f"The two models are within noise on {n} held-out images ({figures}; differences under about "
        f"{100 * margin:.0f} points of accuracy are chance): no reason to switch on these figures.",
    )


def active_overlap_note(training: dict[str, Any] | None, title: str, root: str | Path, test_fraction: float) -> str:
    """Whether the active model may have been fitted on the held-out images it is compared on (which flatters it)."""
    training = training if isinstance(training, dict) else {}
    data_root, data = training.get("data_root"), training.get("data")
    if data_root and str(data_root) == str(root):
        if training.get("test_fraction") == test_fraction and training.get("split", "blocks") == "blocks":
            return (
                f"{title} was trained on this folder with the same held-out part, so it did not see these images "
                "(as long as the folder has not changed since)."
            )
        return (
            f"{title} was trained on this folder with another held-out part: some of these held-out images were "
            "among its training images, which flatters it."
        )
    if data:
        images = training.get("images")
        details = [f"{images} images"] if images else []
        if training.get("validation"):
            details.append(f"checkpoint and review thresholds fitted on {training['validation']}")
        said = f" ({'; '.join(details)})" if details else ""
        return (
            f"{title} was trained on every image of the public {data} set{said}. If these images come from that "
            "set, it has seen all of them and may have been tuned on these very held-out images, so this comparison "
            "flatters it."
        )
    where = f" (trained on {data_root})" if data_root else ""
    return (
        f"{title}{where} may have been trained, or had its checkpoint and review thresholds fitted, on some of these "
        "held-out images; if so, the comparison flatters it."
    )
