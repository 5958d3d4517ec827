"""BigGAN at 64x64 (Brock et al. 2019), the 1st-place architecture: 4 of the top 5 used it.

G: hierarchical z, split into one chunk for the first linear layer and one per residual block; a shared
class embedding; residual up-blocks 4 -> 8 -> 16 -> 32 -> 64 with class-conditional batch norm whose gains and
biases are linear maps of [shared embedding, z chunk]; self-attention at ``attention_res``; then batch norm,
ReLU, conv3x3 to RGB and tanh. Channels ch*16 at 4x4, then ch*[16, 8, 4, 2] out of the blocks (ch = g_width).

D: residual down-blocks 64 -> 32 -> 16 -> 8 -> 4, then one more block at 4x4, channels ch*[1, 2, 4, 8, 16]
(ch = d_width); self-attention after the block that reaches ``attention_res``; ReLU, sum pooling over space,
then a linear logit plus the projection term <embed(y), h> (Miyato & Koyama 2018).

Every conv and linear layer of G and D is spectral-normed (see ``layers`` for which implementation and why)
and initialised orthogonally. Unconditional (n_classes = 0): the whole z feeds the first linear layer, the
blocks use plain batch norm, and D has no projection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models import register_model
from pipeline.models.layers import (ConditionalBatchNorm2d, SelfAttention, check_labels, embed_labels, sn_conv2d,
                                   sn_embedding, sn_linear, upsample_nearest)

G_MULTIPLIERS = (16, 16, 8, 4, 2)  # channels at 4x4, then out of each up-block (8, 16, 32, 64)
D_MULTIPLIERS = (1, 2, 4, 8, 16)  # channels out of each down-block (32, 16, 8, 4, 4)


@dataclass(frozen=True)
class BigGANOptions:
    z_dim: int = field(default=120, metadata={"min": 5, "max": 4096})  # split into 5 chunks when conditional
    shared_dim: int = field(default=128, metadata={"min": 1, "max": 4096})  # shared class embedding
    g_width: int = field(default=8, metadata={"min": 1, "max": 256})  # BigGAN's G_ch (1st place: 32)
    d_width: int = field(default=8, metadata={"min": 1, "max": 256})  # BigGAN's D_ch (1st place: 32)
    attention_res: Literal[0, 8, 16, 32] = 16  # 1st place: 32; self-attention after the block at this resolution; 0: none


class GBlock(nn.Module):
    """BN -> ReLU -> upsample -> conv3x3 -> BN -> ReLU -> conv3x3, plus a 1x1-conv upsampled shortcut:
    [N, a, R, R], cond [N, c] -> [N, b, 2R, 2R]."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(in_ch, cond_dim)
        self.conv1 = sn_conv2d(in_ch, out_ch, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(out_ch, cond_dim)
        self.conv2 = sn_conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = sn_conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = upsample_nearest(F.relu(self.bn1(x, cond)))
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        # a 1x1 conv commutes with nearest upsampling: convolve first, on a quarter of the pixels
        return h + upsample_nearest(self.shortcut(x))


class Generator(nn.Module):
    def __init__(self, z_dim: int, shared_dim: int, width: int, n_classes: int, attention_res: int):
        super().__init__()
        self.z_dim, self.n_classes = z_dim, n_classes
        chans = [width * m for m in G_MULTIPLIERS]
        n_blocks = len(chans) - 1
        if n_classes:
            self.shared = nn.Embedding(n_classes, shared_dim)
            nn.init.orthogonal_(self.shared.weight)
            # hierarchical z: chunk 0 feeds the linear layer, chunk i the i-th block (sizes differ by at most 1)
            self.chunks = [len(c) for c in torch.arange(z_dim).tensor_split(n_blocks + 1)]
            cond_dims = [shared_dim + c for c in self.chunks[1:]]
        else:
            self.shared = None
            self.chunks = [z_dim]
            cond_dims = [0] * n_blocks
        self.linear = sn_linear(self.chunks[0], chans[0] * 16)
        self.blocks = nn.ModuleList(GBlock(a, b, c) for a, b, c in zip(chans, chans[1:], cond_dims))
        # resolution after block i is 8 * 2**i
        self.attention = nn.ModuleDict(
            {str(i): SelfAttention(chans[i + 1]) for i in range(n_blocks) if 8 * 2**i == attention_res}
        )
        self.out_bn = nn.BatchNorm2d(chans[-1])
        self.to_rgb = sn_conv2d(chans[-1], 3, 3, padding=1)
        self.start_channels = chans[0]

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z: [N, z_dim]; y: int64 [N] or soft float [N, n_classes] (conditional), or None
        -> images [N, 3, 64, 64] in [-1, 1]."""
        check_labels(y, len(z), self.n_classes, soft=True)
        zs = z.split(self.chunks, dim=1)
        if self.shared is not None:
            shared = embed_labels(self.shared.weight, y).to(z.dtype)
            conds = [torch.cat([shared, c], dim=1) for c in zs[1:]]
        else:
            conds = [None] * len(self.blocks)
        h = self.linear(zs[0]).reshape(len(z), self.start_channels, 4, 4)
        for i, (block, cond) in enumerate(zip(self.blocks, conds)):
            h = block(h, cond)
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        return torch.tanh(self.to_rgb(F.relu(self.out_bn(h))))


class DBlock(nn.Module):
    """[ReLU ->] conv3x3 -> ReLU -> conv3x3 [-> avg-pool 2x], plus a shortcut (1x1 conv and pooling):
    [N, a, R, R] -> [N, b, R/2, R/2] (or R, R without downsampling). The first block skips the leading ReLU
    (its input is the image) and pools before its shortcut conv, as in BigGAN."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, preactivation: bool):
        super().__init__()
        self.downsample, self.preactivation = downsample, preactivation
        self.conv1 = sn_conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = sn_conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = sn_conv2d(in_ch, out_ch, 1) if in_ch != out_ch or downsample else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        if self.shortcut is None:
            return h + x
        sc = self._pool(self.shortcut(x)) if self.preactivation else self.shortcut(self._pool(x))
        return h + sc


class Discriminator(nn.Module):
    def __init__(self, width: int, n_classes: int, aux_classifier: bool, attention_res: int):
        super().__init__()
        self.n_classes = n_classes
        chans = [3] + [width * m for m in D_MULTIPLIERS]
        n_blocks = len(chans) - 1
        self.blocks = nn.ModuleList(
            DBlock(a, b, downsample=i < n_blocks - 1, preactivation=i > 0)
            for i, (a, b) in enumerate(zip(chans, chans[1:]))
        )
        # resolution after block i is 32 / 2**i, and the last block stays at 4x4; attend once, at the first match
        resolutions = [max(4, 32 >> i) for i in range(n_blocks)]
        at = [i for i, r in enumerate(resolutions) if r == attention_res][:1]
        self.attention = nn.ModuleDict({str(i): SelfAttention(chans[i + 1]) for i in at})
        self.logit = sn_linear(chans[-1], 1)
        self.embed = sn_embedding(n_classes, chans[-1]) if n_classes else None
        self.classifier = sn_linear(chans[-1], n_classes) if aux_classifier and n_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """x: [N, 3, 64, 64]; y: int64 [N] or None -> (logits [N], class logits [N, n_classes] or None)."""
        check_labels(y, len(x), self.n_classes)
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        h = F.relu(h).sum(dim=(2, 3))  # [N, 16 ch]
        logits = self.logit(h).flatten()
        if self.embed is not None:
            logits = logits + (self.embed(y).to(h.dtype) * h).sum(dim=1)
        class_logits = self.classifier(h) if self.classifier is not None else None
        return logits, class_logits


@register_model("biggan", BigGANOptions, "BigGAN (Brock et al. 2019): residual G with hierarchical z, shared "
                "embedding and conditional batch norm, self-attention, spectral norm, projection D (1st place)")
def build(options: BigGANOptions, n_classes: int, aux_classifier: bool) -> tuple[nn.Module, nn.Module]:
    G = Generator(options.z_dim, options.shared_dim, options.g_width, n_classes, options.attention_res)
    D = Discriminator(options.d_width, n_classes, aux_classifier, options.attention_res)
    return G, D
