"""Reading smear images into 8-bit RGB without ever crashing a batch.

Every failure (missing, empty, truncated, corrupt, not an image, too large) becomes an :class:`ImageReadError`
with a plain message naming the file.
"""

from __future__ import annotations

import hashlib
import io
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
# 50 megapixels: far above any microscope field, far below a decompression bomb's memory use.
MAX_PIXELS = 50_000_000
# No smear image comes near 1 GiB; a bigger file (a whole-slide scan, a video) is refused before it is read.
MAX_FILE_BYTES = 1 << 30

# The only Pillow decoders AllGUI lets near a file (camera MPO files open through "JPEG"). Anything else, whatever its
# name, is refused: fewer parsers to attack, and EPS content would make Pillow start Ghostscript, an external program.
DECODER_FORMATS = ("JPEG", "PNG", "TIFF", "BMP")
Image.init()  # registers every plugin, so the names above resolve (Image.open raises KeyError otherwise)

# Truncated files must fail, not be padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageReadError(Exception):
    """An image file that cannot be used; ``str()`` is a plain sentence naming the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


# Rows converted at a time from 16-bit or float grey: a 50-megapixel image as one float64 array took 400 MB per
# temporary (and 7 GB with four decoding threads); in slices the temporaries stay at a few megabytes.
CONVERT_ROWS = 256


def _row_slices(image: Image.Image) -> Iterator[tuple[int, np.ndarray]]:
    """The image's pixels a slice of rows at a time (as float64), never as one array of the whole image."""
    width, height = image.size
    for start in range(0, height, CONVERT_ROWS):
        rows = image.crop((0, start, width, min(height, start + CONVERT_ROWS)))
        yield start, np.asarray(rows).astype(np.float64)


def _grey_to_rgb8(image: Image.Image, convert: Callable[[np.ndarray], np.ndarray]) -> Image.Image:
    out = np.empty((image.size[1], image.size[0]), dtype=np.uint8)
    for start, rows in _row_slices(image):
        out[start : start + len(rows)] = convert(rows)
    return Image.fromarray(out, "L").convert("RGB")


def _to_rgb8(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grey: scale the full range of the type to 8 bits, not clip it.
        top = 65535.0 if mode.startswith("I;16") or (image.getextrema()[1] or 0) <= 65535 else image.getextrema()[1]
        return _grey_to_rgb8(image, lambda rows: np.clip(rows / float(top) * 255.0 + 0.5, 0, 255))
    if mode == "F":
        with warnings.catch_warnings():  # slices of NaN only: numpy warns, the image is still converted
            warnings.simplefilter("ignore", RuntimeWarning)
            extremes = [(np.nanmin(rows), np.nanmax(rows)) for _, rows in _row_slices(image)]
            low, high = float(np.nanmin([e[0] for e in extremes])), float(np.nanmax([e[1] for e in extremes]))
        scale = 255.0 / (high - low) if high > low else 0.0
        return _grey_to_rgb8(image, lambda rows: np.nan_to_num((rows - low) * scale))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Composite transparency on white, as a slide background would look.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, or :class:`ImageReadError` for missing, unreadable and empty files."""
    path = Path(path)
    try:
        info = path.stat()
        # Checked before reading: a pipe would block forever, and a huge file would be read whole into memory.
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            raise ImageReadError(path, "not a regular file (e.g. a pipe or device), so it is not opened")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageReadError(path, f"file is too large ({info.st_size / 2**30:.1f} GiB; the limit is 1 GiB)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not an image file") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as error:
        raise ImageReadError(path, f"cannot be read ({error.strerror or error})") from None
    if not data:
        raise ImageReadError(path, "file is empty (0 bytes)")
    return data


def decode_rgb(
    data: bytes, path: str | Path, max_pixels: int = MAX_PIXELS, draft: tuple[int, int] | None = None
) -> Image.Image:
    """Decode image bytes (``path`` only names the file in errors) to 8-bit RGB with EXIF orientation applied.

    ``draft`` lets JPEG decoding scale down by 2-8x in the DCT domain, keeping at least that size: several times
    faster when only a small version is needed (perceptual hashes, models with ``jpeg_draft``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=DECODER_FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        path, f"image is too large ({width}x{height} pixels; the limit is {max_pixels:,} pixels)"
                    )
                if width < 1 or height < 1:
                    raise ImageReadError(path, "image has no pixels")
                if draft is not None:
                    image.draft("RGB", draft)
                image.load()
                image = ImageOps.exif_transpose(image) or image
                return _to_rgb8(image)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image file, or an image format AllGUI cannot read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(path, "image is too large (decompression bomb protection)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # PIL reports truncated and corrupt data as OSError/SyntaxError/ValueError.
        text = str(error) or type(error).__name__
        if "truncated" in text.lower() or isinstance(error, EOFError):
            raise ImageReadError(path, f"image file is truncated ({text})") from None
        raise ImageReadError(path, f"image file is corrupt ({text})") from None
    except Exception as error:  # noqa: BLE001 - a batch must never crash on one file
        raise ImageReadError(path, f"image could not be decoded ({type(error).__name__}: {error})") from None


def read_rgb(path: str | Path, max_pixels: int = MAX_PIXELS, draft: tuple[int, int] | None = None) -> Image.Image:
    """Open ``path`` as an 8-bit RGB image with EXIF orientation applied, or raise :class:`ImageReadError`."""
    return decode_rgb(read_bytes(path), path, max_pixels, draft)


def read_rgb_and_sha256(path: str | Path, draft: tuple[int, int] | None = None) -> tuple[Image.Image, str]:
    """The image and the SHA-256 of its file's bytes, reading the file once."""
    data = read_bytes(path)
    return decode_rgb(data, path, draft=draft), hashlib.sha256(data).hexdigest()
