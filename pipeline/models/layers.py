"""Building blocks shared by the models: spectral-normed layers, conditional batch norm, self-attention
(BigGAN/SAGAN), equalized-learning-rate layers, pixel norm and minibatch standard deviation (ProGAN).

Shapes use N = batch, C = channels, H/W = height/width. Every layer works under ``torch.autocast`` and with
channels_last tensors; none holds global state.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from pipeline.runtime import copy_all

# --- spectral normalisation (SAGAN, BigGAN) ------------------------------------------------------------
#
# A parametrization (torch.nn.utils.parametrize), like torch's own parametrizations.spectral_norm and with
# the same state_dict keys (``parametrizations.weight.original``, ``....weight.0._u`` / ``._v``), rather
# than the older hook-based torch.nn.utils.spectral_norm: that one stores the normalised weight as a
# non-leaf tensor attribute after each training forward, so copy.deepcopy (how G_ema is made) fails. A
# parametrization recomputes the weight on access, deep-copies at any time, and keeps its power-iteration
# vectors u, v as ordinary buffers (saved in state_dict, broadcast by DDP, copied by the EMA).
#
# Our own rather than torch's for launch overhead: on a GPU a BigGAN training step is bound by kernel
# launches, not by arithmetic (BENCHMARKS.md), and spectral norms made most of them (bench/count_ops.py).
# This one takes the singular value from the power iteration's last product (two matrix-vector products
# per evaluation, not three), and within ``cached_spectral_norms`` it is computed once for several
# forward passes with the same weights: the generator runs twice per training step (no-grad fakes for the
# D step, then the G step) with unchanged weights.

SN_EPS = 1e-6  # BigGAN's epsilon for the power iteration's normalisation
# torch.compiler.is_compiling is torch >= 2.3; an older torch (a Kaggle image) cannot be compiling through it
_is_compiling = getattr(torch.compiler, "is_compiling", None) or (lambda: False)
SN_INIT_ITERATIONS = 15  # power iterations at construction, so the first sigma is already close


class _DivideBySigma(torch.autograd.Function):
    """``weight / sigma`` with sigma = u^T Wm v for constant u, v: the gradient written out.

    d/dW of (W / sigma) applied to g: ``(g - <g, W> / sigma * u v^T) / sigma`` (the rank-one term is the
    gradient through sigma). Seven operators in place of the dozen that autograd records for the same
    expression, which matters when the step is bound by kernel launches.
    weight: [out, ...]; u: [out]; v: [prod(...)]; sigma: 0-d; returns weight's shape.
    """

    @staticmethod
    def forward(ctx, weight, u, v, sigma):
        ctx.save_for_backward(weight, u, v, sigma)
        return weight / sigma

    @staticmethod
    def backward(ctx, grad):
        weight, u, v, sigma = ctx.saved_tensors
        coefficient = (grad * weight).sum() / sigma
        rank_one = torch.outer(u * coefficient, v).reshape(weight.shape)
        return (grad - rank_one) / sigma, None, None, None


class SpectralNorm(nn.Module):
    """The parametrization ``W -> W / sigma(W)``, sigma estimated by one power iteration per evaluation.

    W: [out, ...] (conv [out, in, kh, kw], linear [out, in], embedding [num, dim]), seen as the matrix
    ``Wm = W.flatten(1)`` [h, w]. Buffers: ``_u`` [h], ``_v`` [w], unit vectors. In training mode, when W
    is being trained (requires grad), each evaluation updates them as BigGAN and the SN paper do,
    ``v <- normalize(Wm^T u)``, ``u <- normalize(Wm v)``, and sigma is ``u^T Wm v``, which for the new u
    equals ``||Wm v||``: so sigma needs no third product. Its gradient is that of ``u^T Wm v`` with u, v
    constants (``u v^T``), as in Miyato et al. 2018. Otherwise (eval mode, or a frozen W such as D's while G
    trains) u and v stay as they are and sigma is ``u^T Wm v``: one power iteration per update of W, as in
    the SN paper's algorithm, where BigGAN's code also iterates in the passes that do not update W.
    """

    def __init__(self, weight: torch.Tensor, eps: float = SN_EPS, init_iterations: int = SN_INIT_ITERATIONS):
        super().__init__()
        self.eps = eps
        self.cache_enabled = False  # set by cached_spectral_norms
        self._cached: torch.Tensor | None = None
        matrix = weight.detach().flatten(1)
        h, w = matrix.shape
        self.register_buffer("_u", F.normalize(matrix.new_empty(h).normal_(0, 1), dim=0, eps=eps))
        self.register_buffer("_v", F.normalize(matrix.new_empty(w).normal_(0, 1), dim=0, eps=eps))
        with torch.no_grad():
            for _ in range(init_iterations):
                self._power_iteration(matrix)

    def _power_iteration(self, matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One iteration on ``matrix`` [h, w]: updates ``_u``, ``_v`` in place and returns fresh copies of
        them and sigma = u^T matrix v = ||matrix v|| (0-d), all without gradient."""
        (u,), (v,), sigmas = _iterate([self], [matrix])
        return u, v, sigmas[0]

    def _normalized(self, weight: torch.Tensor) -> torch.Tensor:
        matrix = weight.detach().flatten(1)
        if self.training and weight.requires_grad:  # one iteration per update of W, as in the SN paper
            u, v, sigma = self._power_iteration(matrix)
        else:
            u, v = self._u, self._v
            sigma = torch.vdot(u, torch.mv(matrix, v))
        return _DivideBySigma.apply(weight, u, v, sigma)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """weight [out, ...] -> weight / sigma, same shape."""
        if _is_compiling() or not self.cache_enabled:  # this order: no recompile on the flag
            return self._normalized(weight)
        if self._cached is None:
            # with a graph even when called under no_grad (the D step's G pass), so the G step that reuses
            # it can backpropagate through it
            with torch.set_grad_enabled(weight.requires_grad):
                self._cached = self._normalized(weight)
        return self._cached

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        # assigning module.weight = W stores W as the raw weight (as torch's spectral norm does)
        return value

    def __getstate__(self):
        # a cached weight carries an autograd graph, which cannot be copied (copy.deepcopy makes G_ema)
        state = self.__dict__.copy()
        state["_cached"], state["cache_enabled"] = None, False
        return state


