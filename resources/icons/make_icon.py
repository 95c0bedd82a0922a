"""Draw the application icon (a stained lymphoblast: purple nucleus in a pale cell on a rounded tile).

Run from the repository root to regenerate the committed images:
``.venv/bin/python resources/icons/make_icon.py``
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SIZE = 512


def draw(size: int = SIZE) -> Image.Image:
    scale = 4  # draw large and shrink, for smooth edges
    big = size * scale
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    d = ImageDraw.Draw(image)
    pad = big // 16
    d.rounded_rectangle((pad, pad, big - pad, big - pad), radius=big // 6, fill=(243, 222, 229, 255))
    d.ellipse((big * 0.16, big * 0.16, big * 0.84, big * 0.84), fill=(205, 176, 222, 255))  # cytoplasm
    d.ellipse((big * 0.27, big * 0.25, big * 0.75, big * 0.73), fill=(88, 44, 132, 255))  # nucleus
    d.ellipse((big * 0.52, big * 0.36, big * 0.60, big * 0.44), fill=(140, 96, 178, 255))  # nucleolus
    image = image.filter(ImageFilter.GaussianBlur(scale / 2))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    icon = draw()
    icon.save(HERE / "allgui.png")
    icon.save(HERE / "allgui.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])


if __name__ == "__main__":
    main()
