"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same kind of random augmentation is applied to real and fake images just before D, in both the D and
the G step, so D never sees an un-augmented image and G gets gradients through the augmentation. Every op
here is a pure tensor function, differentiable with respect to the images, with its own random draw per
sample.

Images: float [N, C, H, W] in [-1, 1] (any float dtype, any memory format, any device). Each op returns
the same shape, dtype and device. Random numbers come from ``generator`` when one is given (drawn on the
generator's device, then moved to the images' device), so a seeded generator reproduces the output.

Policies (the paper's, for images in [-1, 1]):
  color        brightness + U(-0.5, 0.5); saturation: deviation from the per-pixel channel mean times
               U(0, 2); contrast: deviation from the per-image mean times U(0.5, 1.5)
  translation  shift by up to 1/8 of the size (an integer in [-s, s], s = round(size / 8)) in y and x,
               independently; pixels shifted in from outside are zeros
  cutout       zero a rectangle of half the height and half the width whose centre is uniform over the
               image; as in the reference implementation, it is clipped where it runs past the border, so
               on average a little less than a quarter of the image is zeroed
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Op = Callable[[Tensor, "torch.Generator | None"], Tensor]

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


# --- random draws --------------------------------------------------------------------------------------


def _draw_device(x: Tensor, generator: torch.Generator | None) -> torch.device:
    # a generator can only draw on its own device; without one, draw where the images are
    return x.device if generator is None else torch.device(generator.device)


def _uniform(x: Tensor, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    """One U(low, high) per sample: float32 [N] on x's device."""
    u = torch.rand(x.shape[0], generator=generator, device=_draw_device(x, generator))
    return (u * (high - low) + low).to(x.device)


def _randint(x: Tensor, low: int, high: int, generator: torch.Generator | None) -> Tensor:
    """One integer in [low, high) per sample: int64 [N] on x's device."""
    return torch.randint(low, high, (x.shape[0],), generator=generator, device=_draw_device(x, generator)).to(x.device)


def _per_sample(value: Tensor | float, x: Tensor) -> Tensor:
    """A scalar or a [N] vector as a tensor broadcastable against x [N, C, H, W], in x's dtype."""
    v = torch.as_tensor(value, device=x.device).to(x.dtype)
    return v.reshape(-1, 1, 1, 1) if v.ndim == 1 else v


def _per_sample_int(value: Tensor | int, x: Tensor) -> Tensor:
    """A scalar or a [N] vector of integers as int64 [N] on x's device."""
    v = torch.as_tensor(value, device=x.device).long()
    return v.expand(x.shape[0]) if v.ndim == 0 else v


# --- the deterministic ops (explicit parameters, tested by hand) -----------------------------------------


def adjust_brightness(x: Tensor, delta: Tensor | float) -> Tensor:
    """x + delta; delta a scalar or one value per sample [N]."""
    return x + _per_sample(delta, x)


def adjust_saturation(x: Tensor, factor: Tensor | float) -> Tensor:
    """Scale each pixel's deviation from its channel mean: 0 gives grey, 1 the identity."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * _per_sample(factor, x) + mean


def adjust_contrast(x: Tensor, factor: Tensor | float) -> Tensor:
    """Scale the deviation from each image's mean (over channels and pixels): 1 is the identity."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _per_sample(factor, x) + mean


def translate(x: Tensor, dy: Tensor | int, dx: Tensor | int) -> Tensor:
    """Move each image's content down by dy and right by dx pixels (negative: up / left), filling with zeros.

    out[n, c, i, j] = x[n, c, i - dy[n], j - dx[n]] where that lies inside the image, else 0.
    dy, dx: integers, scalars or int64 [N]. A gather from the zero-padded image: differentiable, exact.
    """
    n, c, h, w = x.shape
    dy, dx = _per_sample_int(dy, x), _per_sample_int(dx, x)
    # source rows/columns in the image padded by one zero pixel; anything outside lands on the padding
    rows = (torch.arange(h, device=x.device)[None, :] - dy[:, None] + 1).clamp_(0, h + 1)  # [N, H]
    cols = (torch.arange(w, device=x.device)[None, :] - dx[:, None] + 1).clamp_(0, w + 1)  # [N, W]
    padded = F.pad(x, (1, 1, 1, 1))
    index_n = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    index_c = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[index_n, index_c, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def cutout(x: Tensor, top: Tensor | int, left: Tensor | int, height: int, width: int) -> Tensor:
    """Zero rows [top, top + height) x columns [left, left + width) of each image (clipped to the image).

    top, left: integers, scalars or int64 [N]; they may be negative or run past the border.
    """
    n, _, h, w = x.shape
    top, left = _per_sample_int(top, x), _per_sample_int(left, x)
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + height)  # [N, H]
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + width)  # [N, W]
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # [N, H, W]
    return x * keep[:, None].to(x.dtype)


def flip_samples(x: Tensor, flip: Tensor) -> Tensor:
    """Flip horizontally the samples where ``flip`` (bool [N]) is true; leave the others."""
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)


