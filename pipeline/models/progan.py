"""Conditional progressive GAN at 64x64 (Karras et al. 2018, "Progressive Growing of GANs").

Training starts at 4x4 and grows through 8, 16, 32 to 64x64 over the first half of training (``grow``), then
trains at 64x64, in the paper's proportions (``schedule``); each new resolution is faded in (``alpha``
0 -> 1 blends the 2x-upsampled to-RGB output of the previous resolution with the new block's to-RGB output
in G, and mirrors that in D: the new block on the full input against the previous from-RGB on a 2x
average-pooled input). All layers use the equalized learning rate; G uses pixel norm after every conv, D has
a minibatch standard deviation channel before its last block. Activations are LeakyReLU(0.2).

The equalized learning rate keeps weights N(0, 1) and scales them at run time, so Adam's steps, about ``lr``
each, are ``lr`` relative to a weight's scale, where the other models' weights are of order 1/sqrt(fan_in)
(0.03 to 0.1) and the same ``lr`` moves them 10 to 30 times as far. At the shared ``train.lr_g/lr_d`` of 3e-4
ProGAN hardly moved where the other models drew the data's layout (BENCHMARKS.md, "Does each model learn?",
and "Tried and dropped"). ``lr_mul`` (10 by default, as StyleGAN's per-layer
multiplier) speeds every layer and embedding up by that factor: 3e-4 x 10 is the paper's 1e-3 x 3, what
StyleGAN2-ADA uses (2.5e-3) for small data sets.

G: [pixel-normed z, pixel-normed class embedding] -> dense to 4x4 -> conv3x3 -> (upsample, conv3x3,
conv3x3) per resolution -> 1x1 to-RGB -> tanh. D: 1x1 from-RGB -> (conv3x3, conv3x3, 2x avg-pool) per
resolution -> minibatch stddev, conv3x3, conv4x4 (valid) -> linear logit + projection <embed(y), h>.
Channels: ``width`` at 4-16, width/2 at 32, width/4 at 64, which keeps the big resolutions cheap.

The training loop never knows the model grows: G always returns 64x64 (its current resolution upsampled,
nearest) and D always takes 64x64 (average-pooled down to its current resolution). ``set_progress(fraction)``
sets the stage and alpha (see ``schedule``), held in buffers so checkpoints and the EMA copy carry them.

Under ``torch.compile`` (train.compile) the forward passes read neither buffer as a Python number: the stage is
mirrored in a plain int attribute, on which torch.compile specialises (one compile per stage, 5 in all), and
alpha enters the graph as a tensor. Once a stage is past its first resolution the blend with the previous
resolution is always computed, at alpha 1 too, where ``torch.lerp`` returns the new path exactly: a branch on
alpha would double the compiled variants. The cost: a 1x1 convolution at the previous resolution, in G and D.
(Reading the buffers with ``int()``/``float()`` broke the graph every step and recompiled for every new alpha,
until torch.compile's limit of 8 recompilations per function made the rest of training eager, in stage 3.)
Training still needs 10 to 15 variants of each forward (5 stages times 2 or 3 grad settings), so the train stage
raises that limit (``train.compile_room``).

With DistributedDataParallel the layers of the resolutions not yet reached get no gradient, so DDP must be
built with ``find_unused_parameters=True`` for this model (``has_unused_parameters`` says so). Zero gradients
would not do instead: Adam would count those steps and give a newly faded-in layer steps ~30x too large.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models import register_model
from pipeline.models.layers import (EqualizedConv2d, EqualizedLinear, check_labels, embed_labels, minibatch_stddev,
                                     pixel_norm, upsample_nearest)

RESOLUTIONS = (4, 8, 16, 32, 64)
OUT_SIZE = RESOLUTIONS[-1]


@dataclass(frozen=True)
class ProGANOptions:
    z_dim: int = field(default=128, metadata={"min": 1, "max": 4096})
    width: int = field(default=128, metadata={"min": 4, "max": 1024})  # channels at 4-16; /2 at 32, /4 at 64
    mbstd_group: int = field(default=4, metadata={"min": 1, "max": 64})  # minibatch-stddev group size
    # Adam's steps on the equalized layers, relative to their scale: x lr_mul (see the module docstring)
    lr_mul: float = field(default=10.0, metadata={"min": 0.01, "max": 100.0})
    # the fraction of training that grows the model 4x4 -> 64x64; the rest trains at 64x64 (see ``schedule``)
    grow: float = field(default=0.5, metadata={"min": 0.05, "max": 1.0})


def schedule(fraction: float, n_stages: int, grow: float = 0.5) -> tuple[int, float]:
    """The stage (index into the resolutions) and fade-in ``alpha`` at ``fraction`` of training, in [0, 1].

    As in the paper, where each resolution gets 600k images of fade-in and 600k stable and the last one keeps
    training after that (at 64x64 that is 5.4M of 12M images): the first ``grow`` of training grows the model,
    in ``2 n_stages - 2`` equal units (the first stage stable for one unit; every later one fading in for one
    unit, then stable for one; the last one's stable unit starts the rest of training at full resolution), and
    the rest trains at full resolution. Fractions past 1 stay at the last stage, alpha 1.
    """
    if n_stages == 1:
        return 0, 1.0
    units = min(max(fraction, 0.0), 1.0) / grow * (2 * n_stages - 2)  # units of the growth done
    if units < 1.0:
        return 0, 1.0
    stage = min(int((units - 1.0) // 2) + 1, n_stages - 1)
    return stage, min(1.0, units - 1.0 - 2 * (stage - 1))


def _channels(resolution: int, width: int) -> int:
    return {32: width // 2, 64: width // 4}.get(resolution, width)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class _Progressive(nn.Module):
    """Stage and alpha in buffers (so state_dict, the EMA copy and DDP's buffer broadcast carry them); the
    stage also as the int ``current_stage``, which forward branches on (see the module docstring)."""

    has_unused_parameters = True  # for DDP: see the module docstring
    compiled_stages = len(RESOLUTIONS)  # torch.compile specialises forward on each (see train.compile_room)
    growth_stages = len(RESOLUTIONS)  # a time-budgeted run must give each at least one step (train.growth_stages)

    def __init__(self, grow: float):
        super().__init__()
        self.grow = grow
        self.register_buffer("stage", torch.tensor(0, dtype=torch.long))
        self.register_buffer("alpha", torch.tensor(1.0))
        self.current_stage = 0
        self.register_load_state_dict_post_hook(_stage_from_buffer)  # a loaded checkpoint sets the int too

    def set_progress(self, fraction: float) -> None:
        stage, alpha = schedule(fraction, len(RESOLUTIONS), self.grow)
        self.stage.fill_(stage)
        self.alpha.fill_(alpha)
        self.current_stage = stage

    def blend(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """The fade-in ``old + alpha (new - old)``: exactly ``old`` at alpha 0 and exactly ``new`` at alpha 1."""
        return torch.lerp(old, new, self.alpha.to(new.dtype))


def _stage_from_buffer(module: _Progressive, incompatible_keys) -> None:
    module.current_stage = int(module.stage)


class GBlock(nn.Module):
    """Upsample 2x, then two conv3x3 + LeakyReLU + pixel norm: [N, a, R, R] -> [N, b, 2R, 2R]."""

    def __init__(self, in_ch: int, out_ch: int, lr_mul: float):
        super().__init__()
        self.conv1 = EqualizedConv2d(in_ch, out_ch, 3, padding=1, lr_mul=lr_mul)
        self.conv2 = EqualizedConv2d(out_ch, out_ch, 3, padding=1, lr_mul=lr_mul)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = upsample_nearest(x)
        x = pixel_norm(_lrelu(self.conv1(x)))
        return pixel_norm(_lrelu(self.conv2(x)))


class Generator(_Progressive):
    def __init__(self, z_dim: int, width: int, n_classes: int, lr_mul: float = 1.0, grow: float = 0.5):
        super().__init__(grow)
        self.z_dim, self.n_classes = z_dim, n_classes
        self.width = width
        # the class embedding is pixel-normed like z, so neither dominates the latent (and its scale does not
        # matter: stored at 1 / lr_mul, Adam moves it lr_mul times faster relative to it, as the layers)
        self.embed = nn.Parameter(torch.randn(n_classes, z_dim) / lr_mul) if n_classes else None
        latent = z_dim * (2 if n_classes else 1)
        # ProGAN's 4x4 "conv" from z
        self.dense = EqualizedLinear(latent, width * 16, gain=math.sqrt(2.0) / 4, lr_mul=lr_mul)
        self.conv4 = EqualizedConv2d(width, width, 3, padding=1, lr_mul=lr_mul)
        chans = [_channels(r, width) for r in RESOLUTIONS]
        # blocks[s - 1] makes stage s
        self.blocks = nn.ModuleList(GBlock(a, b, lr_mul) for a, b in zip(chans, chans[1:]))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(c, 3, 1, gain=1.0, lr_mul=lr_mul) for c in chans)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z: [N, z_dim]; y: int64 [N] or soft float [N, n_classes] (conditional), or None
        -> images [N, 3, 64, 64] in [-1, 1]."""
        check_labels(y, len(z), self.n_classes, soft=True)
        stage = self.current_stage
        latent = pixel_norm(z)
        if self.embed is not None:
            latent = torch.cat([latent, pixel_norm(embed_labels(self.embed, y)).to(latent.dtype)], dim=1)
        h = pixel_norm(_lrelu(self.dense(latent).reshape(len(z), self.width, 4, 4)))
        h = pixel_norm(_lrelu(self.conv4(h)))
        for block in self.blocks[: max(stage - 1, 0)]:
            h = block(h)
        if stage == 0:
            rgb = self.to_rgb[0](h)
        else:  # the previous resolution's image, upsampled, faded out as alpha rises (not at all once it is 1)
            rgb = self.blend(upsample_nearest(self.to_rgb[stage - 1](h)), self.to_rgb[stage](self.blocks[stage - 1](h)))
        rgb = torch.tanh(rgb)
        factor = OUT_SIZE // RESOLUTIONS[stage]
        return upsample_nearest(rgb, factor)


class DBlock(nn.Module):
    """Two conv3x3 + LeakyReLU, then 2x average pooling: [N, a, R, R] -> [N, b, R/2, R/2]."""

    def __init__(self, in_ch: int, out_ch: int, lr_mul: float):
        super().__init__()
        self.conv1 = EqualizedConv2d(in_ch, in_ch, 3, padding=1, lr_mul=lr_mul)
        self.conv2 = EqualizedConv2d(in_ch, out_ch, 3, padding=1, lr_mul=lr_mul)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(_lrelu(self.conv2(_lrelu(self.conv1(x)))), 2)


class Discriminator(_Progressive):
    def __init__(self, width: int, n_classes: int, aux_classifier: bool, mbstd_group: int, lr_mul: float = 1.0,
                 grow: float = 0.5):
        super().__init__(grow)
        self.n_classes, self.mbstd_group = n_classes, mbstd_group
        chans = [_channels(r, width) for r in RESOLUTIONS]
        self.from_rgb = nn.ModuleList(EqualizedConv2d(3, c, 1, lr_mul=lr_mul) for c in chans)
        # blocks[s - 1] leaves stage s
        self.blocks = nn.ModuleList(DBlock(b, a, lr_mul) for a, b in zip(chans, chans[1:]))
        self.conv4 = EqualizedConv2d(width + 1, width, 3, padding=1, lr_mul=lr_mul)
        self.dense4 = EqualizedConv2d(width, width, 4, lr_mul=lr_mul)  # 4x4 -> 1x1
        self.logit = EqualizedLinear(width, 1, gain=1.0, lr_mul=lr_mul)
        # projection embedding: N(0, 1) scaled by 1/sqrt(width) at run time, in the spirit of the equalized lr
        # (stored at 1 / lr_mul and scaled back, as the layers)
        self.embed = nn.Parameter(torch.randn(n_classes, width) / lr_mul) if n_classes else None
        self.embed_scale = lr_mul / math.sqrt(width)
        self.classifier = (EqualizedLinear(width, n_classes, gain=1.0, lr_mul=lr_mul)
                           if aux_classifier and n_classes else None)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """x: [N, 3, 64, 64]; y: int64 [N] or None -> (logits [N], class logits [N, n_classes] or None)."""
        check_labels(y, len(x), self.n_classes)
        stage = self.current_stage
        factor = OUT_SIZE // RESOLUTIONS[stage]
        x = F.avg_pool2d(x, factor) if factor > 1 else x
        h = _lrelu(self.from_rgb[stage](x))
        if stage > 0:
            # the previous resolution's path on a downsampled input, faded out as alpha rises
            h = self.blend(_lrelu(self.from_rgb[stage - 1](F.avg_pool2d(x, 2))), self.blocks[stage - 1](h))
            for block in reversed(self.blocks[: stage - 1]):
                h = block(h)
        h = _lrelu(self.conv4(minibatch_stddev(h, self.mbstd_group)))
        h = _lrelu(self.dense4(h)).flatten(1)  # [N, width]
        logits = self.logit(h).flatten()
        if self.embed is not None:
            logits = logits + (self.embed[y].to(h.dtype) * h).sum(dim=1) * self.embed_scale
        class_logits = self.classifier(h) if self.classifier is not None else None
        return logits, class_logits


@register_model("progan", ProGANOptions, "Progressive GAN (Karras et al. 2018): grows 4x4 -> 64x64 with fade-in, "
                "equalized lr, pixel norm, minibatch stddev; conditioned by class embedding and projection")
def build(options: ProGANOptions, n_classes: int, aux_classifier: bool) -> tuple[nn.Module, nn.Module]:
    return (Generator(options.z_dim, options.width, n_classes, options.lr_mul, options.grow),
            Discriminator(options.width, n_classes, aux_classifier, options.mbstd_group, options.lr_mul, options.grow))
