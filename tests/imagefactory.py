"""Small images the tests make themselves, including every kind of bad file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def smear_like(seed: int = 0, size: int = 64) -> Image.Image:
    """A random RGB picture with some structure (blobs on a pink background)."""
    rng = np.random.default_rng(seed)
    array = np.full((size, size, 3), (230, 200, 215), dtype=np.float64)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(4):
        cy, cx, radius = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 10, size / 4)]
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        array[mask] = rng.uniform(60, 160, 3)
    array += rng.normal(0, 6, array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def bad_files(folder: Path) -> dict[str, Path]:
    """Files the reader must refuse with ImageReadError, by kind."""
    good = jpeg_bytes(smear_like(1))
    return {
        "zero_byte": write(folder / "empty.jpg", b""),
        "truncated": write(folder / "truncated.jpg", good[: len(good) // 2]),
        "corrupt": write(folder / "corrupt.jpg", good[:200] + bytes(range(256)) * 8 + good[-50:]),
        "text_as_jpg": write(folder / "notes.jpg", b"this is a text file, not an image\n"),
        "html_as_png": write(folder / "page.png", b"<!doctype html><html><body>hi</body></html>"),
    }