def spectral_norm(module: nn.Module, eps: float = SN_EPS) -> nn.Module:
    """``module`` with its ``weight`` spectral-normed by :class:`SpectralNorm`; returns the module."""
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight, eps))
    return module


def _spectral_norms_of(models) -> list[tuple[SpectralNorm, nn.Parameter]]:
    """(parametrization, raw weight) of every spectral-normed tensor in ``models``."""
    pairs = []
    for model in models:
        for module in model.modules():
            for plist in getattr(module, "parametrizations", {}).values():
                if isinstance(plist[0], SpectralNorm):
                    pairs.append((plist[0], plist.original))
    return pairs


def _padded_rows(vectors: list[torch.Tensor], fill) -> torch.Tensor:
    """Rows of a zero-padded [len(vectors), max length] matrix, each written by ``fill(i, out_view)``."""
    rows = vectors[0].new_zeros(len(vectors), max(len(v) for v in vectors))
    for i, v in enumerate(vectors):
        fill(i, rows[i, : len(v)])
    return rows


@torch.no_grad()
def _iterate(norms: list[SpectralNorm], matrices: list[torch.Tensor]):
    """One power iteration of each spectral norm on its ``matrices[i]`` [h_i, w_i] (same device, dtype, eps).

    Updates every ``_u``, ``_v`` in place; returns fresh (us, vs, sigmas): lists of [h_i], [w_i] and a
    tensor [n] with sigma_i = u_i^T W_i v_i = ||W_i v_i||. The vectors of all layers sit in the rows of
    a zero-padded matrix (zeros do not change a norm), so their normalisations are one operator for all
    layers instead of three per layer; the matrix-vector products stay one per layer.
    """
    eps = norms[0].eps
    # v <- normalize(W^T u)
    v_rows = _padded_rows([sn._v for sn in norms], lambda i, out: torch.mv(matrices[i].t(), norms[i]._u, out=out))
    v_rows /= torch.linalg.vector_norm(v_rows, dim=1, keepdim=True).clamp_min_(eps)
    vs = [v_rows[i, : len(sn._v)] for i, sn in enumerate(norms)]
    # W v, then sigma = ||W v|| and u = W v / sigma
    wv_rows = _padded_rows([sn._u for sn in norms], lambda i, out: torch.mv(matrices[i], vs[i], out=out))
    sigmas = torch.linalg.vector_norm(wv_rows, dim=1).clamp_min_(eps)
    u_rows = wv_rows / sigmas[:, None]
    us = [u_rows[i, : len(sn._u)] for i, sn in enumerate(norms)]
    copy_all([sn._u for sn in norms] + [sn._v for sn in norms], us + vs)
    return us, vs, sigmas


