"""How close a generator's samples are to its training images, in pixels: the thumbnail Frechet distance.

Used to check that a model learns (``tests/test_learning.py``, ``bench/learn_bench.py``), not to score a
submission. Both image sets are shrunk to ``side`` x ``side`` thumbnails by averaging (8x8 by default: the
layout of colours, a dog's body and head, survives; texture and noise do not), and the Frechet distance between
Gaussians fitted to the flattened thumbnails (values in [0, 1], 8 x 8 x 3 = 192 dimensions) is taken as FID
takes it. Why pixels and not a network's features: the failure this must catch is a generator that draws grey
or coloured noise, and the offline stand-in network is blind to flat colour by design (its filters sum to zero),
while Inception's weights are not available offline. A generator that learned nothing scores about as far from
its data as its random start; one that draws the data's colours in the data's places comes close to 0.
"""

from __future__ import annotations

import numpy as np

from pipeline.metrics.mifid import feature_statistics, frechet_distance

THUMBNAIL_SIDE = 8


def thumbnails(images: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """uint8 [N, H, W, 3] (H, W multiples of ``side``) -> float64 [N, side * side * 3] in [0, 1]: the mean of
    each (H / side) x (W / side) block of each channel, flattened row by row, channels last."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    n, h, w, _ = images.shape
    if side < 1 or h % side or w % side:
        raise ValueError(f"thumbnail side {side} must divide the image size {h}x{w}")
    blocks = images.reshape(n, side, h // side, side, w // side, 3).astype(np.float64)
    return (blocks.mean(axis=(2, 4)) / 255.0).reshape(n, side * side * 3)


def thumbnail_fid(generated: np.ndarray, reference: np.ndarray, side: int = THUMBNAIL_SIDE) -> float:
    """Frechet distance between the thumbnails of ``generated`` and ``reference`` (uint8 [N, H, W, 3] each,
    at least 2 images). 0 for identical sets; on the [0, 1] scale of the thumbnails' values."""
    mu1, sigma1 = feature_statistics(thumbnails(generated, side))
    mu2, sigma2 = feature_statistics(thumbnails(reference, side))
    return float(frechet_distance(mu1, sigma1, mu2, sigma2))
