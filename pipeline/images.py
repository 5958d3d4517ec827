"""Picture output shared by the stages: PNG and GIF bytes, grids of images, the PNG codec threads.

Photo decoding and cropping (prepare's) live in :mod:`pipeline.photos`."""

from __future__ import annotations

import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.files import write_bytes

CODEC_THREADS = 4  # see codec_threads


def codec_threads() -> ThreadPoolExecutor:
    """A thread pool for encoding or decoding many small PNGs (use it in a ``with`` block).

    zlib and PIL's codecs release the GIL, so threads run them in parallel; the Python around each image holds
    it, so more threads contend for it: 4 threads were the fastest on the 2-core machine and on a 16-core GPU
    host alike (BENCHMARKS.md), so 4 on any machine.
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
