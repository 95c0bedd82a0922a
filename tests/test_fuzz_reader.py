"""Property-based fuzzing of the image reader: random bytes and mutated real JPEG/PNG/TIFF/BMP bytes either decode to
an 8-bit RGB image or raise ImageReadError, never another exception and never a hang.

Runs a few thousand cases in seconds; set ALLGUI_FUZZ_EXAMPLES (cases per strategy) for a longer local run.
The examples are derandomised so CI is repeatable; set ALLGUI_FUZZ_RANDOM=1 to explore new cases each run.
Each test prints how many cases it ran (``pytest -s``), the figure quoted in docs/reliability.md.
"""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from allgui.core.imageio import ImageReadError, decode_rgb, read_rgb
from tests.imagefactory import jpeg_bytes, smear_like

# Pillow warns about corrupt metadata it skips; those cases still end in an image or ImageReadError.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

EXAMPLES = int(os.environ.get("ALLGUI_FUZZ_EXAMPLES", "400"))
# A decode of these small inputs takes milliseconds; anything near this limit is a hang.
HANG_SECONDS = 10


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,  # timing is checked by the alarm below, not by hypothesis on a busy CI machine
        database=None,
        derandomize=os.environ.get("ALLGUI_FUZZ_RANDOM") != "1",
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Hang(Exception):
    pass


@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"the reader took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def decode_checked(data: bytes) -> None:
    """The property: a usable RGB image or the typed error, within the time limit."""
    with alarm(HANG_SECONDS):
        try:
            image = decode_rgb(data, "fuzz.jpg")
        except ImageReadError as error:
            assert error.path == "fuzz.jpg" and error.reason
            return
    assert image.mode == "RGB"
    assert image.width >= 1 and image.height >= 1


def _encoded(fmt: str, image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def seed_files() -> dict[str, bytes]:
    """Small valid files of every format and mode the reader supports, as starting points for mutation."""
    picture = smear_like(5, 24)
    grey16 = _ramp16()
    return {
        "jpeg": jpeg_bytes(picture, quality=70),
        "jpeg_progressive": jpeg_bytes(picture, progressive=True),
        "jpeg_cmyk": jpeg_bytes(picture.convert("CMYK")),
        "jpeg_exif": jpeg_bytes(picture, exif=_rotated_exif()),
        "png": _encoded("PNG", picture),
        "png_palette_transparent": _encoded("PNG", picture.convert("P"), transparency=0),
        "png_interlaced_rgba": _encoded("PNG", picture.convert("RGBA"), interlace=1),
        "png_16bit": _encoded("PNG", grey16),
        "tiff": _encoded("TIFF", picture),
        "tiff_lzw": _encoded("TIFF", picture, compression="tiff_lzw"),
        "tiff_16bit": _encoded("TIFF", grey16),
        "bmp": _encoded("BMP", picture),
        "bmp_grey": _encoded("BMP", picture.convert("L")),
    }


def _ramp16() -> Image.Image:
    import numpy as np

    return Image.fromarray((np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 251).astype(np.uint16))


def _rotated_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 8
    return exif


SEEDS = seed_files()
MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"BM", b"%!PS", b"GIF89a", b"RIFF"]


@st.composite
def mutated(draw: st.DrawFn, seeds: st.SearchStrategy[str] | None = None) -> bytes:
    """A seed file with a few byte-level edits: overwrites, bit flips, cuts, insertions and duplicated spans."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)) if seeds is None else seeds)])
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        operation = draw(st.sampled_from(["overwrite", "flip", "truncate", "insert", "duplicate", "delete"]))
        position = draw(st.integers(0, len(data) - 1))
        if operation == "overwrite":
            data[position] = draw(st.integers(0, 255))
        elif operation == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "truncate":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif operation == "duplicate":
            length = draw(st.integers(1, 256))
            data[position:position] = data[position : position + length]
        else:
            del data[position : position + draw(st.integers(1, 64))]
    return bytes(data)


def header_edited(seed: str, span: int) -> st.SearchStrategy[bytes]:
    """Overwrite bytes only in the first ``span`` bytes, where the dimensions, modes and chunk lengths live."""

    @st.composite
    def strategy(draw: st.DrawFn) -> bytes:
        data = bytearray(SEEDS[seed])
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, min(span, len(data)) - 1))] = draw(st.integers(0, 255))
        return bytes(data)

    return strategy()


def run_counted(
    strategy: st.SearchStrategy[bytes],
    name: str,
    examples: int = EXAMPLES,
    check: Callable[[bytes], None] = decode_checked,
) -> int:
    ran = 0

    @fuzz_settings(examples)
    @given(strategy)
    def property_holds(data: bytes) -> None:
        nonlocal ran
        ran += 1
        check(data)

    property_holds()
    print(f"\nfuzz {name}: {ran} cases")
    return ran


def test_seeds_are_valid_images() -> None:
    """The mutation seeds must themselves decode, or mutating them would test nothing."""
    for name, data in SEEDS.items():
        image = decode_rgb(data, name)
        assert image.mode == "RGB", name


def test_random_bytes() -> None:
    assert run_counted(st.binary(max_size=2048), "random bytes") >= EXAMPLES // 2


def test_random_bytes_after_a_format_signature() -> None:
    strategy = st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGICS), st.binary(max_size=2048))
    assert run_counted(strategy, "signature + random bytes") >= EXAMPLES // 2


def test_mutated_files() -> None:
    assert run_counted(mutated(), "mutated JPEG/PNG/TIFF/BMP") >= EXAMPLES // 2


@pytest.mark.parametrize(("seed", "span"), [("jpeg", 200), ("png", 40), ("tiff", 300), ("bmp", 60)])
def test_header_edits(seed: str, span: int) -> None:
    examples = EXAMPLES // 4
    assert run_counted(header_edited(seed, span), f"{seed} header edits", examples) >= examples // 2


def test_mutated_files_read_from_disk(tmp_path: Path) -> None:
    """The same property through read_rgb, which also reads the file (a smaller sample: it touches the disk)."""
    path = tmp_path / "fuzz.jpg"

    def check(data: bytes) -> None:
        path.write_bytes(data)
        with alarm(HANG_SECONDS):
            try:
                image = read_rgb(path)
            except ImageReadError as error:
                assert error.path == str(path)
                return
        assert image.mode == "RGB"

    examples = EXAMPLES // 4
    assert run_counted(mutated(), "mutated files via read_rgb", examples, check) >= examples // 2


def test_mutated_jpegs_with_reduced_decoding() -> None:
    """The hashing path: JPEGs scaled down in the DCT domain while decoding (``draft``)."""

    def check(data: bytes) -> None:
        with alarm(HANG_SECONDS):
            try:
                image = decode_rgb(data, "fuzz.jpg", draft=(8, 8))
            except ImageReadError:
                return
        assert image.mode == "RGB" and image.width >= 1 and image.height >= 1

    examples = EXAMPLES // 4
    jpegs = st.sampled_from(["jpeg", "jpeg_progressive", "jpeg_cmyk", "jpeg_exif"])
    assert run_counted(mutated(jpegs), "mutated JPEGs, reduced decoding", examples, check) >= examples // 2
