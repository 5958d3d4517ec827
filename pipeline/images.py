"""Image I/O: reduced-size JPEG decoding, cropping to training images, and picture grids."""

from __future__ import annotations

import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.boxes import CropPlan
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


CODEC_THREADS = 4  # see codec_threads


def codec_threads() -> ThreadPoolExecutor:
    """A thread pool for encoding or decoding many small PNGs (use it in a ``with`` block).

    zlib and PIL's codecs release the GIL, so threads run them in parallel; the Python around each image holds
    it, so more threads contend for it. Encoding 10,000 PNGs took 1.86 s on 4 threads and 2.94 s on 8 on a
    16-core GPU host, 1.05 s and 1.14 s on the 2-core machine (BENCHMARKS.md): 4 on any machine.
    """
    return ThreadPoolExecutor(max_workers=CODEC_THREADS)


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    """uint8 [H, W, 3] array or PIL image -> PNG file bytes."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def font(size: int) -> ImageFont.ImageFont:
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
    small, big = font(10), font(14)
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


def even_subsample(n: int, k: int) -> list[int]:
    """At most ``k`` indices of ``range(n)``, evenly spread, always the first and the last (``k >= 2``).

    n=10, k=4 -> [0, 3, 6, 9]; n <= k -> all of them.
    """
    if k < 2:
        raise ValueError(f"need room for the first and the last index, got k={k}")
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def gif_bytes(frames: Sequence[Image.Image], frame_ms: int = 100, last_ms: int | None = None) -> bytes:
    """An animated GIF that loops forever: each frame shown ``frame_ms`` ms, the last one ``last_ms`` (default the
    same). Frames are RGB pictures of one size (others are resized to the first's); each gets its own palette.

    Pillow merges consecutive identical frames into one (adding their durations), so a GIF may hold fewer
    frames than given when some repeat.
    """
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    size = frames[0].size
    frames = [f.convert("RGB") if f.size == size else f.convert("RGB").resize(size) for f in frames]
    durations = [frame_ms] * len(frames)
    durations[-1] = frame_ms if last_ms is None else last_ms
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return buf.getvalue()


def save_gif(path: str | os.PathLike, frames: Sequence[Image.Image], frame_ms: int = 100,
             last_ms: int | None = None) -> None:
    """Write an animated GIF atomically (see :func:`gif_bytes`)."""
    write_bytes(path, gif_bytes(frames, frame_ms, last_ms))
