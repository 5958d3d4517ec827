"""Latent walks: what a generator draws along a smooth path through its inputs.

A quick look for the two failures MiFID punishes. Mode collapse: images that barely change along a
walk, or jump between a few fixed pictures. Memorization: a walk that snaps from one training photo to
the next instead of morphing. Used by ``python -m pipeline.generate ... --walk walk.gif``.

A walk goes through ``K`` key points and shows ``frames_per_key`` frames from each key to the next, so
it has ``(K - 1) * frames_per_key + 1`` frames; frame 0 is exactly key 0 and the last frame exactly key
``K - 1``. Latents are interpolated with slerp (along the great circle, norms blended linearly):
Gaussian latents live near a sphere of radius sqrt(z_dim), and the straight line between two of them
passes through shorter, atypical latents (blurred, washed-out midpoints). Breeds are interpolated
linearly as soft labels (class weights, ``(1 - t) one_hot(a) + t one_hot(b)``), which the generators
turn into the same blend of their class embeddings (``pipeline.models.layers.embed_labels``).

For a conditional model the walk shows two rows: on top, latent walks (one breed per column, the
latent moves); below, breed walks (one latent per column, the breed moves through ``K`` breeds).
An unconditional model gets two rows of latent walks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.models import to_pixels

SLERP_PARALLEL = 1e-6  # below this sin(angle), a and b are (anti)parallel: slerp is ill-posed, use lerp


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """(1 - t) a + t b, elementwise; t in [0, 1]; exactly ``a`` at 0 and ``b`` at 1."""
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between the rows of a and b: [N, D], [N, D], t in [0, 1] -> [N, D].

    The direction turns along the great circle from a's to b's at a constant rate; the norm goes linearly
    from |a| to |b|. Exactly ``a`` at t = 0 and ``b`` at t = 1; rows that are (anti)parallel fall back to lerp.
    """
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    cos = (ua * ub).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < SLERP_PARALLEL
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / safe
    norm = (1 - t) * na + t * nb
    return torch.where(parallel, lerp(a, b, t), direction * norm)


def walk_path(keys: torch.Tensor, frames_per_key: int, interpolate=slerp) -> torch.Tensor:
    """Points along a walk through ``keys`` [K, N, D] (K >= 2 key points of N walks at once):
    [(K - 1) * frames_per_key + 1, N, D]. Frame ``k * frames_per_key`` is exactly key k."""
    if keys.ndim != 3 or len(keys) < 2:
        raise ValueError(f"keys must be [K >= 2, N, D], got {list(keys.shape)}")
    if frames_per_key < 1:
        raise ValueError(f"frames_per_key must be at least 1, got {frames_per_key}")
    points = []
    for k in range(len(keys) - 1):
        for f in range(frames_per_key):
            points.append(interpolate(keys[k], keys[k + 1], f / frames_per_key))
    points.append(keys[-1].clone())
    return torch.stack(points)


@dataclass
class WalkPlan:
    """The key points of a set of walks, drawn on the CPU.

    z_keys: float [K, N, z_dim]; y_keys: float [K, N, n_classes] one-hot soft labels, or None
    (unconditional); captions: [N] one per walk (column of the picture); rows: how many rows the N walks fill.
    """

    z_keys: torch.Tensor
    y_keys: torch.Tensor | None
    captions: list[str]
    rows: int


def plan_walks(z_keys: torch.Tensor, breeds_top: torch.Tensor | None, breeds_walk: torch.Tensor | None,
               n_classes: int, breed_names: list[str]) -> WalkPlan:
    """Lay out the walks of one picture from drawn latents and breeds.

    z_keys: float [K, 2C, z_dim] latents (C = columns). Conditional models: ``breeds_top`` int64 [C], the breed of
    each top-row latent walk; ``breeds_walk`` int64 [K, C], the breeds each bottom-row walk goes through (its
    latent is key 0's). Unconditional: both None, and all 2C walks are latent walks.
    """
    k, n, _ = z_keys.shape
    if n % 2:
        raise ValueError(f"expected an even number of walks (two rows), got {n}")
    columns = n // 2
    if n_classes == 0:
        return WalkPlan(z_keys, None, [""] * n, 2)
    if breeds_top is None or breeds_walk is None or breeds_top.shape != (columns,) or breeds_walk.shape != (k, columns):
        raise ValueError(f"a conditional walk needs breeds_top [{columns}] and breeds_walk [{k}, {columns}]")
    z = z_keys.clone()
    z[:, columns:] = z_keys[:1, columns:]  # bottom row: one latent per column, only the breed moves
    labels = torch.cat([breeds_top.expand(k, columns), breeds_walk], dim=1)  # [K, N]
    y_keys = torch.nn.functional.one_hot(labels, n_classes).float()
    short = [name.replace("_", " ") for name in breed_names]
    captions = [short[int(b)] for b in breeds_top] + [">".join(short[int(b)][:3] for b in breeds_walk[:, c])
                                                       for c in range(columns)]
    return WalkPlan(z, y_keys, captions, 2)


@torch.no_grad()
def render_walk(G: nn.Module, plan: WalkPlan, frames_per_key: int, device: torch.device | str = "cpu",
                batch_size: int = 100) -> np.ndarray:
    """The images along the walks: uint8 [T, N, 64, 64, 3], T = (K - 1) * frames_per_key + 1.

    Latents go along slerp paths, soft labels along lerp paths; G runs in eval mode, so every image depends
    only on its own inputs (not on the batch it is in).
    """
    z_path = walk_path(plan.z_keys, frames_per_key, slerp)
    y_path = walk_path(plan.y_keys, frames_per_key, lerp) if plan.y_keys is not None else None
    t, n, _ = z_path.shape
    z_flat = z_path.reshape(t * n, -1)
    y_flat = y_path.reshape(t * n, -1) if y_path is not None else None
    G.eval()
    out = []
    for start in range(0, t * n, batch_size):
        z = z_flat[start:start + batch_size].to(device)
        y = y_flat[start:start + batch_size].to(device) if y_flat is not None else None
        out.append(to_pixels(G(z, y)))
    return np.concatenate(out).reshape(t, n, *out[0].shape[1:])
