"""Building blocks shared by the models: spectral-normed layers, conditional batch norm, self-attention
(BigGAN/SAGAN), equalized-learning-rate layers, pixel norm and minibatch standard deviation (ProGAN).

Shapes use N = batch, C = channels, H/W = height/width. Every layer works under ``torch.autocast`` and with
channels_last tensors; none holds global state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

# --- spectral normalisation (SAGAN, BigGAN) ------------------------------------------------------------
#
# torch.nn.utils.parametrizations.spectral_norm rather than the older hook-based torch.nn.utils.spectral_norm:
# the old one stores the normalised weight as a plain non-leaf tensor attribute after each training forward,
# so copy.deepcopy (how G_ema is made) fails with "Only Tensors created explicitly by the user support the
# deepcopy protocol". The parametrization recomputes the weight on access, deep-copies at any time, keeps
# its u/v power-iteration vectors as ordinary buffers (saved in state_dict, broadcast by DDP, copied by the
# EMA), and clones them before use, so D may run twice before one backward (DDP, the G step).

SN_EPS = 1e-6  # BigGAN's epsilon for the power iteration's normalisation


def _orthogonal(module: nn.Module) -> nn.Module:
    # BigGAN initialises every conv/linear/embedding orthogonally; biases start at zero
    nn.init.orthogonal_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def sn_conv2d(in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, bias: bool = True) -> nn.Module:
    """Spectral-normed ``nn.Conv2d`` (stride 1), orthogonal init: [N, in, H, W] -> [N, out, H', W']."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
    return spectral_norm(_orthogonal(conv), eps=SN_EPS)


def sn_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Module:
    """Spectral-normed ``nn.Linear``, orthogonal init: [N, in] -> [N, out]."""
    return spectral_norm(_orthogonal(nn.Linear(in_features, out_features, bias=bias)), eps=SN_EPS)


