"""A corpus of awkward and hostile inputs, generated into a folder: every kind a microscope PC might hold.

Each entry says whether AllGUI must read it (``good``: its normal result) or refuse it (``bad``: one clear error).
The large images are cheap to make: a 1-bit PNG and a flat-colour JPEG compress to a few kilobytes.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.imagefactory import bad_files, jpeg_bytes, smear_like, write

# Name length limit of common file systems (ext4, NTFS, APFS) in bytes of the encoded name.
NAME_MAX = 255


@dataclass(frozen=True)
class CorpusFile:
    kind: str
    path: Path
    good: bool
    # Words one of which the error message must contain (bad files only), to check the reason is the right one.
    reason_words: tuple[str, ...] = ()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 20_000) -> bytes:
    """A real decompression bomb: a 1-bit PNG of ``side`` x ``side`` zeros (400 megapixels), about 50 kB on disk."""
    row = b"\x00" * (1 + side // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    body = bytearray()
    block = row * 512
    for _ in range(side // 512):
        body += compressor.compress(block)
    body += compressor.compress(row * (side % 512))
    body += compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", bytes(body)) + _png_chunk(b"IEND", b"")
    )


def long_name(stem_char: str, suffix: str = ".jpg", limit: int = NAME_MAX) -> str:
    """A file name of ``stem_char`` repeated to within a few bytes of ``limit`` bytes (UTF-8)."""
    width = len(stem_char.encode("utf-8"))
    count = (limit - len(suffix.encode()) - 2) // width
    return stem_char * count + suffix


def make_corpus(folder: Path, *, large: bool = True) -> list[CorpusFile]:
    """Write the corpus into ``folder`` (created) and describe each entry. ``large=False`` skips the big images."""
    folder.mkdir(parents=True, exist_ok=True)
    entries: list[CorpusFile] = []

    def add(kind: str, path: Path, good: bool, *words: str) -> None:
        entries.append(CorpusFile(kind, path, good, tuple(words)))

    # Bad: from the shared factory (zero-byte, truncated, corrupt, text as .jpg, HTML as .png).
    words = {
        "zero_byte": ("empty",),
        "truncated": ("truncated", "corrupt"),
        "corrupt": ("corrupt", "truncated", "not an image"),
        "text_as_jpg": ("not an image",),
        "html_as_png": ("not an image",),
    }
    for kind, path in bad_files(folder).items():
        add(kind, path, False, *words[kind])
    good_jpeg = jpeg_bytes(smear_like(11))
    add("jpeg_header_only", write(folder / "header-only.jpg", good_jpeg[:300]), False, "truncated", "corrupt")
    add("decompression_bomb", write(folder / "bomb.png", bomb_png()), False, "too large")
    if large:
        # 10000 x 10000 = 100 megapixels: twice the reader's limit, so it is refused as too large.
        path = folder / "huge-10000.png"
        Image.new("1", (10_000, 10_000), 1).save(path, optimize=True)
        add("huge_10000x10000", path, False, "too large")
        # 5000 x 5000 flat JPEG: large but under the limit, so it is read.
        path = folder / "large-5000.jpg"
        Image.new("RGB", (5000, 5000), (214, 180, 200)).save(path, quality=80)
        add("large_5000x5000", path, True)

    # Good: unusual but valid images, each converted to 8-bit RGB.
    ramp = (np.arange(48 * 48, dtype=np.uint16).reshape(48, 48) * 28).astype(np.uint16)
    path = folder / "deep-16bit.tif"
    Image.fromarray(ramp).save(path)
    add("tiff_16bit", path, True)
    path = folder / "cmyk.jpg"
    smear_like(12).convert("CMYK").save(path)
    add("cmyk_jpeg", path, True)
    path = folder / "palette-transparent.png"
    smear_like(13).convert("P").save(path, transparency=0)
    add("palette_png_transparency", path, True)
    path = folder / "grey.jpg"
    smear_like(14).convert("L").save(path)
    add("greyscale_jpeg", path, True)
    path = folder / "rgba.png"
    smear_like(15).convert("RGBA").save(path)
    add("rgba_png", path, True)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    add(
        "exif_rotated",
        write(folder / "exif-rotated.jpg", jpeg_bytes(smear_like(16, 48).crop((0, 0, 48, 24)), exif=exif)),
        True,
    )
    path = folder / "one-pixel.png"
    Image.new("RGB", (1, 1), (200, 100, 150)).save(path)
    add("one_pixel", path, True)
    path = folder / "plain.bmp"
    smear_like(17).save(path)
    add("bmp", path, True)
    add("plain_jpeg", write(folder / "plain.jpg", good_jpeg), True)
    add("non_ascii_name", write(folder / "Ausstrich-Äöü_血液_é😀.jpg", jpeg_bytes(smear_like(18))), True)
    add("long_ascii_name", write(folder / long_name("a"), jpeg_bytes(smear_like(19))), True)
    add("long_non_ascii_name", write(folder / long_name("é", ".png"), _png_bytes(smear_like(20))), True)
    try:
        # Not valid UTF-8 (Latin-1 'é' from an old USB stick): POSIX keeps such names; APFS and Windows refuse them.
        latin1 = write(folder / os.fsdecode(b"latin1-caf\xe9.jpg"), jpeg_bytes(smear_like(23)))
        add("non_utf8_name", latin1, True)
    except (OSError, UnicodeError):
        pass
    upper = folder / "UPPER.JPEG"
    add("upper_case_extension", write(upper, jpeg_bytes(smear_like(21))), True)

    # Unreadable entries the folder scan must report, not skip silently and not follow forever.
    dangling = folder / "dangling-link.jpg"
    os.symlink(folder / "does-not-exist.jpg", dangling)
    add("dangling_symlink", dangling, False, "link", "not found", "cannot be read")
    self_loop = folder / "self-loop.jpg"
    os.symlink(self_loop.name, self_loop)
    add("symlink_to_itself", self_loop, False, "link", "cannot be read", "symbolic")
    loop_folder = folder / "loop"
    loop_folder.mkdir()
    os.symlink("..", loop_folder / "back-to-parent")  # scanning must not follow this forever
    fifo = folder / "fifo.jpg"
    os.mkfifo(fifo)  # reading it would block forever: the scan must not open it
    add("fifo_named_jpg", fifo, False, "not a regular file", "cannot be read")
    if os.geteuid() != 0:
        # As root, permissions do not stop reads, so this entry only exists for ordinary users.
        locked = write(folder / "no-permission.jpg", jpeg_bytes(smear_like(22)))
        locked.chmod(0)
        add("permission_denied", locked, False, "permission")
    return entries


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
