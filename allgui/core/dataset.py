"""Labelled data sets: a folder with one sub-folder per class, images found recursively below each."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from allgui.core.classes import CLASS_NAMES, resolve_folders
from allgui.core.duplicates import DEFAULT_THRESHOLD, DuplicateGroup, find_groups, group_ids
from allgui.core.hashing import HashRecord, hash_images
from allgui.core.progress import CancelToken, ProgressCallback
from allgui.core.scan import scan_images


def capture_number(path: Path) -> int | None:
    """The last number in the file name ('WBC-Benign-042.jpg' -> 42): capture order in the Taleqani release."""
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else None


@dataclass
class LabelledDataset:
    root: Path
    paths: list[Path]
    labels: np.ndarray  # class index per image
    numbers: np.ndarray  # capture number per image (position in folder order where a name has none)
    folder_to_class: dict[str, int]
    problems: list[tuple[Path, str]] = field(default_factory=list)

    @classmethod
    def from_folder(
        cls,
        root: str | Path,
        mapping: Mapping[str, str] | None = None,
        cancel: CancelToken | None = None,
    ) -> LabelledDataset:
        """Read ``root``/<class folder>/**/<images>. Folder names map to classes by alias or ``mapping``."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"data folder not found: {root}")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise ValueError(f"{root} has no class sub-folders; expected e.g. Benign/, Early/, Pre/, Pro/")
        folder_to_class = resolve_folders([f.name for f in folders], mapping)
        paths: list[Path] = []
        labels: list[int] = []
        numbers: list[int] = []
        problems: list[tuple[Path, str]] = []
        for folder in folders:
            scan = scan_images([folder], cancel=cancel)
            problems.extend(scan.problems)
            for position, path in enumerate(scan.files):
                paths.append(path)
                labels.append(folder_to_class[folder.name])
                number = capture_number(path)
                numbers.append(position if number is None else number)
        return cls(
            root, paths, np.array(labels, dtype=np.int64), np.array(numbers, dtype=np.int64), folder_to_class, problems
        )

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == index).sum()) for index, name in enumerate(CLASS_NAMES)}

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelledDataset:
        indices = np.asarray(indices, dtype=np.int64)
        return LabelledDataset(
            self.root,
            [self.paths[i] for i in indices],
            self.labels[indices],
            self.numbers[indices],
            dict(self.folder_to_class),
            list(self.problems),
        )

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class PreparedData:
    """A data set reduced to readable images, with their hashes and duplicate groups."""

    dataset: LabelledDataset
    records: list[HashRecord]  # aligned with dataset.paths
    groups: list[DuplicateGroup]  # indices into dataset.paths
    group_ids: np.ndarray
    unreadable: list[tuple[Path, str]]


def load_labelled(
    root: str | Path,
    mapping: Mapping[str, str] | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    hash_method: str = "phash",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> PreparedData:
    """Scan, hash and group a labelled folder; unreadable images are set aside with their reasons."""
    full = LabelledDataset.from_folder(root, mapping, cancel)
    records = hash_images(full.paths, hash_method, progress, cancel)
    keep = [i for i, r in enumerate(records) if r.error is None]
    unreadable = [(r.path, r.error or "") for r in records if r.error is not None]
    dataset = full.subset(keep)
    kept_records = [records[i] for i in keep]
    groups = find_groups(kept_records, threshold)
    return PreparedData(dataset, kept_records, groups, group_ids(len(keep), groups), unreadable)
