"""Small real subsets of the Taleqani images for model tests: a few dozen per class, spread over capture order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from allgui.core.dataset import LabelledDataset
from allgui.core.duplicates import find_groups, group_ids
from allgui.core.hashing import hash_images
from allgui.core.imageio import read_rgb
from allgui.core.splits import block_split


def spread_indices(dataset: LabelledDataset, per_class: int) -> list[int]:
    chosen: list[int] = []
    for label in range(4):
        members = np.flatnonzero(dataset.labels == label)
        members = members[np.argsort(dataset.numbers[members], kind="stable")]
        chosen += members[np.unique(np.linspace(0, len(members) - 1, per_class).astype(int))].tolist()
    return sorted(chosen)


@dataclass
class Subset:
    data: LabelledDataset
    groups: np.ndarray
    train: np.ndarray
    test: np.ndarray

    @classmethod
    def load(cls, data_dir: Path, per_class: int = 36) -> Subset:
        data = LabelledDataset.from_folder(data_dir)
        data = data.subset(spread_indices(data, per_class))
        groups = group_ids(len(data), find_groups(hash_images(data.paths)))
        # The later captures of each class are held out, as in the real evaluation.
        train, test = block_split(data.labels, data.numbers, groups, 0.25)
        return cls(data, groups, train, test)

    @property
    def train_paths(self) -> list[Path]:
        return [self.data.paths[i] for i in self.train]

    @property
    def train_labels(self) -> np.ndarray:
        return self.data.labels[self.train]

    @property
    def test_labels(self) -> np.ndarray:
        return self.data.labels[self.test]

    def test_images(self) -> list:
        return [read_rgb(self.data.paths[i]) for i in self.test]


def linked_data_folder(data_dir: Path, target: Path, per_class: int) -> Path:
    """A class-folder tree of symbolic links to ``per_class`` real images per class (no image is copied)."""
    data = LabelledDataset.from_folder(data_dir)
    for index in spread_indices(data, per_class):
        source = data.paths[index]
        link = target / source.parent.name / source.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source.resolve())
    return target
