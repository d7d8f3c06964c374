"""The pixels of a canvas edit (Zoom Out, Pan, Vary (Region); engine/requests/canvas_edits.py says what each asks).

SSD-1B has no inpainting weights of its own, so an edit runs diffusers' SDXL inpainting pipeline over the same
modules (engine/gpu/pipeline.py): at each step the latents outside the mask are put back to the source's, noised
to that step, so what the model paints inside grows out of what surrounds it. Here, pure and on the CPU:

- ``build_canvas``: the source on a canvas of the job's size; the part to paint, grown by a seam band into the
  source so the join itself is painted; a blurred stretch of the source under the new part (the VAE sees some
  context there rather than a hard edge; at strength 1 its pixels are replaced anyway);
- ``finish``: the source's own pixels back over everything outside the seam band, faded in across the band: the
  latent round trip would otherwise soften the kept part, and a hard edge would show;
- ``grid_picture``: the image with its lettered grid, for choosing the cells of a Vary (Region).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from engine.requests.canvas_edits import GRID, REGION, ZOOM, CanvasEdit, cell_name
from engine.requests.sizes import Size

Box = tuple[int, int, int, int]  # left, top, right, bottom


@dataclass(frozen=True)
class Canvas:
    """What the inpainting pipeline starts from for one job, and what ``finish`` puts back afterwards."""

    image: Image.Image  # RGB at the job's size: the source placed, a blurred stretch of it elsewhere
    mask: Image.Image  # L: 255 where the model paints (the new part and the seam band)
    keep: Image.Image  # L: 255 where the source's pixels go back over the result, fading to 0 across the band


def seam_width(canvas: Size) -> int:
    """How far the painted part reaches into the source (a sixteenth of the shorter side, at least 8 pixels)."""
    return max(8, min(canvas.width, canvas.height) // 16)


def source_box(source: Size, canvas: Size, edit: CanvasEdit) -> Box:
    """Where the source image lands on the canvas: centred and shrunk (zoom), against the side away from a pan at
    the canvas's height or width, or over all of it (region)."""
    cw, ch = canvas.width, canvas.height
    if edit.kind == ZOOM:
        w, h = round(cw / edit.zoom), round(ch / edit.zoom)
        left, top = (cw - w) // 2, (ch - h) // 2
        return left, top, left + w, top + h
    if edit.kind in ("left", "right"):
        w = min(cw, round(source.width * ch / source.height))
        return (cw - w, 0, cw, ch) if edit.kind == "left" else (0, 0, w, ch)
    if edit.kind in ("up", "down"):
        h = min(ch, round(source.height * cw / source.width))
        return (0, ch - h, cw, ch) if edit.kind == "up" else (0, 0, cw, h)
    return 0, 0, cw, ch


def paint_boxes(source: Size, canvas: Size, edit: CanvasEdit) -> list[Box]:
    """The rectangles the model makes anew: the chosen cells (region), else the canvas around the source."""
    cw, ch = canvas.width, canvas.height
    if edit.kind == REGION:
        return [(round(c * cw / GRID), round(r * ch / GRID), round((c + 1) * cw / GRID), round((r + 1) * ch / GRID))
                for r in range(GRID) for c in range(GRID) if edit.cells >> (r * GRID + c) & 1]
    left, top, right, bottom = source_box(source, canvas, edit)
    around = [(0, 0, cw, top), (0, bottom, cw, ch), (0, top, left, bottom), (right, top, cw, bottom)]
    return [b for b in around if b[2] > b[0] and b[3] > b[1]]


def _drawn(canvas: Size, boxes: list[Box], grow: int) -> Image.Image:
    """An L image, 255 on ``boxes`` each grown by ``grow`` pixels (clipped to the canvas), 0 elsewhere."""
    mask = Image.new("L", (canvas.width, canvas.height), 0)
    draw = ImageDraw.Draw(mask)
    for left, top, right, bottom in boxes:
        draw.rectangle((left - grow, top - grow, right + grow - 1, bottom + grow - 1), fill=255)
    return mask


def build_canvas(edit: CanvasEdit, source: Image.Image, canvas: Size) -> Canvas:
    """The inpainting inputs for ``edit`` of the ``source`` image on a ``canvas``-sized canvas."""
    picture = source.convert("RGB")
    size = Size(*picture.size)
    box = source_box(size, canvas, edit)
    painted = paint_boxes(size, canvas, edit)
    seam = seam_width(canvas)
    if edit.kind == REGION:
        image = picture if picture.size == (canvas.width, canvas.height) else \
            picture.resize((canvas.width, canvas.height), Image.Resampling.LANCZOS)
    else:
        stretched = picture.resize((canvas.width, canvas.height), Image.Resampling.BILINEAR)
        image = stretched.filter(ImageFilter.GaussianBlur(max(canvas.width, canvas.height) / 16))
        image.paste(picture.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS), box[:2])
    mask = _drawn(canvas, painted, seam)
    # 255 out to half the band, then a blur of a quarter band: about 1 at the painted part, about 0 a band away
    fade = _drawn(canvas, painted, seam // 2).filter(ImageFilter.GaussianBlur(seam / 4))
    keep = fade.point(lambda v: 255 - v)
    return Canvas(image=image, mask=mask, keep=keep)


def finish(result: Image.Image, canvas: Canvas) -> Image.Image:
    """The model's image with the source's own pixels put back where ``canvas.keep`` says."""
    return Image.composite(canvas.image, result.convert("RGB"), canvas.keep)


def grid_picture(image: Image.Image, max_side: int = 768) -> bytes:
    """A PNG of ``image`` (at most ``max_side`` on its longer side) with the Vary (Region) grid drawn over it and each
    cell named (``A1`` top left), for the member to choose cells from."""
    picture = image.convert("RGB")
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    w, h = picture.size
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(10, min(w, h) // (GRID * 4)))
    for i in range(1, GRID):
        x, y = round(i * w / GRID), round(i * h / GRID)
        for line in (((x, 0), (x, h)), ((0, y), (w, y))):
            draw.line(line, fill=(0, 0, 0), width=3)
            draw.line(line, fill=(255, 255, 255), width=1)
    for index in range(GRID * GRID):
        row, column = divmod(index, GRID)
        at = (round(column * w / GRID) + 4, round(row * h / GRID) + 3)
        draw.text(at, cell_name(index), fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    buf = io.BytesIO()
    picture.save(buf, "PNG", compress_level=4)
    return buf.getvalue()
