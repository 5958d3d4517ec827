"""GAN losses: small pure functions on discriminator logits, looked up by name.

Every loss takes the raw (pre-sigmoid) logits of D, float [N] or [N, 1] in any float dtype, and returns
a float32 scalar: the logits are cast to float32 first, so squares and logs stay accurate when D runs
under bf16/fp16 autocast.

``LOSSES[name].d(real_logits, fake_logits, smoothing)`` is the discriminator's loss and
``LOSSES[name].g(real_logits, fake_logits)`` the generator's. The generator's loss receives the real
logits too because the relativistic loss compares fakes with the average real; the others ignore them.
``smoothing`` (label smoothing) only affects ``bce``; the other losses ignore it, so the same params work
whichever loss is picked.

Names: ``bce`` (1st and 3rd place: non-saturating GAN with one-sided label smoothing), ``hinge``
(SAGAN/BigGAN's default), ``rals`` (2nd place and cdeotte's kernel: relativistic average least squares).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _f32(*logits: Tensor) -> tuple[Tensor, ...]:
    # float32 whatever the autocast dtype: the losses are cheap, their precision is not free
    return tuple(t.float().reshape(-1) for t in logits)


# --- bce: the standard (non-saturating) GAN ----------------------------------------------------------


def bce_d(real_logits: Tensor, fake_logits: Tensor, smoothing: float = 0.0) -> Tensor:
    """BCE with logits: real target ``1 - smoothing`` (one-sided label smoothing), fake target 0.

    The two terms are means over their own batch, summed (not averaged): with logits 0 the loss is
    2 log 2. One-sided: with the fake target smoothed too, D's optimum would keep some "real" probability
    where only G's samples lie, and G would not be pushed away from there (Salimans et al. 2016). With smoothing, the real
    term cannot go below the entropy of the target (0.325 at 0.1), so neither can D's loss.
    """
    real, fake = _f32(real_logits, fake_logits)
    real_loss = F.binary_cross_entropy_with_logits(real, torch.full_like(real, 1.0 - smoothing))
    fake_loss = F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    return real_loss + fake_loss


def bce_g(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: BCE of the fakes against target 1, i.e. mean(softplus(-fake))."""
    (fake,) = _f32(fake_logits)
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


# --- hinge -------------------------------------------------------------------------------------------


def hinge_d(real_logits: Tensor, fake_logits: Tensor, smoothing: float = 0.0) -> Tensor:
    """mean(relu(1 - real)) + mean(relu(1 + fake)). ``smoothing`` is ignored."""
    real, fake = _f32(real_logits, fake_logits)
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """-mean(fake)."""
    (fake,) = _f32(fake_logits)
    return -fake.mean()


# --- rals: relativistic average least squares (Jolicoeur-Martineau 2018, RaLSGAN) --------------------
# The paper defines
#   L_D = E_r[(C(x_r) - E_f C(x_f) - 1)^2] + E_f[(C(x_f) - E_r C(x_r) + 1)^2]
#   L_G = E_f[(C(x_f) - E_r C(x_r) - 1)^2] + E_r[(C(x_r) - E_f C(x_f) + 1)^2]
# and that sum is what is computed here. The author's reference code (and the Kaggle RaLS kernels built on
# it) divides both by 2. Under Adam an overall factor changes nothing; it only changes the balance with
# other terms, so a recipe written for the halved form uses twice its ``aux_class_weight`` here.
# The batch means (E_f C(x_f), E_r C(x_r)) are part of the graph: in the D step gradients flow through
# both; in the G step the real logits usually come from a no_grad pass, so they act as constants.


def rals_d(real_logits: Tensor, fake_logits: Tensor, smoothing: float = 0.0) -> Tensor:
    """mean((real - mean(fake) - 1)^2) + mean((fake - mean(real) + 1)^2). ``smoothing`` is ignored."""
    real, fake = _f32(real_logits, fake_logits)
    return (real - fake.mean() - 1.0).square().mean() + (fake - real.mean() + 1.0).square().mean()


