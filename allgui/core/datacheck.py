"""A data-set health report: counts, unreadable files, duplicates inside and across classes, imbalance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allgui.core.classes import CLASS_NAMES
from allgui.core.dataset import load_labelled
from allgui.core.duplicates import DEFAULT_THRESHOLD
from allgui.core.progress import CancelToken, ProgressCallback


@dataclass
class DataCheckReport:
    root: Path
    folder_to_class: dict[str, str]
    counts: dict[str, int]
    unreadable: list[tuple[str, str]]
    scan_problems: list[tuple[str, str]]
    groups_within: list[list[str]]  # duplicate groups whose members share one class
    groups_across: list[list[str]]  # duplicate groups that span classes: contradictory or mislabelled images
    threshold: int
    hash_method: str

    @property
    def imbalance_ratio(self) -> float | None:
        """Largest class count over smallest (None when a class is empty)."""
        values = list(self.counts.values())
        return None if min(values) == 0 else max(values) / min(values)

    def advice(self) -> list[str]:
        notes = []
        empty = [name for name, count in self.counts.items() if count == 0]
        if empty:
            notes.append(f"No images for {', '.join(empty)}: a model trained on this folder cannot predict them.")
        ratio = self.imbalance_ratio
        if ratio is not None and ratio > 1.5:
            notes.append(f"Classes are imbalanced ({ratio:.2f}:1); training uses class-balanced weighting.")
        if self.groups_across:
            notes.append(f"{len(self.groups_across)} duplicate group(s) span classes: check those labels first.")
        if self.groups_within:
            notes.append(f"{len(self.groups_within)} duplicate group(s) inside classes are kept whole in splits.")
        if self.unreadable:
            notes.append(f"{len(self.unreadable)} unreadable file(s) will be left out of training.")
        return notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "folder_to_class": self.folder_to_class,
            "counts": self.counts,
            "total": sum(self.counts.values()),
            "imbalance_ratio": self.imbalance_ratio,
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
            "scan_problems": [{"path": p, "reason": r} for p, r in self.scan_problems],
            "duplicate_groups_within_classes": self.groups_within,
            "duplicate_groups_across_classes": self.groups_across,
            "hash_method": self.hash_method,
            "threshold": self.threshold,
            "advice": self.advice(),
        }

    def to_text(self) -> str:
        lines = [f"Data check of {self.root}", "", "Images per class:"]
        lines += [f"  {name:<12} {self.counts[name]:>6}" for name in CLASS_NAMES]
        lines.append(f"  {'total':<12} {sum(self.counts.values()):>6}")
        ratio = self.imbalance_ratio
        lines.append(f"Class imbalance ratio (largest/smallest): {'n/a' if ratio is None else f'{ratio:.2f}'}")
        lines.append(f"Unreadable files: {len(self.unreadable) + len(self.scan_problems)}")
        lines += [f"  {path}: {reason}" for path, reason in self.unreadable]
        lines += [f"  {path}: {reason}" for path, reason in self.scan_problems]
        lines.append(
            f"Duplicate groups ({self.hash_method}, distance <= {self.threshold}): "
            f"{len(self.groups_within)} inside classes, {len(self.groups_across)} across classes"
        )
        for label, groups in (("inside", self.groups_within), ("ACROSS classes", self.groups_across)):
            for group in groups:
                lines.append(f"  [{label}] " + " | ".join(group))
        advice = self.advice()
        if advice:
            lines += ["", "Advice:"] + [f"  - {note}" for note in advice]
        return "\n".join(lines)


def check_dataset(
    root: str | Path,
    mapping: Mapping[str, str] | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    hash_method: str = "phash",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> DataCheckReport:
    prepared = load_labelled(root, mapping, threshold, hash_method, progress, cancel)
    dataset = prepared.dataset
    within, across = [], []
    for group in prepared.groups:
        names = [str(dataset.paths[i]) for i in group.members]
        classes = {int(dataset.labels[i]) for i in group.members}
        (within if len(classes) == 1 else across).append(names)
    return DataCheckReport(
        root=Path(root),
        folder_to_class={folder: CLASS_NAMES[i] for folder, i in dataset.folder_to_class.items()},
        counts=dataset.counts(),
        unreadable=[(str(p), r) for p, r in prepared.unreadable],
        scan_problems=[(str(p), r) for p, r in dataset.problems],
        groups_within=within,
        groups_across=across,
        threshold=threshold,
        hash_method=hash_method,
    )
