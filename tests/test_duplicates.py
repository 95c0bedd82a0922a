from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from allgui.core.dupindex import connected_groups, near_pairs, near_pairs_brute_force
from allgui.core.duplicates import find_groups, group_ids
from allgui.core.hashing import HashRecord, hash_images
from tests.imagefactory import jpeg_bytes, smear_like, write


def _random_hashes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    # Plant near-duplicates and chains (a-b-c) so transitive grouping matters; also cluster some values.
    for _ in range(n // 5):
        source, target = rng.integers(0, n, 2)
        flips = rng.integers(0, 64, rng.integers(0, 6))
        value = hashes[source]
        for bit in flips:
            value ^= np.uint64(1) << np.uint64(bit)
        hashes[target] = value
    return hashes


@pytest.mark.parametrize("threshold", [0, 2, 4, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_index_equals_brute_force(threshold: int, seed: int) -> None:
    hashes = _random_hashes(1500, seed)
    fast = near_pairs(hashes, threshold)
    slow = near_pairs_brute_force(hashes, threshold)
    assert len(slow[0]) > 0
    for a, b in zip(fast, slow, strict=True):
        assert np.array_equal(a, b)
    fast_groups = connected_groups(len(hashes), fast[0], fast[1])
    slow_groups = connected_groups(len(hashes), slow[0], slow[1])
    assert np.array_equal(fast_groups, slow_groups)


def test_groups_are_transitive() -> None:
    # a-b at distance 3, b-c at distance 3, a-c at distance 6: one group at threshold 4.
    a = 0
    b = 0b111
    c = 0b111111
    records = [HashRecord(Path(n), n, h) for n, h in (("a", a), ("b", b), ("c", c), ("far", 2**64 - 1))]
    groups = find_groups(records, threshold=4)
    assert [g.members for g in groups] == [[0, 1, 2]]
    assert groups[0].distances == [0, 3, 6]
    assert group_ids(4, groups).tolist() == [0, 0, 0, 4]


def test_exact_and_near_on_files(tmp_path: Path) -> None:
    original = jpeg_bytes(smear_like(1), quality=95)
    write(tmp_path / "a.jpg", original)
    write(tmp_path / "a_copy.jpg", original)
    write(tmp_path / "a_recompressed.jpg", jpeg_bytes(smear_like(1), quality=70))
    write(tmp_path / "other.jpg", jpeg_bytes(smear_like(99)))
    write(tmp_path / "broken.jpg", b"not an image")
    paths = sorted(tmp_path.iterdir())
    records = hash_images(paths)
    groups = find_groups(records)
    assert len(groups) == 1
    by_name = {records[m].path.name: kind for m, kind in zip(groups[0].members, groups[0].kinds, strict=True)}
    assert by_name == {"a.jpg": "exact", "a_copy.jpg": "exact", "a_recompressed.jpg": "near"}
    assert [r.error is not None for r in records].count(True) == 1


@pytest.mark.parametrize("method", ["phash", "dhash", "ahash", "whash"])
def test_hash_values_are_the_ones_imagehash_prints(data_dir: Path, method: str) -> None:
    from allgui.core.hashing import HASH_METHODS, perceptual_hash
    from allgui.core.imageio import read_rgb

    for path in sorted(data_dir.rglob("*.jpg"))[::139]:
        image = read_rgb(path)
        assert perceptual_hash(image, method) == int(str(HASH_METHODS[method](image)), 16)
