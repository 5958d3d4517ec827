"""Exponential moving average of the generator's weights (G_ema), the copy used for sampling.

After each G step: ``p_ema <- decay * p_ema + (1 - decay) * p`` for every parameter, while buffers (batch-norm
running statistics, spectral-norm u/v vectors, a progressive model's stage counters) are copied as they are:
they are state, not weights, and an average of them would not match the averaged weights any better.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pipeline.runtime import copy_all, unwrap


def make_ema(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` (unwrapped) in eval mode, with no gradients: the starting G_ema."""
    ema = copy.deepcopy(unwrap(model))
    ema.eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """In place: ``p_ema <- decay * p_ema + (1 - decay) * p`` for each parameter; buffers copied.

    decay in [0, 1]: 0 copies the model, 1 freezes the average. Either argument may be wrapped in
    DistributedDataParallel or torch.compile. Parameters and buffers are matched by name, so a model that
    does not have the same structure as its copy is an error rather than a silent mix-up.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
    ema_model, model = unwrap(ema_model), unwrap(model)
    ema_params = dict(ema_model.named_parameters())
    params = dict(model.named_parameters())
    if ema_params.keys() != params.keys():
        raise ValueError(f"EMA model and model differ in their parameters: {sorted(ema_params.keys() ^ params.keys())}")
    ema_list = [ema_params[k] for k in params]
    new_list = [params[k].detach().to(dtype=ema_params[k].dtype, device=ema_params[k].device) for k in params]
    # lerp: p_ema + (1 - decay) * (p - p_ema) == decay * p_ema + (1 - decay) * p
    if ema_list and hasattr(torch, "_foreach_lerp_") and len({a.device for a in ema_list}) == 1:
        torch._foreach_lerp_(ema_list, new_list, 1.0 - decay)  # one fused pass over all tensors on a GPU
    else:
        for p_ema, p in zip(ema_list, new_list):
            p_ema.lerp_(p, 1.0 - decay)

    ema_buffers = dict(ema_model.named_buffers())
    buffers = dict(model.named_buffers())
    if ema_buffers.keys() != buffers.keys():
        raise ValueError(f"EMA model and model differ in their buffers: {sorted(ema_buffers.keys() ^ buffers.keys())}")
    copy_all([ema_buffers[k] for k in buffers], list(buffers.values()))


def ema_decay_at(step: int, decay: float, start: int = 0) -> float:
    """The decay to use at ``step`` (0-based). ``start`` 0: ramped as (1 + step) / (10 + step) up to ``decay``.
    ``start`` N > 0: 0 (G_ema becomes a copy of G) before step N, ``decay`` from then on, as BigGAN-PyTorch's
    ``ema_start`` does.

    Early on G changes so fast that a fixed 0.999 would only blend its random start into the copy (the
    start still weighs 0.999^200 = 82% after 200 steps, so a short run would sample noise). The ramp lets
    the average follow G at first and settle into the long average later (step 0: 0.1, step 90: 0.91,
    step 9,990: 0.999).
    """
    if start > 0:
        return 0.0 if step < start else decay
    return min(decay, (1.0 + step) / (10.0 + step))
