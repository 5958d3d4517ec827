"""Model registry: a name in params.yaml (``train.model``) maps to a builder of (G, D).

Every model follows one interface, so the training loop never asks which model it drives:

- ``G(z, y)``: z float [N, G.z_dim], y int64 [N] breed labels (or soft labels float [N, n_classes]: class
  weights, e.g. a blend of two breeds, see ``layers.embed_labels``) or None -> images float [N, 3, 64, 64]
  in [-1, 1]. ``G.z_dim`` and ``G.n_classes`` (0 = unconditional) are attributes.
- ``D(x, y)``: x float [N, 3, 64, 64] in [-1, 1], y int64 [N] or None -> ``(logits [N], class_logits
  [N, n_classes] or None)``; ``class_logits`` only when built with an auxiliary classifier.
- Optional ``set_progress(fraction)`` on G and D: the fraction of training done, in [0, 1]. Progressive
  models grow with it; the state it sets lives in buffers, so checkpoints carry it. Such a model says through
  how many stages it grows (``growth_stages``): a time-budgeted run gives each of them one step at least.

Each model registers a frozen dataclass of its options (plain int/float/bool/str/Literal fields with
defaults): ``params.yaml`` gives them under ``train.<model name>``, validated like every other section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """G's output as pictures: float [N, 3, H, W] in [-1, 1] (clamped; any float dtype, any device) -> uint8
    [N, H, W, 3] on the host, each value (x + 1) * 127.5 rounded to the nearest level."""
    scaled = (images.float().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@dataclass(frozen=True)
class ModelEntry:
    name: str
    options: type  # frozen dataclass of the model's options, with defaults
    build: Callable[..., tuple[nn.Module, nn.Module]]  # build(options, n_classes, aux_classifier) -> (G, D)
    summary: str


REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, options: type, summary: str):
    """Decorator: ``@register_model("dcgan", DCGANOptions, "...")`` on ``build(options, n_classes, aux_classifier)``."""

    def wrap(build):
        if name in REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        REGISTRY[name] = ModelEntry(name, options, build, summary)
        return build

    return wrap


def model_entry(name: str) -> ModelEntry:
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def build_model(name: str, options=None, n_classes: int = 0, aux_classifier: bool = False) -> tuple[nn.Module, nn.Module]:
    """Build (G, D) for model ``name`` with ``options`` (its options dataclass; None = defaults).

    n_classes: number of breeds to condition on; 0 builds an unconditional model.
    aux_classifier: give D a head predicting the breed (for the auxiliary class loss).
    """
    entry = model_entry(name)
    options = options if options is not None else entry.options()
    if not isinstance(options, entry.options):
        raise TypeError(f"options for {name!r} must be {entry.options.__name__}, got {type(options).__name__}")
    if n_classes < 0:
        raise ValueError(f"n_classes must be >= 0, got {n_classes}")
    return entry.build(options, n_classes, aux_classifier)


# Importing the model modules registers them.
from pipeline.models import biggan, dcgan, progan  # noqa: E402,F401
