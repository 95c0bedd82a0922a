"""Grouping exact duplicates (same bytes) and near-duplicates (perceptual hash within a Hamming distance)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from allgui.core.dupindex import connected_groups, hamming, near_pairs
from allgui.core.hashing import HashRecord

DEFAULT_THRESHOLD = 4


@dataclass
class DuplicateGroup:
    members: list[int]  # indices into the records, in input order; the first is the group's reference
    distances: list[int]  # Hamming distance of each member's hash to the first member's
    kinds: list[str]  # "exact" when the member's bytes equal another member's, else "near"


def find_groups(records: Sequence[HashRecord], threshold: int = DEFAULT_THRESHOLD) -> list[DuplicateGroup]:
    """Groups of two or more records linked, transitively, by equal SHA-256 or hash distance <= ``threshold``."""
    readable = [i for i, r in enumerate(records) if r.hash is not None and r.sha256 is not None]
    if len(readable) < 2:
        return []
    hashes = np.array([records[i].hash for i in readable], dtype=np.uint64)
    left, right, _ = near_pairs(hashes, threshold)
    by_sha: dict[str, list[int]] = defaultdict(list)
    for position, index in enumerate(readable):
        by_sha[records[index].sha256].append(position)  # type: ignore[index]
    exact_left = [members[0] for members in by_sha.values() for _ in members[1:]]
    exact_right = [m for members in by_sha.values() for m in members[1:]]
    labels = connected_groups(
        len(readable),
        np.concatenate([left, np.array(exact_left, dtype=np.int64)]),
        np.concatenate([right, np.array(exact_right, dtype=np.int64)]),
    )
    positions_by_label: dict[int, list[int]] = defaultdict(list)
    for position, label in enumerate(labels.tolist()):
        positions_by_label[label].append(position)
    groups = []
    for positions in positions_by_label.values():
        if len(positions) < 2:
            continue
        first = hashes[positions[0]]
        distances = hamming(np.full(len(positions), first, dtype=np.uint64), hashes[positions]).tolist()
        kinds = ["exact" if len(by_sha[records[readable[p]].sha256]) > 1 else "near" for p in positions]  # type: ignore[index]
        groups.append(DuplicateGroup([readable[p] for p in positions], distances, kinds))
    groups.sort(key=lambda g: g.members[0])
    return groups


def group_ids(n: int, groups: Sequence[DuplicateGroup]) -> np.ndarray:
    """A group id per item: members of a group share their group's id, every other item gets its own."""
    ids = np.arange(n, dtype=np.int64) + len(groups)
    for number, group in enumerate(groups):
        ids[group.members] = number
    return ids
