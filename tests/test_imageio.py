from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from allgui.core.imageio import ImageReadError, read_rgb, read_rgb_and_sha256
from tests.imagefactory import bad_files, jpeg_bytes, smear_like, write


@pytest.mark.parametrize("kind", ["zero_byte", "truncated", "corrupt", "text_as_jpg", "html_as_png"])
def test_bad_files_give_typed_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = bad_files(tmp_path)[kind]
    with pytest.raises(ImageReadError) as caught:
        read_rgb(path)
    assert str(path) in str(caught.value)
    assert caught.value.reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="not found"):
        read_rgb(tmp_path / "nope.jpg")


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP", "JPEG"])
def test_formats_read_as_rgb8(tmp_path: Path, fmt: str) -> None:
    image = smear_like(3)
    path = tmp_path / f"x.{fmt.lower()}"
    image.save(path, fmt)
    result = read_rgb(path)
    assert result.mode == "RGB" and result.size == image.size
    if fmt != "JPEG":
        assert np.array_equal(np.asarray(result), np.asarray(image))


def test_modes_converted(tmp_path: Path) -> None:
    grey = Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64) % 251, "L")
    grey.save(tmp_path / "grey.png")
    sixteen = Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 64)
    sixteen.save(tmp_path / "deep.tif")
    smear_like(2).convert("CMYK").save(tmp_path / "cmyk.jpg")
    palette = smear_like(4).convert("P")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png", transparency=0)
    smear_like(5).convert("RGBA").save(tmp_path / "rgba.png")
    for name in ("grey.png", "deep.tif", "cmyk.jpg", "palette.png", "rgba.png"):
        image = read_rgb(tmp_path / name)
        assert image.mode == "RGB", name
    deep = np.asarray(read_rgb(tmp_path / "deep.tif"))[..., 0]
    # 16-bit values are scaled to 8 bits, not clipped at 255: the ramp stays monotonic over ~256 levels.
    assert np.all(np.diff(deep.ravel().astype(int)) >= 0)
    assert len(np.unique(deep)) > 200


def test_exif_orientation_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = write(tmp_path / "rotated.jpg", jpeg_bytes(image, exif=exif))
    assert read_rgb(path).size == (20, 40)


def test_decompression_bomb_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(path)  # 144 megapixels, a few kilobytes on disk
    with pytest.raises(ImageReadError, match="too large"):
        read_rgb(path)


def test_sha256_of_bytes(tmp_path: Path) -> None:
    data = jpeg_bytes(smear_like(7))
    path = write(tmp_path / "a.jpg", data)
    import hashlib

    image, digest = read_rgb_and_sha256(path)
    assert digest == hashlib.sha256(data).hexdigest()
    assert image.size == Image.open(io.BytesIO(data)).size