# --- the random ops (what the policies use) ------------------------------------------------------------


def rand_brightness(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return adjust_brightness(x, _uniform(x, -0.5, 0.5, generator))


def rand_saturation(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return adjust_saturation(x, _uniform(x, 0.0, 2.0, generator))


def rand_contrast(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return adjust_contrast(x, _uniform(x, 0.5, 1.5, generator))


def rand_translation(x: Tensor, generator: torch.Generator | None = None, ratio: float = TRANSLATION_RATIO) -> Tensor:
    """Shift by an integer in [-s, s] in y and in x, s = int(size * ratio + 0.5) (8 for 64 px)."""
    _, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = _randint(x, -sy, sy + 1, generator)
    dx = _randint(x, -sx, sx + 1, generator)
    return translate(x, dy, dx)


def rand_cutout(x: Tensor, generator: torch.Generator | None = None, ratio: float = CUTOUT_RATIO) -> Tensor:
    """Zero a (ratio * H) x (ratio * W) rectangle (32 x 32 for 64 px) centred uniformly over the image.

    As in the reference implementation, the centre is an integer in [0, size] when the rectangle's side is
    even ([0, size - 1] when it is odd), so the rectangle can run up to half its side past a border and is
    clipped there.
    """
    _, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = _randint(x, 0, h + (1 - ch % 2), generator) - ch // 2
    left = _randint(x, 0, w + (1 - cw % 2), generator) - cw // 2
    return cutout(x, top, left, ch, cw)


def random_hflip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Flip each sample horizontally with probability 1/2 (a data augmentation for the real images)."""
    return flip_samples(x, _uniform(x, 0.0, 1.0, generator) < 0.5)


def rotate(x: Tensor, degrees: Tensor | float) -> Tensor:
    """Rotate each sample counter-clockwise by its angle (degrees) about the image centre, bilinear; pixels that
    come from outside the image are black (-1), as torchvision's RandomRotation fills them (with 0 before the
    [-1, 1] scaling). x: float [N, C, H, W] in [-1, 1]; degrees: a number or float [N]."""
    n = len(x)
    theta = torch.deg2rad(torch.as_tensor(degrees, device=x.device, dtype=torch.float32).expand(n))
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    # affine_grid maps output to input coordinates (normalised to [-1, 1], y down): rotating the picture by +a
    # samples it at the points rotated by -a. Square images only (every image here is 64x64).
    matrix = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(matrix.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def random_rotate(x: Tensor, max_degrees: float, p: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """With probability ``p`` per sample, rotate by an angle uniform in [-max_degrees, max_degrees] (a data
    augmentation for the real images; 3rd place: 5 degrees with p 0.3); the others are returned as they are."""
    angle = _uniform(x, -max_degrees, max_degrees, generator)
    chosen = _uniform(x, 0.0, 1.0, generator) < p
    return torch.where(chosen.reshape(-1, 1, 1, 1), rotate(x, angle), x)


# --- policies -------------------------------------------------------------------------------------------

AUGMENTATIONS: dict[str, list[Op]] = {
    "color": [rand_brightness, rand_saturation, rand_contrast],
    "translation": [rand_translation],
    "cutout": [rand_cutout],
}


def parse_policy(policy: str) -> list[str]:
    """``"color,translation,cutout"`` -> its parts, in order; ``""`` -> []. ValueError for an unknown part."""
    parts = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in parts if p not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"unknown DiffAugment policy part(s) {', '.join(map(repr, unknown))} in {policy!r}; "
            f"known parts: {', '.join(AUGMENTATIONS)}"
        )
    return parts


def diff_augment(x: Tensor, policy: str, generator: torch.Generator | None = None) -> Tensor:
    """Apply the policy's ops in order (e.g. ``"color,translation,cutout"``); ``""`` returns x unchanged.

    x: float [N, C, H, W] in [-1, 1]. Use the same policy for real and fake images, in both D and G steps.
    """
    for part in parse_policy(policy):
        for op in AUGMENTATIONS[part]:
            x = op(x, generator)
    return x
