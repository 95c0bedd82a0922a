"""Duplicate search speed: hashing against plain decoding, and grouping time from 1k to 100k hashes.

Run: .venv/bin/python -m benchmarks.bench_duplicates [DATA_FOLDER]
Prints ratios measured in this one run (machines are noisy; compare only numbers from the same run).
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from allgui.core.dupindex import connected_groups, near_pairs, near_pairs_brute_force
from allgui.core.hashing import hash_images
from allgui.core.scan import scan_images


def decode_rate(files: list[Path]) -> float:
    """Images per second for a plain single-thread full-size decode of the same files (bytes already read)."""
    blobs = [f.read_bytes() for f in files]
    start = time.perf_counter()
    for blob in blobs:
        with Image.open(io.BytesIO(blob)) as image:
            image.convert("RGB")
    return len(blobs) / (time.perf_counter() - start)


def hashes_like_real(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random 64-bit hashes with 10% planted near-duplicates (1-5 flipped bits), like a folder of smears."""
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    sources, targets = rng.integers(0, n, (2, n // 10))
    flips = np.zeros(n // 10, dtype=np.uint64)
    for _ in range(3):
        flips |= np.uint64(1) << rng.integers(0, 64, n // 10).astype(np.uint64)
    hashes[targets] = hashes[sources] ^ flips
    return hashes


def main() -> None:
    default = os.environ.get("ALLGUI_TEST_DATA", "../shared/data/taleqani-all")
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else default)
    files = scan_images([folder]).files
    print(f"{len(files)} images in {folder}, {os.cpu_count()} cores")
    hash_images(files[:100])  # warm up imports and caches
    decode = decode_rate(files)
    start = time.perf_counter()
    records = hash_images(files)
    hashing = len(records) / (time.perf_counter() - start)
    print(f"decode (1 thread, full size):        {decode:8.0f} images/s")
    print(f"hash + sha256 (all cores):          {hashing:8.0f} images/s  -> ratio to decode {hashing / decode:.2f}")

    rng = np.random.default_rng(0)
    print("\ngrouping at threshold 4 (multi-index hashing + union-find):")
    for n in (1_000, 10_000, 100_000):
        hashes = hashes_like_real(n, rng)
        start = time.perf_counter()
        left, right, _ = near_pairs(hashes, 4)
        connected_groups(n, left, right)
        elapsed = time.perf_counter() - start
        line = f"  {n:>7} hashes: {elapsed:6.3f} s, {len(left)} pairs"
        if n <= 10_000:
            start = time.perf_counter()
            brute = near_pairs_brute_force(hashes, 4)
            brute_time = time.perf_counter() - start
            same = all(np.array_equal(a, b) for a, b in zip((left, right), brute[:2], strict=True))
            line += f"; brute force {brute_time:6.3f} s (x{brute_time / elapsed:.0f}), identical pairs: {same}"
        print(line)


if __name__ == "__main__":
    main()
