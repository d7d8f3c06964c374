"""Canvas edits of one finished image, as requests: Zoom Out, Pan and Vary (Region).

What each asks for and the size of the canvas it paints on; the pixels (where the source goes, what the
model paints, how the two are joined) are engine/media/canvas.py's. A job stores its edit in three plain
fields of GenerationParams (``canvas``, ``zoom``, ``region``); ``CanvasEdit`` is their checked form.

- Zoom Out (2x, 1.5x, or a custom factor): the image shrinks inside a canvas of its own size; the border is new.
- Pan (left, right, up, down): the canvas grows on that side to the allowed size nearest PAN_GROWTH times the
  image's length on that axis (the image keeps its other side); only the new strip is painted.
- Vary (Region): the chosen cells of a GRID x GRID grid over the image are painted again; the rest stays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.requests.checks import ParamError
from engine.requests.sizes import Size

ZOOM, REGION = "zoom", "region"
PANS: tuple[str, ...] = ("left", "right", "up", "down")
KINDS: tuple[str, ...] = (ZOOM, *PANS, REGION)
# Midjourney's Custom Zoom range; below 1.1 the new border is a sliver the model cannot draw anything into
MIN_ZOOM, MAX_ZOOM = 1.1, 2.0
PAN_GROWTH = 1.5  # a pan aims at a canvas half as long again on its axis (Midjourney's pans add about that)
GRID = 5  # Vary (Region) cells per side: 25 cells, the most options one Discord select menu holds
COLUMNS = "ABCDE"
ALL_CELLS = (1 << GRID * GRID) - 1


class CanvasError(ParamError):
    """A canvas edit that cannot be made; the message says why and what to do instead."""


@dataclass(frozen=True)
class CanvasEdit:
    """One canvas edit: its kind (KINDS), the zoom-out factor (zoom) and the cells to paint (region: bit
    ``row * GRID + column`` set for each cell, row 0 at the top)."""

    kind: str
    zoom: float = 1.0
    cells: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CanvasError(f"unknown canvas edit '{self.kind}'; use one of {', '.join(KINDS)}")
        if self.kind == ZOOM and not (MIN_ZOOM <= self.zoom <= MAX_ZOOM):  # NaN fails too
            raise CanvasError("the zoom-out factor must be from {lo} to {hi} (got {value})", lo=f"{MIN_ZOOM:g}",
                              hi=f"{MAX_ZOOM:g}", value=f"{self.zoom:g}")
        if self.kind == REGION and not 0 < self.cells <= ALL_CELLS:
            raise CanvasError("choose at least one of the {count} cells to paint again", count=GRID * GRID)

    @classmethod
    def zoom_out(cls, factor: str | float) -> CanvasEdit:
        """A Zoom Out by ``factor`` as typed (``1.5``, ``2x``); CanvasError says what is allowed."""
        text = str(factor).strip().lower().removesuffix("x").strip()
        try:
            value = float(text)
        except ValueError:
            raise CanvasError("the zoom-out factor must be a number from {lo} to {hi} (got '{value}')",
                              lo=f"{MIN_ZOOM:g}", hi=f"{MAX_ZOOM:g}", value=factor) from None
        return cls(ZOOM, zoom=round(value, 2))

    @property
    def label(self) -> str:
        """What the edit is, for people: ``Zoom Out 2x``, ``Pan left``, ``Vary (Region) A1, B2``."""
        if self.kind == ZOOM:
            return f"Zoom Out {self.zoom:g}x"
        if self.kind == REGION:
            return f"Vary (Region) {', '.join(cell_names(self.cells))}"
        return f"Pan {self.kind}"


# why a pan cannot be made, by direction: a whole sentence each, so that each language can say it
_CANNOT_PAN = {
    "left": "no size this server offers is wider than {size}, so this image cannot be panned left; pan it up or "
            "down, or zoom out",
    "right": "no size this server offers is wider than {size}, so this image cannot be panned right; pan it up or "
             "down, or zoom out",
    "up": "no size this server offers is taller than {size}, so this image cannot be panned up; pan it left or "
          "right, or zoom out",
    "down": "no size this server offers is taller than {size}, so this image cannot be panned down; pan it left or "
            "right, or zoom out",
}


def cell_name(index: int) -> str:
    """The grid name of cell ``index`` (row-major, 0-based): ``A1`` top left, ``E5`` bottom right."""
    row, column = divmod(index, GRID)
    return f"{COLUMNS[column]}{row + 1}"


def cell_names(cells: int) -> list[str]:
    """The names of the cells set in ``cells``, in reading order."""
    return [cell_name(i) for i in range(GRID * GRID) if cells >> i & 1]


def canvas_size(source: Size, edit: CanvasEdit, sizes: tuple[Size, ...]) -> Size:
    """The size of the canvas ``edit`` paints on for an image of ``source`` size, among the allowed ``sizes``.

    Zoom and region keep the image's size. A pan takes the allowed size whose shape is nearest PAN_GROWTH times
    as long on its axis, among those longer on that axis than the image's shape; CanvasError when there is none.
    """
    if edit.kind not in PANS:
        return source
    wide = edit.kind in ("left", "right")
    # compared as log ratios, so 2:1 and 1:2 are equally far from 1:1 (as resolve_size does)
    wanted = source.ratio * PAN_GROWTH if wide else source.ratio / PAN_GROWTH
    longer = [s for s in sizes if (s.ratio > source.ratio * 1.05 if wide else s.ratio < source.ratio / 1.05)]
    if not longer:
        raise CanvasError(_CANNOT_PAN[edit.kind], size=source)
    return min(longer, key=lambda s: (abs(math.log(s.ratio / wanted)), -s.width * s.height))
