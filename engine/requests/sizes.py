"""Image sizes: parsing ``WxH`` and aspect ratios such as ``16:9``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from engine.requests.checks import ParamError

# The nine SDXL training resolutions, which SSD-1B keeps (segmind/SSD-1B model card).
SDXL_SIZES = "1024x1024,1152x896,896x1152,1216x832,832x1216,1344x768,768x1344,1536x640,640x1536"

MIN_SIDE = 64
MAX_SIDE = 2048

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[x×*]\s*(\d+)\s*$", re.IGNORECASE)
_RATIO_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")


class SizeError(ParamError):
    """A size or aspect ratio that cannot be used; the message says what is allowed."""


@dataclass(frozen=True, order=True)
class Size:
    """An image size in pixels."""

    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def ratio(self) -> float:
        """Width divided by height."""
        return self.width / self.height

    def aspect_label(self) -> str:
        """A short aspect label such as ``16:9`` (approximate for the SDXL buckets)."""
        for w, h in _COMMON_RATIOS:
            if abs(self.ratio / (w / h) - 1) < 0.005:
                return f"{w}:{h}"
        frac = Fraction(self.width, self.height).limit_denominator(32)
        return f"{frac.numerator}:{frac.denominator}"

    @classmethod
    def parse(cls, text: str) -> Size:
        """Parse ``WxH`` (``1024x1024``) into a size, checking only the syntax."""
        match = _SIZE_RE.match(str(text))
        if not match:
            raise SizeError("'{text}' is not a size; write it as WIDTHxHEIGHT, for example 1024x1024", text=text)
        return cls(int(match.group(1)), int(match.group(2)))

    def check_free_form(self) -> None:
        """Check a free-form size: a multiple of 8 from 64 to 2048 on each side."""
        for name, side in (("width", self.width), ("height", self.height)):
            if side % 8 or not MIN_SIDE <= side <= MAX_SIDE:
                raise SizeError("{name} {side} is not allowed; use a multiple of 8 from {lo} to {hi}", name=name,
                                side=side, lo=MIN_SIDE, hi=MAX_SIDE)


_COMMON_RATIOS = [(1, 1), (16, 9), (9, 16), (4, 3), (3, 4), (3, 2), (2, 3), (7, 4), (4, 7),
                  (12, 5), (5, 12), (21, 9), (9, 21), (5, 4), (4, 5), (13, 19), (19, 13)]


def parse_size_list(text: str) -> tuple[Size, ...]:
    """Parse a comma-separated ``SIZES`` value; every entry must be a valid free-form size."""
    sizes: list[Size] = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        size = Size.parse(part)
        size.check_free_form()
        if size not in sizes:
            sizes.append(size)
    if not sizes:
        raise SizeError("no sizes given; list at least one WIDTHxHEIGHT, for example 1024x1024")
    return tuple(sizes)


def resolve_size(text: str, allowed: tuple[Size, ...]) -> Size:
    """Turn ``WxH`` or an aspect ratio (``16:9``, ``portrait``...) into one of ``allowed``.

    A ratio picks the allowed size whose shape is closest to it. A size must be in ``allowed``.
    """
    raw = str(text).strip().lower()
    named = {"square": "1:1", "landscape": "3:2", "portrait": "2:3", "wide": "16:9", "tall": "9:16"}
    raw = named.get(raw, raw)
    options = ", ".join(str(s) for s in allowed)
    ratio_match = _RATIO_RE.match(raw)
    if ratio_match:
        w, h = float(ratio_match.group(1)), float(ratio_match.group(2))
        if w <= 0 or h <= 0:
            raise SizeError("aspect ratio '{text}' must have two positive numbers, like 16:9", text=text)
        wanted = w / h
        if not 1 / 8 <= wanted <= 8:
            raise SizeError("aspect ratio '{text}' is too extreme; stay between 1:8 and 8:1", text=text)
        # compare shapes on a log scale so 2:1 and 1:2 are equally far from 1:1
        return min(allowed, key=lambda s: (abs(math.log(s.ratio / wanted)), -s.width * s.height))
    try:
        size = Size.parse(raw)
    except SizeError:
        raise SizeError("unknown size '{text}'; use an aspect ratio like 16:9 or one of: {options}", text=text,
                        options=options) from None
    if size not in allowed:
        raise SizeError("size {size} is not offered here; choose one of: {options} (or an aspect ratio like 16:9)",
                        size=size, options=options)
    return size
