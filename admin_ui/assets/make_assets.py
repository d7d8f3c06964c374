"""Regenerate the panel's brand images (background.png, favicon.png) with Pillow and NumPy.

The PNGs are committed; run this only to change them:  python admin_ui/assets/make_assets.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent


def make_background(width: int = 1280, height: int = 800) -> Image.Image:
    """A dark green diagonal gradient with soft glows, two faint rings and a vignette."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = x / width * 0.55 + y / height * 0.45
    top = np.array([12, 58, 38], np.float32)
    bottom = np.array([4, 20, 15], np.float32)
    img = top * (1 - t[..., None]) + bottom * t[..., None]
    glows = [
        (0.15, 0.18, 420, (34, 197, 94), 0.30),
        (0.86, 0.28, 360, (20, 184, 166), 0.22),
        (0.70, 0.92, 520, (22, 163, 74), 0.25),
        (0.35, 0.75, 260, (132, 204, 22), 0.12),
    ]
    for fx, fy, radius, colour, strength in glows:
        d = ((x - fx * width) ** 2 + (y - fy * height) ** 2) / (radius * radius)
        alpha = (np.exp(-d * 2.2) * strength)[..., None]
        img = img * (1 - alpha) + np.array(colour, np.float32) * alpha
    for fx, fy, radius, strength in [(0.80, 0.20, 300, 0.10), (0.12, 0.85, 220, 0.08)]:
        d = np.sqrt((x - fx * width) ** 2 + (y - fy * height) ** 2)
        alpha = (np.exp(-((d - radius) / 3.0) ** 2) * strength)[..., None]
        img = img * (1 - alpha) + np.array([187, 247, 208], np.float32) * alpha
    vignette = 1 - 0.175 * (((x - width / 2) / (width / 2)) ** 2 + ((y - height / 2) / (height / 2)) ** 2)
    img *= vignette[..., None]
    image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(1.2))


def make_favicon(size: int = 64) -> Image.Image:
    """A rounded green square with a white four-point sparkle."""
    big = 256
    icon = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    y, x = np.mgrid[0:big, 0:big].astype(np.float32)
    t = (x + y) / (2 * big)
    grad = np.array([34, 197, 94], np.float32) * (1 - t[..., None]) + np.array([5, 150, 105], np.float32) * t[..., None]
    fill = Image.fromarray(grad.astype(np.uint8), "RGB").convert("RGBA")
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).rounded_rectangle((8, 8, big - 8, big - 8), radius=56, fill=255)
    icon.paste(fill, (0, 0), mask)
    c, r, w = big / 2, 82, 20
    star = [(c, c - r), (c + w, c - w), (c + r, c), (c + w, c + w),
            (c, c + r), (c - w, c + w), (c - r, c), (c - w, c - w)]
    ImageDraw.Draw(icon).polygon(star, fill=(255, 255, 255, 255))
    return icon.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    """Write both images next to this script."""
    make_background().save(HERE / "background.png", optimize=True)
    make_favicon().save(HERE / "favicon.png", optimize=True)


if __name__ == "__main__":
    main()
