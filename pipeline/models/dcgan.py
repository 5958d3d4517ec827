"""DCGAN at 64x64 (Radford et al. 2016): the classic all-convolutional baseline.

G: z as a [N, z, 1, 1] map -> 4x4 transposed convs 1 -> 4 -> 8 -> 16 -> 32 -> 64, batch norm + ReLU between,
tanh out; channels g*[8, 4, 2, 1] then 3. D: the mirror, strided 4x4 convs 64 -> 32 -> 16 -> 8 -> 4 with
channels d*[1, 2, 4, 8], batch norm (not after the first conv) + LeakyReLU(0.2), then a 4x4 conv to one logit.
Weights N(0, 0.02), batch-norm gains N(1, 0.02). The training loop passes real and fake images through D
as separate batches (``train.train_step``, for any D with batch norm), as the DCGAN paper does: D's batch
norm then sees in its update the same all-fake batches that G's update shows it.

Unconditional by design. With ``n_classes > 0`` it is conditioned in the simplest way that works: G sees a
learned class embedding (z_dim wide) concatenated to z, and D adds a projection term <embed(y), h> on its
4x4 features averaged over space (Miyato & Koyama 2018). ``aux_classifier`` adds a linear breed head on the
same features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pipeline.models import register_model
from pipeline.models.layers import check_labels, embed_labels


@dataclass(frozen=True)
class DCGANOptions:
    z_dim: int = field(default=100, metadata={"min": 1, "max": 4096})
    g_width: int = field(default=32, metadata={"min": 1, "max": 1024})  # G channels at 32x32 (x8 at 4x4)
    d_width: int = field(default=32, metadata={"min": 1, "max": 1024})  # D channels at 32x32 (x8 at 4x4)


def _dcgan_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    def __init__(self, z_dim: int, width: int, n_classes: int):
        super().__init__()
        self.z_dim, self.n_classes = z_dim, n_classes
        self.embed = nn.Embedding(n_classes, z_dim) if n_classes else None
        in_ch = z_dim * (2 if n_classes else 1)
        chans = [width * 8, width * 4, width * 2, width]
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_ch, chans[0], 4, 1, 0, bias=False)]  # 1 -> 4
        for a, b in zip(chans, chans[1:]):  # 4 -> 8 -> 16 -> 32
            layers += [nn.BatchNorm2d(a), nn.ReLU(inplace=True), nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False)]
        layers += [nn.BatchNorm2d(chans[-1]), nn.ReLU(inplace=True),  # 32 -> 64
                   nn.ConvTranspose2d(chans[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight)  # the same scale as z

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z: [N, z_dim]; y: int64 [N] or soft float [N, n_classes] (conditional), or None
        -> images [N, 3, 64, 64] in [-1, 1]."""
        check_labels(y, len(z), self.n_classes, soft=True)
        if self.embed is not None:
            z = torch.cat([z, embed_labels(self.embed.weight, y).to(z.dtype)], dim=1)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    def __init__(self, width: int, n_classes: int, aux_classifier: bool):
        super().__init__()
        self.n_classes = n_classes
        chans = [width, width * 2, width * 4, width * 8]
        # 64 -> 32, without batch norm on the first layer
        layers: list[nn.Module] = [nn.Conv2d(3, chans[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(chans, chans[1:]):  # 32 -> 16 -> 8 -> 4
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.logit = nn.Conv2d(chans[-1], 1, 4, 1, 0, bias=False)  # 4 -> 1
        self.embed = nn.Embedding(n_classes, chans[-1]) if n_classes else None
        self.classifier = nn.Linear(chans[-1], n_classes) if aux_classifier and n_classes else None
        self.apply(_dcgan_init)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """x: [N, 3, 64, 64]; y: int64 [N] or None -> (logits [N], class logits [N, n_classes] or None)."""
        check_labels(y, len(x), self.n_classes)
        h = self.features(x)  # [N, 8d, 4, 4]
        logits = self.logit(h).flatten()
        pooled = h.mean(dim=(2, 3))  # [N, 8d]
        if self.embed is not None:
            logits = logits + (self.embed(y).to(pooled.dtype) * pooled).sum(dim=1)
        class_logits = self.classifier(pooled) if self.classifier is not None else None
        return logits, class_logits


@register_model("dcgan", DCGANOptions, "DCGAN (Radford et al. 2016): transposed-conv G, strided-conv D, batch norm; "
                "conditional via a class embedding on z and a projection term in D")
def build(options: DCGANOptions, n_classes: int, aux_classifier: bool) -> tuple[nn.Module, nn.Module]:
    return (Generator(options.z_dim, options.g_width, n_classes),
            Discriminator(options.d_width, n_classes, aux_classifier))