def sn_embedding(num_embeddings: int, dim: int) -> nn.Module:
    """Spectral-normed ``nn.Embedding`` (BigGAN's projection-discriminator embedding): int64 [N] -> [N, dim]."""
    return spectral_norm(_orthogonal(nn.Embedding(num_embeddings, dim)), eps=SN_EPS)


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose per-channel gain and bias come from a condition vector (BigGAN's ccbn).

    ``x``: [N, C, H, W]; ``cond``: [N, cond_dim] (BigGAN: [shared class embedding, z chunk]).
    Output: ``bn(x) * (1 + gain(cond)) + bias(cond)``, [N, C, H, W]; the gain and bias maps are spectral-normed
    linear layers without bias. ``cond_dim=0`` makes it a plain affine batch norm (``cond`` ignored).
    """

    def __init__(self, channels: int, cond_dim: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.cond_dim = cond_dim
        self.bn = nn.BatchNorm2d(channels, eps=eps, momentum=momentum, affine=cond_dim == 0)
        if cond_dim > 0:
            self.gain = sn_linear(cond_dim, channels, bias=False)
            self.bias = sn_linear(cond_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        out = self.bn(x)
        if self.cond_dim == 0:
            return out
        gain = (1 + self.gain(cond)).to(out.dtype)[:, :, None, None]
        bias = self.bias(cond).to(out.dtype)[:, :, None, None]
        return out * gain + bias


class SelfAttention(nn.Module):
    """SAGAN self-attention with spectral-normed 1x1 convs, as in BigGAN: [N, C, H, W] -> [N, C, H, W].

    Queries (C/8 channels) at every position attend to keys (C/8) and values (C/2) max-pooled 2x2, so H and W
    must be even; the attended values go back to C channels and are added as ``x + gamma * o``, with the
    learned scalar ``gamma`` starting at 0 so the block begins as the identity. As in SAGAN, the logits are
    not scaled by 1/sqrt(d).
    """

    def __init__(self, channels: int):
        super().__init__()
        qk, v = max(1, channels // 8), max(1, channels // 2)
        self.query = sn_conv2d(channels, qk, 1, bias=False)
        self.key = sn_conv2d(channels, qk, 1, bias=False)
        self.value = sn_conv2d(channels, v, 1, bias=False)
        self.out = sn_conv2d(v, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        # [N, c, H, W] -> [N, 1 head, positions, c]
        q = self.query(x).flatten(2).transpose(1, 2).unsqueeze(1)
        k = F.max_pool2d(self.key(x), 2).flatten(2).transpose(1, 2).unsqueeze(1)
        v = F.max_pool2d(self.value(x), 2).flatten(2).transpose(1, 2).unsqueeze(1)
        attended = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # [N, 1, H*W, C/2]
        attended = attended.squeeze(1).transpose(1, 2).reshape(n, -1, h, w)
        return x + self.gamma.to(x.dtype) * self.out(attended)


# --- equalized learning rate, pixel norm, minibatch stddev (ProGAN) ------------------------------------


class EqualizedConv2d(nn.Module):
    """Conv2d with ProGAN's equalized learning rate: [N, in, H, W] -> [N, out, H', W'] (stride 1).

    The weight is stored N(0, 1) and multiplied at run time by He's constant ``gain / sqrt(fan_in)``, so
    Adam's step moves every layer at the same relative speed. Bias starts at zero.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 gain: float = math.sqrt(2.0)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """Linear layer with equalized learning rate (see ``EqualizedConv2d``): [N, in] -> [N, out]."""

    def __init__(self, in_features: int, out_features: int, gain: float = math.sqrt(2.0), bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """ProGAN's pixel norm: each position's feature vector scaled to unit root-mean-square over dim 1.

    x: [N, C, ...] -> same shape. The mean square is taken in float32 so bf16/fp16 inputs stay accurate.
    """
    scale = torch.rsqrt(x.float().pow(2).mean(dim=1, keepdim=True) + eps)
    return x * scale.to(x.dtype)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """ProGAN's minibatch standard deviation: appends one channel, [N, C, H, W] -> [N, C + 1, H, W].

    Consecutive samples form groups (of the largest size <= ``group_size`` that divides N); the new channel is
    each group's standard deviation over its members, averaged over all features, so D can see a lack of
    variety. Consecutive (not strided) groups keep a batch of reals followed by fakes, as the training loop
    feeds D, from mixing the two whenever each half is a multiple of the group size.
    """
    n, _, h, w = x.shape
    group = max(g for g in range(1, min(group_size, n) + 1) if n % g == 0)
    y = x.float().reshape(n // group, group, -1)
    std = (y.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=1)  # [N / group]
    feature = std.repeat_interleave(group).reshape(n, 1, 1, 1).expand(n, 1, h, w)
    return torch.cat([x, feature.to(x.dtype)], dim=1)


def check_labels(y: torch.Tensor | None, n: int, n_classes: int, soft: bool = False) -> None:
    """Conditional models take int64 labels [N] (generators, ``soft=True``: also soft labels float
    [N, n_classes], see :func:`embed_labels`); unconditional ones ignore ``y``. Raises a clear error."""
    if n_classes == 0:
        return
    if y is None:
        raise ValueError(f"this model is conditional on {n_classes} classes: pass labels y (int64 [N]), not None")
    if y.is_floating_point():
        if not soft:
            raise ValueError(f"labels y must be int64 [{n}], got {y.dtype}")
        if y.shape != (n, n_classes):
            raise ValueError(f"soft labels y must have shape [{n}, {n_classes}], got {list(y.shape)}")
    elif y.shape != (n,):
        raise ValueError(f"labels y must have shape [{n}], got {list(y.shape)}")


def embed_labels(weight: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rows of a class-embedding table ``weight`` [n_classes, dim] for labels ``y``.

    y: int64 [N] -> ``weight[y]`` [N, dim]; or soft labels float [N, n_classes] (class weights, e.g. a one-hot
    row, or a blend of two breeds summing to 1) -> ``y @ weight`` [N, dim], the same weighted blend of rows.
    A one-hot row gives exactly the row an integer label gives (products with 0 and 1 are exact), so a soft
    label is a drop-in way to interpolate between breeds (the latent walks of ``pipeline.walks``).
    """
    if y.is_floating_point():
        return y.to(weight.dtype) @ weight
    return weight[y]


def upsample_nearest(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer ``factor``: [N, C, H, W] -> [N, C, factor*H, factor*W].

    The same values as ``F.interpolate(x, scale_factor=factor, mode="nearest")``. On the CPU it is
    done as a broadcast and a reshape, about 8x faster than PyTorch's kernel there (which made the
    upsampling cost more than the convolutions when generating on a CPU); on a GPU the kernel is used,
    as it keeps channels_last.
    """
    if factor == 1:
        return x
    if x.is_cuda:
        return F.interpolate(x, scale_factor=factor, mode="nearest")
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, factor, w, factor).reshape(n, c, h * factor, w * factor)

