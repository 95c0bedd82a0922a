"""Seeded train/test splits that never let a duplicate group straddle the two parts."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def _whole_groups(test_mask: np.ndarray, group_ids: np.ndarray) -> np.ndarray:
    """Move every group that straddles the split entirely to the side most of its members are on (ties: test)."""
    _, inverse, counts = np.unique(group_ids, return_inverse=True, return_counts=True)
    share_in_test = np.bincount(inverse, weights=test_mask.astype(float)) / counts
    return share_in_test[inverse] >= 0.5


def block_split(
    labels: np.ndarray, numbers: np.ndarray, group_ids: np.ndarray, test_fraction: float = 0.15
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out, inside each class, the contiguous block of the last-captured ``test_fraction`` of images.

    Later capture numbers stand for later imaging sessions, so the test part estimates performance on new sessions.
    """
    labels, numbers, group_ids = np.asarray(labels), np.asarray(numbers), np.asarray(group_ids)
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be between 0 and 1")
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ordered = members[np.argsort(numbers[members], kind="stable")]
        count = int(round(len(ordered) * test_fraction))
        if count:
            test[ordered[-count:]] = True
    test = _whole_groups(test, group_ids)
    return np.flatnonzero(~test), np.flatnonzero(test)


def stratified_group_split(
    labels: np.ndarray, group_ids: np.ndarray, test_fraction: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A random, class-stratified split in which each duplicate group lies wholly in one part."""
    labels, group_ids = np.asarray(labels), np.asarray(group_ids)
    folds = max(2, int(round(1 / test_fraction)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(labels)), labels, group_ids))
    return np.sort(train), np.sort(test)
