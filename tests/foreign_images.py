"""Images that are not this laboratory's smears, to check that ``needs_review`` catches them.

Two families: pictures that are not smears at all (noise, blank, gradients, stripes, 1/f "landscapes", shape
scenes, text), and real smears changed the way another laboratory's images would differ (other stain colours,
inverted, much higher or lower magnification, single-cell crops). A third family is real: the sample pictures that
scikit-image ships (the test extra installs it). Everything is seeded and deterministic.

A test fixture (tests/test_secnn.py, tests/test_default_model.py) that the research scripts in training/ reuse from
the checkout for the held-out evaluation and the model card's timing; the installed package uses neither.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

SIZE = 224


def _image(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")


def uniform_noise(rng: np.random.Generator) -> Image.Image:
    return _image(rng.uniform(0, 255, (SIZE, SIZE, 3)))


def gaussian_noise(rng: np.random.Generator) -> Image.Image:
    grey = rng.normal(rng.uniform(60, 200), rng.uniform(10, 60), (SIZE, SIZE, 1))
    return _image(np.repeat(grey, 3, axis=2))


def blank(rng: np.random.Generator) -> Image.Image:
    return _image(np.broadcast_to(rng.uniform(0, 255, 3), (SIZE, SIZE, 3)).copy())


def gradient(rng: np.random.Generator) -> Image.Image:
    ramp = np.linspace(0, 1, SIZE)
    ramp = ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None]
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return _image(np.broadcast_to(start + (end - start) * ramp, (SIZE, SIZE, 3)).copy())


def stripes(rng: np.random.Generator) -> Image.Image:
    period = rng.integers(4, 40)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    pattern = ((xx + yy * rng.integers(0, 2)) // period) % 2
    colours = rng.uniform(0, 255, (2, 3))
    return _image(colours[pattern])


def landscape(rng: np.random.Generator) -> Image.Image:
    """1/f noise coloured like a photograph of clouds, hills or foliage."""
    fy = np.fft.fftfreq(SIZE)[:, None]
    fx = np.fft.fftfreq(SIZE)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / SIZE) ** rng.uniform(1.6, 2.4)
    channels = []
    base = np.real(np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random((SIZE, SIZE)))))
    base = (base - base.min()) / (np.ptp(base) + 1e-9)
    palette = rng.uniform(0, 255, (2, 3))
    for channel in range(3):
        channels.append(palette[0, channel] + (palette[1, channel] - palette[0, channel]) * base)
    return _image(np.stack(channels, axis=2) + rng.normal(0, 4, (SIZE, SIZE, 3)))


def shapes(rng: np.random.Generator) -> Image.Image:
    """A 'scene' of random filled shapes over a two-colour background, like a cartoon or an object photo."""
    image = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, rng.integers(80, 180), SIZE, SIZE), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    for _ in range(rng.integers(3, 12)):
        x0, y0 = rng.integers(0, SIZE - 20, 2)
        x1, y1 = x0 + rng.integers(10, 120), y0 + rng.integers(10, 120)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((int(x0), int(y0), int(x1), int(y1)), fill=colour)
        else:
            draw.polygon([tuple(int(v) for v in rng.integers(0, SIZE, 2)) for _ in range(3)], fill=colour)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))


def text(rng: np.random.Generator) -> Image.Image:
    """A scanned-document look: dark text lines on a light page."""
    image = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(200, 256, 3)))
    draw = ImageDraw.Draw(image)
    letters = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789"
    for row in range(4, SIZE - 10, int(rng.integers(12, 20))):
        line = "".join(rng.choice(list(letters), 40))
        draw.text((4, row), line, fill=tuple(int(v) for v in rng.integers(0, 80, 3)))
    return image


GENERATED: dict[str, Callable[[np.random.Generator], Image.Image]] = {
    "uniform noise": uniform_noise,
    "grey noise": gaussian_noise,
    "blank": blank,
    "gradient": gradient,
    "stripes": stripes,
    "landscape": landscape,
    "shapes": shapes,
    "text": text,
}


def generated_images(per_kind: int = 10, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """``per_kind`` images of every generated non-smear kind, as (kind, image)."""
    rng = np.random.default_rng(seed)
    return [(kind, make(rng)) for kind, make in GENERATED.items() for _ in range(per_kind)]


# ---- real smears changed the way a foreign laboratory's images differ ----------------------------------------------
def _hue_rotate(image: Image.Image, degrees: float) -> Image.Image:
    hsv = np.array(image.convert("HSV"), dtype=np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(degrees / 360 * 255)) % 256
    return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


def _he_stain(image: Image.Image) -> Image.Image:
    """Recolour as if stained with haematoxylin (blue-purple nuclei) and eosin (pink everything else)."""
    grey = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    dark = 1.0 - grey
    haematoxylin = np.array([60, 40, 120])
    eosin = np.array([240, 150, 190])
    array = eosin[None, None] * (1 - dark[..., None]) + haematoxylin[None, None] * dark[..., None]
    return _image(array)


def _papanicolaou(image: Image.Image) -> Image.Image:
    """Green-orange-blue recolouring in the style of a Papanicolaou stain."""
    array = np.asarray(image, dtype=np.float64)
    return _image(array[..., [1, 0, 2]] * np.array([0.7, 1.1, 0.6]) + np.array([20, 30, 0]))


def _brown_dab(image: Image.Image) -> Image.Image:
    """Immunohistochemistry look: brown DAB on a blue-grey counterstain."""
    grey = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    dark = (1 - grey)[..., None]
    return _image(np.array([235, 235, 240]) * (1 - dark) + np.array([120, 70, 30]) * dark)


def _zoom(image: Image.Image, factor: float, rng: np.random.Generator) -> Image.Image:
    """Crop 1/factor of the field and enlarge it: a higher magnification or a single-cell crop."""
    width, height = image.size
    crop = int(round(width / factor))
    x0, y0 = rng.integers(0, width - crop + 1), rng.integers(0, height - crop + 1)
    return image.crop((int(x0), int(y0), int(x0) + crop, int(y0) + crop)).resize((width, height), Image.BICUBIC)


def _shrink(image: Image.Image, factor: int) -> Image.Image:
    """A lower magnification: the field shrunk and tiled, so cells look ``factor`` times smaller."""
    width, height = image.size
    small = image.resize((width // factor, height // factor), Image.LANCZOS)
    out = Image.new("RGB", (width, height))
    for row in range(factor):
        for column in range(factor):
            tile = small if (row + column) % 2 == 0 else ImageOps.mirror(small)
            out.paste(tile, (column * (width // factor), row * (height // factor)))
    return out


def altered_smears(smears: Sequence[Image.Image], seed: int = 0) -> list[tuple[str, Image.Image]]:
    """Every alteration applied to every smear in ``smears``, as (kind, image)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, Image.Image]] = []
    for image in smears:
        image = image.convert("RGB")
        out += [
            ("H&E-like stain", _he_stain(image)),
            ("Papanicolaou-like stain", _papanicolaou(image)),
            ("DAB-like stain", _brown_dab(image)),
            ("hue rotated 120", _hue_rotate(image, 120)),
            ("hue rotated 240", _hue_rotate(image, 240)),
            ("inverted", ImageOps.invert(image)),
            ("4x zoom (single cell)", _zoom(image, 4.0, rng)),
            ("8x zoom", _zoom(image, 8.0, rng)),
            ("4x smaller (low magnification)", _shrink(image, 4)),
        ]
    return out


