"""Image I/O: reduced-size JPEG decoding, cropping to training images, and picture grids."""

from __future__ import annotations

import io
import math
import os
from typing import Literal, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.boxes import CropPlan, Rect
from pipeline.files import write_bytes

Resample = Literal["lanczos", "bicubic", "bilinear", "box"]
_PIL_RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}


class ImageDecodeError(ValueError):
    """A photo that cannot be decoded (corrupt, truncated, not an image)."""


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


def _pil_box(r: Rect) -> tuple[float, float, float, float]:
    return (r.x0, r.y0, r.x1, r.y1)


def render_crop(im: Image.Image, plan: CropPlan, scale: tuple[float, float], size: int, resample: Resample) -> np.ndarray:
    """Cut ``plan`` (in full-size photo coordinates) out of ``im`` and resize it to ``size`` x ``size``.

    ``scale`` maps full-size coordinates to ``im`` (which may be a reduced decode). Resizing uses
    PIL's antialiased filters with a sub-pixel source box, so no pixel is lost to rounding.
    Returns uint8 [size, size, 3].
    """
    sx, sy = scale
    canvas = plan.canvas.scaled(sx, sy)
    filt = _PIL_RESAMPLE[resample]
    if not plan.needs_padding:
        return np.asarray(im.resize((size, size), filt, box=_pil_box(canvas)))
    # Padding path: materialise the canvas at the decoded resolution with edge-replicated borders.
    valid = plan.valid.scaled(sx, sy)
    vx0, vy0 = max(0, round(valid.x0)), max(0, round(valid.y0))
    vx1, vy1 = min(im.width, max(vx0 + 1, round(valid.x1))), min(im.height, max(vy0 + 1, round(valid.y1)))
    pixels = np.asarray(im.crop((vx0, vy0, vx1, vy1)))
    cx0, cy0 = math.floor(canvas.x0), math.floor(canvas.y0)
    cx1, cy1 = math.ceil(canvas.x1), math.ceil(canvas.y1)
    pad = ((max(0, vy0 - cy0), max(0, cy1 - vy1)), (max(0, vx0 - cx0), max(0, cx1 - vx1)), (0, 0))
    padded = np.pad(pixels, pad, mode="edge")
    # offset of the padded array's origin in decoded coordinates
    ox, oy = vx0 - pad[1][0], vy0 - pad[0][0]
    box = (canvas.x0 - ox, canvas.y0 - oy, canvas.x1 - ox, canvas.y1 - oy)
    return np.asarray(Image.fromarray(padded).resize((size, size), filt, box=box))


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    """uint8 [H, W, 3] array or PIL image -> PNG file bytes."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def image_grid(
    images: np.ndarray,
    captions: Sequence[str] | None = None,
    columns: int = 8,
    zoom: int = 2,
    title: str | None = None,
) -> Image.Image:
    """Tile uint8 [N, H, W, 3] images into one picture, each tile zoomed and optionally captioned."""
    n, h, w, _ = images.shape
    rows = max(1, math.ceil(n / columns))
    tw, th = w * zoom, h * zoom
    cap_h = 14 if captions is not None else 0
    title_h = 20 if title else 0
    pad = 4
    grid = Image.new("RGB", (columns * (tw + pad) + pad, title_h + rows * (th + cap_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    small, big = _font(10), _font(14)
    if title:
        draw.text((pad, 3), title, fill=(0, 0, 0), font=big)
    for i in range(n):
        r, c = divmod(i, columns)
        x, y = pad + c * (tw + pad), title_h + pad + r * (th + cap_h + pad)
        grid.paste(Image.fromarray(images[i]).resize((tw, th), Image.Resampling.NEAREST), (x, y))
        if captions is not None:
            text = captions[i]
            while text and draw.textlength(text, font=small) > tw:
                text = text[:-1]
            draw.text((x, y + th + 1), text, fill=(0, 0, 0), font=small)
    return grid


def save_png(path: str | os.PathLike, picture: np.ndarray | Image.Image) -> None:
    """Write a PNG atomically."""
    write_bytes(path, png_bytes(picture))
