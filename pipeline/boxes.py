"""Box geometry: clipping, filtering and square-making. Pure functions on numbers, no images.

Rectangles here are half-open and in float pixel units: a box with inclusive indices
``xmin..xmax`` covers ``[xmin, xmax + 1)``, so its width is ``xmax - xmin + 1``.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from pipeline.annotations import Box
from pipeline.config import SquareMethod

SQUARE_METHODS: tuple[str, ...] = typing.get_args(SquareMethod)


@dataclass(frozen=True)
class Rect:
    """Half-open rectangle ``[x0, x1) x [y0, y1)`` in pixels."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def contains(self, other: "Rect") -> bool:
        return self.x0 <= other.x0 and self.y0 <= other.y0 and other.x1 <= self.x1 and other.y1 <= self.y1

    def scaled(self, sx: float, sy: float) -> "Rect":
        return Rect(self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy)


def box_to_rect(box: Box) -> Rect:
    """Inclusive pixel indices -> half-open rectangle."""
    return Rect(box.xmin, box.ymin, box.xmax + 1, box.ymax + 1)


def clip_rect(rect: Rect, width: int, height: int) -> Rect | None:
    """The part of ``rect`` inside a ``width`` x ``height`` image, or None when nothing is left."""
    x0, y0 = max(rect.x0, 0.0), max(rect.y0, 0.0)
    x1, y1 = min(rect.x1, float(width)), min(rect.y1, float(height))
    if x1 <= x0 or y1 <= y0:
        return None
    return Rect(x0, y0, x1, y1)


def aspect_ratio(rect: Rect) -> float:
    """Width over height."""
    return rect.width / rect.height


@dataclass(frozen=True)
class BoxLimits:
    """Which boxes are kept. Aspect is width / height of the clipped box; sides are in pixels."""

    min_aspect: float = 0.25
    max_aspect: float = 5.0
    min_side: int = 0


def judge_box(box: Box, width: int, height: int, limits: BoxLimits) -> tuple[Rect | None, str | None]:
    """Clip ``box`` to the image and apply ``limits``.

    Returns ``(rect, None)`` for a kept box, else ``(None, reason)`` with reason one of
    ``zero_area_box``, ``box_outside_image``, ``aspect_out_of_range``, ``box_too_small``.
    """
    if box.xmax < box.xmin or box.ymax < box.ymin:
        return None, "zero_area_box"
    rect = clip_rect(box_to_rect(box), width, height)
    if rect is None:
        return None, "box_outside_image"
    if not limits.min_aspect <= aspect_ratio(rect) <= limits.max_aspect:
        return None, "aspect_out_of_range"
    if min(rect.width, rect.height) < limits.min_side:
        return None, "box_too_small"
    return rect, None


def add_margin(rect: Rect, margin: float) -> Rect:
    """Grow each side by ``margin`` times the box's extent along that axis (0.1: 10% on each side)."""
    dx, dy = rect.width * margin, rect.height * margin
    return Rect(rect.x0 - dx, rect.y0 - dy, rect.x1 + dx, rect.y1 + dy)


def _fit_interval(lo: float, size: float, limit: float) -> float:
    """Shift an interval ``[lo, lo + size)`` into ``[0, limit)`` when it fits; centre it when not."""
    if size >= limit:
        return (limit - size) / 2.0
    return min(max(lo, 0.0), limit - size)


@dataclass(frozen=True)
class CropPlan:
    """What to cut out of a photo for one training image.

    canvas: the region mapped onto the output image (square unless the method is ``stretch``).
    valid:  the region whose pixels may be used; canvas pixels outside it are filled by repeating
            the nearest valid pixel (edge padding).
    """

    canvas: Rect
    valid: Rect

    @property
    def needs_padding(self) -> bool:
        return not self.valid.contains(self.canvas)


def plan_crop(rect: Rect, width: int, height: int, method: SquareMethod, margin: float = 0.0) -> CropPlan:
    """Turn a kept (clipped) box into a :class:`CropPlan`.

    - ``stretch``: the box (plus margin, clipped to the image) is resized to a square, distorting it.
    - ``expand``: the box grows along its short side to a square, shifted to stay inside the photo;
      only when the photo itself is narrower than the square is there padding.
    - ``pad``: the box keeps its pixels only, centred on a square and edge-padded to fill it.
    """
    image = Rect(0.0, 0.0, float(width), float(height))
    grown = add_margin(rect, margin)
    if method == "stretch":
        clipped = clip_rect(grown, width, height)
        assert clipped is not None  # a kept box overlaps the image, and so does anything grown from it
        return CropPlan(canvas=clipped, valid=image)
    side = max(grown.width, grown.height)
    cx, cy = (grown.x0 + grown.x1) / 2.0, (grown.y0 + grown.y1) / 2.0
    if method == "expand":
        x0 = _fit_interval(cx - side / 2.0, side, float(width))
        y0 = _fit_interval(cy - side / 2.0, side, float(height))
        return CropPlan(canvas=Rect(x0, y0, x0 + side, y0 + side), valid=image)
    if method == "pad":
        canvas = Rect(cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0)
        valid = clip_rect(grown, width, height)
        assert valid is not None
        return CropPlan(canvas=canvas, valid=valid)
    raise ValueError(f"unknown square method {method!r}; choose one of {', '.join(SQUARE_METHODS)}")


def reduction_factor(plans: list[CropPlan], out_size: int) -> float:
    """How much a photo may be shrunk at decode time with every crop still at least ``out_size`` px.

    >= 1.0; the JPEG decoder rounds it down to 1, 2, 4 or 8.
    """
    smallest = min(min(p.canvas.width, p.canvas.height) for p in plans)
    return max(1.0, smallest / out_size)
