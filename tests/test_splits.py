from __future__ import annotations

import numpy as np

from allgui.core.splits import block_split, stratified_group_split


def _toy(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), [40, 80, 80, 60])
    numbers = np.concatenate([rng.permutation(n) + 1 for n in (40, 80, 80, 60)])
    groups = np.arange(len(labels))
    # Pairs of neighbouring captures are duplicates, some across the block boundary.
    for label in range(4):
        members = np.flatnonzero(labels == label)
        ordered = members[np.argsort(numbers[members])]
        for k in range(0, len(ordered) - 1, 7):
            groups[ordered[k + 1]] = groups[ordered[k]]
    return labels, numbers, groups


def test_block_split_holds_out_last_captures_and_keeps_groups() -> None:
    labels, numbers, groups = _toy()
    train, test = block_split(labels, numbers, groups, 0.15)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(labels)
    assert not set(groups[train]) & set(groups[test])
    for label in range(4):
        train_numbers = numbers[train][labels[train] == label]
        test_numbers = numbers[test][labels[test] == label]
        assert len(test_numbers) > 0
        # Contiguous: every held-out capture comes after all but at most one duplicate partner in training.
        assert (test_numbers.min() >= np.sort(train_numbers)[-2]) if len(train_numbers) > 1 else True
        assert abs(len(test_numbers) - 0.15 * (labels == label).sum()) <= 2


def test_stratified_group_split_is_seeded_and_group_safe() -> None:
    labels, _, groups = _toy()
    first = stratified_group_split(labels, groups, 0.2, seed=3)
    again = stratified_group_split(labels, groups, 0.2, seed=3)
    other = stratified_group_split(labels, groups, 0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])
    train, test = first
    assert not set(groups[train]) & set(groups[test])
    shares = np.bincount(labels[test], minlength=4) / np.bincount(labels, minlength=4)
    assert np.all(np.abs(shares - 0.2) < 0.08)