def rals_g(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """mean((fake - mean(real) - 1)^2) + mean((real - mean(fake) + 1)^2): D's loss with the roles swapped."""
    real, fake = _f32(real_logits, fake_logits)
    return (fake - real.mean() - 1.0).square().mean() + (real - fake.mean() + 1.0).square().mean()


# --- registry ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GanLoss:
    """A pair of loss functions: ``d(real, fake, smoothing)`` for D, ``g(real, fake)`` for G."""

    name: str
    d: Callable[[Tensor, Tensor, float], Tensor]
    g: Callable[[Tensor, Tensor], Tensor]
    g_uses_real: bool = False  # g reads the real logits (relativistic); else training skips that D pass and
                               # passes None for them


LOSSES: dict[str, GanLoss] = {
    loss.name: loss
    for loss in (
        GanLoss("bce", bce_d, bce_g),
        GanLoss("hinge", hinge_d, hinge_g),
        GanLoss("rals", rals_d, rals_g, g_uses_real=True),
    )
}


def get_loss(name: str) -> GanLoss:
    """The loss registered as ``name``; KeyError naming the known ones otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}") from None


def class_loss(class_logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of the auxiliary classifier (2nd place: RaLS plus a breed classification loss).

    class_logits: float [N, C] (any float dtype; computed in float32), labels: int64 [N] in [0, C).
    Returns the mean over the batch, a float32 scalar.
    """
    return F.cross_entropy(class_logits.float(), labels.long())


# --- LeCam regularisation (Tseng et al., CVPR 2021) ---------------------------------------------------------------


def lecam_penalty(real_logits: Tensor, fake_logits: Tensor, anchor_real: Tensor | float,
                  anchor_fake: Tensor | float) -> Tensor:
    """``mean(relu(D(x) - anchor_fake)^2) + mean(relu(anchor_real - D(G(z)))^2)``, a float32 scalar.

    The anchors are moving averages of D's mean logit on real and on fake images (:class:`LeCamAnchors`), held
    fixed: D is pulled back where its real logits rise above the fakes' usual level and its fake logits fall
    below the reals' usual level, which keeps its outputs from drifting apart when it can memorise a small data
    set. The paper adds ``lambda`` times this to D's loss (lambda 0.3 with BigGAN)."""
    real, fake = _f32(real_logits, fake_logits)
    return F.relu(real - anchor_fake).square().mean() + F.relu(anchor_real - fake).square().mean()


class LeCamAnchors:
    """The two moving averages LeCam regularisation anchors to: of D's mean logit on real and on fake images.

    ``decay`` 0.99 as in the paper. Each average starts at 0 and is divided by ``1 - decay**t`` after ``t``
    updates (bias-corrected, as the authors' TensorFlow code does with ``zero_debias``), so from the first step
    on it is a true average of what D said rather than a pull towards 0. Kept as tensors on D's device, so an
    update does not wait for the GPU; :meth:`state_dict` / :meth:`load_state_dict` carry them in a checkpoint,
    which makes a resumed run continue with the same anchors."""

    def __init__(self, decay: float = 0.99, device: torch.device | str = "cpu"):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"LeCam decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.sums = torch.zeros(2, device=device, dtype=torch.float32)  # undivided averages: real, fake
        self.updates = 0

    @torch.no_grad()
    def update(self, real_logits: Tensor, fake_logits: Tensor) -> None:
        """Fold in this batch's mean logits (detached)."""
        means = torch.stack([real_logits.detach().float().mean(), fake_logits.detach().float().mean()])
        self.sums.mul_(self.decay).add_(means.to(self.sums.device), alpha=1.0 - self.decay)
        self.updates += 1

    def anchors(self) -> tuple[Tensor, Tensor]:
        """(real, fake) 0-d tensors: the bias-corrected averages (0 before any update)."""
        if self.updates == 0:
            return self.sums[0], self.sums[1]
        corrected = self.sums / (1.0 - self.decay ** self.updates)
        return corrected[0], corrected[1]

    def state_dict(self) -> dict:
        return {"decay": self.decay, "sums": self.sums.detach().cpu().tolist(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.sums = torch.tensor(state["sums"], dtype=torch.float32, device=self.sums.device)
        self.updates = int(state["updates"])
