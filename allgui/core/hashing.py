"""Perceptual and cryptographic hashes of image files, computed on all cores."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from allgui.core.imageio import ImageReadError, read_rgb_and_sha256
from allgui.core.progress import CancelToken, ProgressCallback, check

HASH_METHODS = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "ahash": imagehash.average_hash,
    "whash": imagehash.whash,
}


@dataclass
class HashRecord:
    path: Path
    sha256: str | None
    hash: int | None  # 64-bit perceptual hash
    error: str | None = None

    @property
    def hash_hex(self) -> str:
        return "" if self.hash is None else f"{self.hash:016x}"


def perceptual_hash(image: Image.Image, method: str = "phash") -> int:
    """64-bit perceptual hash of an image as an int (bit order as imagehash prints it)."""
    try:
        function = HASH_METHODS[method]
    except KeyError:
        raise ValueError(f"unknown hash method {method!r}; choose one of {', '.join(HASH_METHODS)}") from None
    bits = function(image).hash.ravel()
    # The bits as imagehash prints them (row-major, first bit highest), without its string round trip.
    return int.from_bytes(np.packbits(bits).tobytes(), "big") >> (-len(bits) % 8)


# Hashes work on 32x32 (phash) or smaller images, so JPEGs are decoded at a reduced scale of at least this size.
HASH_DRAFT_SIZE = (32, 32)


def hash_file(path: Path, method: str = "phash") -> HashRecord:
    try:
        image, sha256 = read_rgb_and_sha256(path, draft=HASH_DRAFT_SIZE)
    except ImageReadError as error:
        return HashRecord(path, None, None, error.reason)
    return HashRecord(path, sha256, perceptual_hash(image, method))


def hash_images(
    paths: Sequence[str | Path],
    method: str = "phash",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    workers: int | None = None,
) -> list[HashRecord]:
    """Hash every file (in the given order); unreadable files give a record with ``error`` set."""
    if method not in HASH_METHODS:
        raise ValueError(f"unknown hash method {method!r}; choose one of {', '.join(HASH_METHODS)}")
    files = [Path(p) for p in paths]
    total = len(files)
    # Two threads a core: one decodes while the other holds the GIL for the hash arithmetic.
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    records: list[HashRecord] = []
    # Threads suffice: JPEG decoding and the DCT release the GIL for most of their time.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunk = 64
        for start in range(0, total, chunk):
            check(cancel)
            records.extend(pool.map(lambda p: hash_file(p, method), files[start : start + chunk]))
            if progress is not None:
                progress(len(records), total, f"hashed {len(records)} of {total} images")
    return records
