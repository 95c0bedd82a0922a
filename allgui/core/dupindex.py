"""Finding all pairs of 64-bit hashes within a Hamming distance, without comparing all pairs.

Multi-index hashing: split each hash into ``threshold + 1`` bit chunks. Two hashes within distance ``threshold``
agree exactly on at least one chunk (pigeonhole), so only hashes sharing a chunk value are compared.
"""

from __future__ import annotations

import numpy as np


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def _chunk_bounds(chunks: int) -> list[tuple[int, int]]:
    base, extra = divmod(64, chunks)
    bounds, start = [], 0
    for index in range(chunks):
        width = base + (1 if index < extra else 0)
        bounds.append((start, width))
        start += width
    return bounds


def _pairs_sharing_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i < j) whose keys are equal."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    left_parts, right_parts = [], []
    # Buckets of equal size are expanded together, so the Python loop runs once per distinct bucket size.
    for size in np.unique(sizes[sizes > 1]):
        bucket_starts = starts[sizes == size]
        upper_i, upper_j = np.triu_indices(int(size), k=1)
        members = order[bucket_starts[:, None] + np.arange(size)[None, :]]
        left_parts.append(members[:, upper_i].ravel())
        right_parts.append(members[:, upper_j].ravel())
    if not left_parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    left, right = np.concatenate(left_parts), np.concatenate(right_parts)
    return np.minimum(left, right), np.maximum(left, right)


def near_pairs(hashes: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (i < j) and distances of all hashes at Hamming distance <= ``threshold``, sorted by (i, j)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    if threshold < 0 or threshold > 63:
        raise ValueError("threshold must be between 0 and 63")
    candidates = []
    for start, width in _chunk_bounds(threshold + 1):
        keys = (hashes >> np.uint64(start)) & np.uint64((1 << width) - 1)
        left, right = _pairs_sharing_key(keys)
        distances = hamming(hashes[left], hashes[right])
        keep = distances <= threshold
        candidates.append(left[keep] * len(hashes) + right[keep])
    codes = np.unique(np.concatenate(candidates)) if candidates else np.empty(0, dtype=np.int64)
    left, right = np.divmod(codes, len(hashes)) if len(hashes) else (codes, codes)
    return left, right, hamming(hashes[left], hashes[right])


def near_pairs_brute_force(hashes: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same answer as :func:`near_pairs` by comparing every pair (reference for tests; O(n^2))."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    lefts, rights = [], []
    for i in range(len(hashes) - 1):
        distances = hamming(hashes[i], hashes[i + 1 :])
        js = np.flatnonzero(distances <= threshold) + i + 1
        lefts.append(np.full(len(js), i, dtype=np.int64))
        rights.append(js.astype(np.int64))
    if not lefts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    left, right = np.concatenate(lefts), np.concatenate(rights)
    return left, right, hamming(hashes[left], hashes[right])


def connected_groups(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Union-find over the pairs: a component label per item, labels numbered by their smallest member."""
    parent = np.arange(n)

    def find(item: int) -> int:
        root = item
        while parent[root] != root:
            root = parent[root]
        while parent[item] != root:  # path compression
            parent[item], item = root, parent[item]
        return root

    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    return np.array([find(i) for i in range(n)], dtype=np.int64)