def _power_iteration_all(pairs: list[tuple[SpectralNorm, torch.Tensor]]) -> list[torch.Tensor]:
    """One power iteration for many spectral norms at once (same device, dtype and eps); returns each
    one's normalised weight, with the gradient of :class:`_DivideBySigma` where the weight requires it.

    3 operators per layer plus about ten (see :func:`_iterate`), against 11 per layer one at a time.
    """
    us, vs, sigmas = _iterate([sn for sn, _ in pairs], [w.detach().flatten(1) for _, w in pairs])
    out = []
    for (_, w), u, v, sigma in zip(pairs, us, vs, sigmas):
        with torch.set_grad_enabled(w.requires_grad):
            out.append(_DivideBySigma.apply(w, u, v, sigma))
    return out


@contextmanager
def cached_spectral_norms(*models: nn.Module, enabled: bool = True):
    """Within the block, each spectral norm of ``models`` is evaluated once and reused.

    For passes that share weights: the block must end before the weights change (the optimizer step),
    and at most one backward may go through the cached weights. The norms that iterate (training mode,
    weight requiring grad) are all iterated on entry, together (:func:`_power_iteration_all`); the others
    are evaluated on first use. The training step wraps the generator's two passes (D step, G step) in
    it, and D's pass of the D step: one power iteration per step and network, as in the SN paper, in a
    few operators. ``enabled=False`` (under torch.compile, which fuses the spectral norms itself) makes
    it a no-op.
    """
    pairs = _spectral_norms_of(models) if enabled else []
    for sn, _ in pairs:
        sn.cache_enabled, sn._cached = True, None
    try:
        iterate = [(sn, w) for sn, w in pairs if sn.training and w.requires_grad]
        groups: dict[tuple, list] = {}
        for sn, w in iterate:  # one batch per device, dtype and eps (one in practice)
            groups.setdefault((w.device, w.dtype, sn.eps), []).append((sn, w))
        for group in groups.values():
            for (sn, _), weight in zip(group, _power_iteration_all(group)):
                sn._cached = weight
        yield
    finally:
        for sn, _ in pairs:
            sn.cache_enabled, sn._cached = False, None


def _orthogonal(module: nn.Module) -> nn.Module:
    # BigGAN initialises every conv/linear/embedding orthogonally; biases start at zero
    nn.init.orthogonal_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def sn_conv2d(in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, bias: bool = True) -> nn.Module:
    """Spectral-normed ``nn.Conv2d`` (stride 1), orthogonal init: [N, in, H, W] -> [N, out, H', W']."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
    return spectral_norm(_orthogonal(conv))


def sn_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Module:
    """Spectral-normed ``nn.Linear``, orthogonal init: [N, in] -> [N, out]."""
    return spectral_norm(_orthogonal(nn.Linear(in_features, out_features, bias=bias)))


def sn_embedding(num_embeddings: int, dim: int) -> nn.Module:
    """Spectral-normed ``nn.Embedding`` (BigGAN's projection-discriminator embedding): int64 [N] -> [N, dim]."""
    return spectral_norm(_orthogonal(nn.Embedding(num_embeddings, dim)))


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

    ``lr_mul`` (as StyleGAN's): the weight is stored N(0, 1 / lr_mul) and the weight and bias are multiplied by
    ``lr_mul`` at run time: the same layer at initialisation, but Adam's steps, which are about ``lr`` in the stored
    units, move it ``lr_mul`` times faster relative to its scale.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 gain: float = math.sqrt(2.0), lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size) * lr_mul
        self.lr_mul = lr_mul
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.lr_mul != 1.0 else self.bias
        return F.conv2d(x, self.weight * self.scale, bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """Linear layer with equalized learning rate (see ``EqualizedConv2d``, ``lr_mul`` too): [N, in] -> [N, out]."""

    def __init__(self, in_features: int, out_features: int, gain: float = math.sqrt(2.0), bias: bool = True,
                 lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None and self.lr_mul != 1.0 else self.bias
        return F.linear(x, self.weight * self.scale, bias)


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
    done as a broadcast and a reshape, much faster than PyTorch's kernel there (BENCHMARKS.md; the kernel made the
    upsampling cost more than the convolutions when generating on a CPU); on a GPU the kernel is used,
    as it keeps channels_last.
    """
    if factor == 1:
        return x
    if x.is_cuda:
        return F.interpolate(x, scale_factor=factor, mode="nearest")
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, factor, w, factor).reshape(n, c, h * factor, w * factor)