# ---- real pictures that scikit-image ships (another laboratory's microscopy among them) --------------------------
# file in skimage/data -> kind; tiles of the input size at native resolution, plus the whole picture shrunk to it.
LIBRARY_PICTURES = {
    "ihc.png": "immunohistochemistry tissue (real)",
    "cell.png": "cell microscopy, grey (real)",
    "retina.jpg": "retina fundus photograph (real)",
    "microaneurysms.png": "retina fundus detail (real)",
    "hubble_deep_field.jpg": "astronomy photograph (real)",
    "astronaut.png": "photograph (real)",
    "coffee.png": "photograph (real)",
    "chelsea.png": "photograph (real)",
    "rocket.jpg": "photograph (real)",
    "motorcycle_left.png": "photograph (real)",
    "brick.png": "texture photograph (real)",
    "grass.png": "texture photograph (real)",
    "gravel.png": "texture photograph (real)",
    "coins.png": "photograph, grey (real)",
    "page.png": "scanned page (real)",
}


def library_images(tiles: int = 4) -> list[tuple[str, Image.Image]]:
    """Real pictures from scikit-image's bundled sample data, as (kind, image): up to ``tiles`` crops of SIZE px
    along the diagonal and the whole picture resized. Empty where scikit-image is not installed."""
    try:
        import skimage
    except ImportError:
        return []
    folder = Path(skimage.__file__).parent / "data"
    out: list[tuple[str, Image.Image]] = []
    for name, kind in LIBRARY_PICTURES.items():
        with Image.open(folder / name) as picture:
            picture = picture.convert("RGB")
        width, height = picture.size
        short = min(width, height)
        count = min(tiles, (short - SIZE) // SIZE + 1) if short >= SIZE else 0
        for step in range(count):
            share = step / (count - 1) if count > 1 else 0.5
            x0, y0 = round((width - SIZE) * share), round((height - SIZE) * share)
            out.append((kind, picture.crop((x0, y0, x0 + SIZE, y0 + SIZE))))
        out.append((kind, picture.resize((SIZE, SIZE), Image.BILINEAR)))
    return out
