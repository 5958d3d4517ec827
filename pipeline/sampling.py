"""How a trained generator is sampled: latents with the truncation trick, and breed labels drawn by weight.

Shared by the stages that draw from a generator (generate, report, the Kaggle kernel, train's in-training
MiFID), so that the same seed draws the same latents and labels in each. Everything is drawn on the CPU from
an explicit ``torch.Generator``: the draws do not depend on the device.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.config import ConfigError


def truncated_normal(shape: tuple[int, ...], threshold: float, generator: torch.Generator) -> torch.Tensor:
    """N(0, 1) samples redrawn until every value lies in (-threshold, threshold) (BigGAN's truncation trick).

    threshold <= 0 means no truncation.
    """
    z = torch.randn(shape, generator=generator)
    if threshold <= 0:
        return z
    # Only the values just redrawn can still be outside, so each pass looks at those alone (in index order:
    # the same draws land in the same places as redrawing z[z.abs() >= threshold] over the whole tensor).
    flat = z.view(-1)
    todo = (flat.abs() >= threshold).nonzero().squeeze(1)
    while todo.numel():
        draws = torch.randn(todo.numel(), generator=generator)
        flat[todo] = draws
        todo = todo[draws.abs() >= threshold]
    return z


def sample_labels(n: int, weights, generator: torch.Generator) -> torch.Tensor:
    """int64 [n] labels drawn with replacement from the distribution ``weights`` (one weight per breed, any
    scale: counts or probabilities)."""
    probs = torch.as_tensor(weights, dtype=torch.float64)
    return torch.multinomial(probs / probs.sum(), n, replacement=True, generator=generator)


def label_weights(ck: dict, sampling: str, breed: str | None) -> np.ndarray | None:
    """Per-breed sampling weights for a conditional checkpoint; None for an unconditional one.

    sampling: "proportional" (as often as training saw each breed) or "uniform"; ``breed`` (a name, any case,
    spaces or underscores) overrides both: only that breed.
    """
    n = ck["n_classes"]
    if n == 0:
        if breed:
            raise ConfigError(f"--breed {breed!r}: this checkpoint's model is unconditional; it cannot pick a breed.")
        return None
    breeds = ck["breeds"]
    if breed:
        names = {b.lower(): i for i, b in enumerate(breeds)}
        key = breed.lower().replace(" ", "_")
        if key not in names:
            raise ConfigError(f"--breed {breed!r} is not one of the checkpoint's {n} breeds: {', '.join(breeds[:12])}...")
        w = np.zeros(n)
        w[names[key]] = 1.0
        return w
    if sampling == "uniform":
        return np.ones(n)
    counts = ck["extra"].get("label_counts")
    if counts is None or len(counts) != n:
        return np.ones(n)  # a checkpoint without the training label counts: uniform is all we know
    return np.asarray(counts, dtype=np.float64)
