"""Photo decoding and cropping for prepare: open a photo lazily, decode it no larger than needed, and cut
a planned box out of it into a square training image."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

from pipeline.boxes import CropPlan
from pipeline.config import Resample
from pipeline.errors import ImageDecodeError

_PIL_RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}


def open_photo(path: str | os.PathLike) -> Image.Image:
    """Open a photo lazily: reads only the header, so ``.size`` is known before any pixel is decoded."""
    try:
        return Image.open(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from None


def decode_reduced(im: Image.Image, reduce: float) -> Image.Image:
    """Decode an opened photo as RGB, shrunk at decode time by up to ``reduce`` (>= 1).

    JPEG decoders can scale by 1/2, 1/4 or 1/8 inside the inverse DCT (PIL's ``draft``), which
    skips most of the decoding work: a 3264x2562 photo whose smallest crop needs only 1/8 of its
    pixels costs about as much as a 408x320 one. Other formats are decoded at full size, and the
    caller scales box coordinates by ``decoded.size / im.size`` either way.

    Grayscale, CMYK and palette images are converted to RGB. Raises :class:`ImageDecodeError` for
    anything that does not decode whole (PIL's ``LOAD_TRUNCATED_IMAGES`` stays False).
    """
    try:
        if reduce >= 2:
            w, h = im.size
            im.draft("RGB", (math.ceil(w / reduce), math.ceil(h / reduce)))
        im.load()
        if im.mode != "RGB":
            # palette images with transparency go through RGBA so the palette is applied properly
            im = im.convert("RGBA").convert("RGB") if im.mode == "P" else im.convert("RGB")
        return im
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from None


def render_crop(im: Image.Image, plan: CropPlan, scale: tuple[float, float], size: int, resample: Resample) -> np.ndarray:
    """Cut ``plan`` (in full-size photo coordinates) out of ``im`` and resize it to ``size`` x ``size``.

    ``scale`` maps full-size coordinates to ``im`` (which may be a reduced decode). The pixels are
    cut out first, so the resize filter never reaches past the crop (no colour bleeding in from
    outside the box), then resized with PIL's antialiased filters from a sub-pixel source box.
    Canvas parts outside ``plan.valid`` repeat the nearest valid pixel. Returns uint8 [size, size, 3].
    """
    sx, sy = scale
    canvas, valid = plan.canvas.scaled(sx, sy), plan.valid.scaled(sx, sy)
    # integer pixel region to take: the canvas, limited to the valid region and the decoded image
    x0 = max(0, math.floor(max(canvas.x0, valid.x0) + 1e-6))
    y0 = max(0, math.floor(max(canvas.y0, valid.y0) + 1e-6))
    x1 = min(im.width, math.ceil(min(canvas.x1, valid.x1) - 1e-6))
    y1 = min(im.height, math.ceil(min(canvas.y1, valid.y1) - 1e-6))
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    pixels = im.crop((x0, y0, x1, y1))
    # edge-pad the region out to the canvas where the canvas reaches beyond it
    px0, py0 = max(0, x0 - math.floor(canvas.x0)), max(0, y0 - math.floor(canvas.y0))
    px1, py1 = max(0, math.ceil(canvas.x1) - x1), max(0, math.ceil(canvas.y1) - y1)
    if px0 or py0 or px1 or py1:
        pixels = Image.fromarray(np.pad(np.asarray(pixels), ((py0, py1), (px0, px1), (0, 0)), mode="edge"))
    ox, oy = x0 - px0, y0 - py0  # where the region's origin sits in decoded coordinates
    box = (canvas.x0 - ox, canvas.y0 - oy, canvas.x1 - ox, canvas.y1 - oy)
    return np.asarray(pixels.resize((size, size), _PIL_RESAMPLE[resample], box=box))
