"""The training step: the data on the device, the parts being trained, and one step of the GAN algorithm.

    train_step = d_steps x d_step (update D on real and fake images), then g_step (update G through D), then
    the EMA of G. The performance contexts (spectral-norm caches, CUDA-graph step marks) are applied in
    train_step only, so d_step and g_step read as the algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from pipeline.augment import diff_augment, random_hflip, random_rotate
from pipeline.config import TrainConfig
from pipeline.ema import ema_decay_at, ema_update, make_ema
from pipeline.files import Dataset
from pipeline.losses import GanLoss, LeCamAnchors, class_loss, get_loss, lecam_penalty
from pipeline.models import build_model
from pipeline.models.layers import cached_spectral_norms
from pipeline.plan import asked_steps, cosine_factor, cycle_steps
from pipeline.runtime import Runtime, unwrap


class DeviceData:
    """The whole training set as one uint8 tensor on the training device; batches drawn there.

    images: uint8 [N, 64, 64, 3] (NHWC as stored), labels: int64 [N].
    """

    def __init__(self, ds: Dataset, device: torch.device, seed: int):
        self.images = torch.from_numpy(np.ascontiguousarray(ds.images)).to(device)
        self.labels = torch.from_numpy(ds.labels.astype(np.int64)).to(device)
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch: images float [n, 3, 64, 64] in [-1, 1], labels int64 [n]."""
        idx = torch.randint(len(self.images), (n,), device=self.device, generator=self.generator)
        x = self.images[idx].permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        return x, self.labels[idx]

    def random_labels(self, n: int) -> torch.Tensor:
        """int64 [n] labels drawn in proportion to the training set (for fake images)."""
        idx = torch.randint(len(self.labels), (n,), device=self.device, generator=self.generator)
        return self.labels[idx]


@dataclass
class Parts:
    """Everything that changes during training, in one place."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    n_classes: int
    aux: bool
    # D normalises over its batch (batch norm): the D step passes real and fake through it apart
    d_batch_dependent: bool = False
    # steps per cycle of the cosine warm restarts (plan.cosine_factor); 0: a constant learning rate. The run sets it
    # from its plan; train_step sets both optimizers' rates from it and the step, so resuming needs no state for it
    lr_period: int = 0
    # The same G and D for the calls that must not synchronise gradients across processes (G under
    # no_grad in the D step, D as a critic in the G step): compiled when train.compile is on, never
    # wrapped in DDP. Without torch.compile and DDP they are G and D themselves.
    G_local: nn.Module | None = None
    D_local: nn.Module | None = None
    # LeCam regularisation's moving averages of D's logits (train.lecam_weight > 0; None: off)
    lecam: LeCamAnchors | None = None

    def __post_init__(self):
        self.G_local = self.G if self.G_local is None else self.G_local
        self.D_local = self.D if self.D_local is None else self.D_local


def total_steps(cfg: TrainConfig, n_images: int, world_size: int = 1) -> int | None:
    """G updates for ``cfg.epochs`` passes over ``n_images`` at ``batch_size`` per process; None for ``epochs:
    auto`` (the time budget decides: see :func:`plan_to_budget`)."""
    return asked_steps(cfg.epochs, n_images, cfg.batch_size, world_size)


CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that use CUDA graphs
LECAM_DECAY = 0.99  # LeCam's moving averages of D's logits: the decay of the authors' TensorFlow code


def adam(params, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam, fused (one kernel per parameter group on a GPU, and faster on a CPU too) where torch has it.

    The same update as the default implementation up to rounding; on a GPU the default (foreach) launches
    a dozen kernels per group, which a launch-bound step pays for (bench/count_ops.py).
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):  # a torch or device without fused Adam
        return torch.optim.Adam(params, lr=lr, betas=betas)


def compile_room(*models: nn.Module, variants: int = 2) -> int:
    """Make torch.compile keep every specialisation of ``models``' forward passes; returns the limit now in force.

    A compiled forward is specialised on grad mode and on which of its inputs and parameters require grad:
    G generates for D's step under no_grad and for G's with grad; D sees reals and detached fakes with its
    parameters trained, then fakes with grad and its parameters frozen, and, with a loss that compares with
    the real logits (RaLS), reals under no_grad too. ``variants`` (2, or 3 with such a loss) times
    ``compiled_stages`` for a progressive model (ProGAN: 5) is 10 or 15 for ProGAN, over torch's default limit
    of 8 recompilations per function, after which the function runs eagerly for the rest of training.
    """
    need = variants * max(getattr(unwrap(m), "compiled_stages", 1) for m in models) + 2  # + 2: room for a surprise
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # older torch's name
    setattr(config, name, max(getattr(config, name), need))
    return getattr(config, name)


def build_parts(cfg: TrainConfig, n_breeds: int, rt: Runtime, steps_per_epoch: float = 0.0) -> Parts:
    """G, D, G_ema and their optimizers for ``cfg`` on ``rt``'s device. The cosine warm restarts get the period that
    ``cfg.cosine_restart_epochs`` asks for at ``steps_per_epoch`` (for loops that drive :func:`train_step`
    themselves); :func:`train` replaces it with the one its plan tiles (:func:`apply_plan`)."""
    n_classes = n_breeds if cfg.conditional else 0
    aux = cfg.aux_class_weight > 0 and n_classes > 0
    G, D = build_model(cfg.model, cfg.model_options, n_classes, aux)
    G, D = rt.prepare_module(G), rt.prepare_module(D)
    G_ema = make_ema(G) if cfg.ema_decay > 0 else None
    opt_g = adam(G.parameters(), cfg.lr_g, (cfg.beta1, cfg.beta2))
    opt_d = adam(D.parameters(), cfg.lr_d, (cfg.beta1, cfg.beta2))

    def compiled(m: nn.Module) -> nn.Module:
        return torch.compile(m, mode=cfg.compile_mode) if cfg.compile else m

    if cfg.compile:
        compile_room(G, D, variants=3 if get_loss(cfg.loss).g_uses_real else 2)

    G_local, D_local = compiled(G), compiled(D)
    if rt.distributed:  # the gradient-synchronised copies: compile(DDP(model)), as torch.compile expects
        G, D = compiled(rt.wrap(G)), compiled(rt.wrap(D))
    else:
        G, D = G_local, D_local
    return Parts(G, D, G_ema, opt_g, opt_d, rt.grad_scaler(), rt.grad_scaler(), n_classes, aux,
                 d_batch_dependent=has_batch_norm(D_local), G_local=G_local, D_local=D_local,
                 # 3rd place: cosine annealing with warm restarts
                 lr_period=cycle_steps(cfg.cosine_restart_epochs, steps_per_epoch),
                 lecam=LeCamAnchors(LECAM_DECAY, rt.device) if cfg.lecam_weight > 0 else None)


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` has a layer that normalises over the batch (BatchNorm*, SyncBatchNorm)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in unwrap(model).modules())


def set_progress(p: Parts, fraction: float) -> None:
    """Tell progressive models how far training is (others have no ``set_progress``)."""
    for m in (p.G, p.D, p.G_ema):
        if m is not None and hasattr(unwrap(m), "set_progress"):
            unwrap(m).set_progress(fraction)


def growth_stages(p: Parts) -> int:
    """The stages a progressive model grows through, as it says (``growth_stages``; ProGAN: 5, 4x4 to 64x64);
    1 for the others."""
    return max(getattr(unwrap(m), "growth_stages", 1) for m in (p.G, p.D))


def set_lr(p: Parts, cfg: TrainConfig, step: int) -> None:
    """Both optimizers' learning rates for 0-based ``step``: ``lr_g`` and ``lr_d`` times the cosine warm restarts'
    factor (:func:`plan.cosine_factor` of ``p.lr_period``; 1 without restarts)."""
    factor = cosine_factor(step, p.lr_period)
    for opt, base in ((p.opt_g, cfg.lr_g), (p.opt_d, cfg.lr_d)):
        for group in opt.param_groups:
            group["lr"] = base * factor


def real_batch(data: DeviceData, cfg: TrainConfig, rt: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of real images as D sees them: float [batch_size, 3, 64, 64] in [-1, 1] (plus ``real_noise``,
    uniform in [-real_noise, real_noise] on that scale), randomly flipped with ``hflip`` and rotated with
    ``rotate_degrees``; labels int64 [batch_size]."""
    x, y = data.batch(cfg.batch_size)
    if cfg.hflip:
        x = random_hflip(x)
    if cfg.rotate_degrees > 0:  # 3rd place: small rotations of the real images
        x = random_rotate(x, cfg.rotate_degrees, cfg.rotate_p)
    if cfg.real_noise > 0:  # 2nd place: uniform noise on the real images (one 8-bit level is 2/255 = 0.0078 here)
        x = x + (torch.rand_like(x) * 2 - 1) * cfg.real_noise
    return rt.images(x), y


def d_step(p: Parts, data: DeviceData, cfg: TrainConfig, rt: Runtime, loss: GanLoss):
    """One discriminator update: D learns to tell a batch of real images from G's fakes (G fixed).

    Returns (loss_d, d_real: the mean logit of the real images before the update, the real batch and its labels,
    which a relativistic G step compares with)."""
    cond = p.n_classes > 0
    real, y = real_batch(data, cfg, rt)
    y_fake = data.random_labels(cfg.batch_size)
    z = torch.randn(cfg.batch_size, unwrap(p.G).z_dim, device=rt.device)
    with rt.autocast():
        with torch.no_grad():  # G_local: no gradient sync for a pass without gradients
            fake = p.G_local(z, y_fake if cond else None)
        fake = fake.to(real.dtype)
        real_logits, fake_logits, real_cls = d_logits(p, cfg, rt, real, fake, y if cond else None,
                                                      y_fake if cond else None)
        # read now: under CUDA graphs a pass's outputs are overwritten by the next pass
        d_real = real_logits.detach().float().mean()
        loss_d = loss.d(real_logits, fake_logits, cfg.label_smoothing)
        if p.lecam is not None:  # anchored to averages that include this batch, as the paper's code does
            p.lecam.update(real_logits, fake_logits)
            loss_d = loss_d + cfg.lecam_weight * lecam_penalty(real_logits, fake_logits, *p.lecam.anchors())
        if p.aux:
            loss_d = loss_d + cfg.aux_class_weight * class_loss(real_cls, y)
    p.opt_d.zero_grad(set_to_none=True)
    p.scaler_d.scale(loss_d).backward()
    p.scaler_d.step(p.opt_d)
    p.scaler_d.update()
    return loss_d, d_real, real, y


def d_logits(p: Parts, cfg: TrainConfig, rt: Runtime, real: torch.Tensor, fake: torch.Tensor,
             y: torch.Tensor | None, y_fake: torch.Tensor | None):
    """D's logits of the real and the fake batch (both augmented as D sees them), and its class logits of the real
    one (None without an auxiliary classifier)."""
    if p.d_batch_dependent:
        # D's batch norm normalises over the batch it sees: real and fake through D apart, as the DCGAN paper
        # feeds them, so that D learns the same function of a batch of fakes that the G step asks of it (a joint
        # batch here and fakes alone there: G learns nothing)
        real_logits, real_cls = p.D(rt.images(augmented(real, cfg)), y)
        fake_logits, _ = p.D(rt.images(augmented(fake, cfg)), y_fake)
        return real_logits, fake_logits, real_cls
    # no batch norm: one pass over both halves, fewer launches (ProGAN's minibatch stddev groups consecutive
    # images, so its groups stay all real or all fake)
    logits, cls = p.D(rt.images(augmented(torch.cat([real, fake]), cfg)),
                      torch.cat([y, y_fake]) if y is not None else None)
    n = len(real)
    return logits[:n], logits[n:], cls[:n] if cls is not None else None


def g_step(p: Parts, data: DeviceData, cfg: TrainConfig, rt: Runtime, loss: GanLoss, real: torch.Tensor,
           y: torch.Tensor):
    """One generator update: G learns to make D call its fakes real, D a fixed critic (no gradients for its
    weights, no DDP sync). A relativistic loss compares with D's logits of ``real`` (the last D step's batch).

    Returns (loss_g, d_fake: the mean logit of the fakes by the updated D)."""
    cond = p.n_classes > 0
    D_module = unwrap(p.D)
    D_module.requires_grad_(False)
    try:
        y_fake = data.random_labels(cfg.batch_size)
        z = torch.randn(cfg.batch_size, unwrap(p.G).z_dim, device=rt.device)
        with rt.autocast():
            fake = p.G(z, y_fake if cond else None)
            if loss.g_uses_real:
                # relativistic losses compare with the real logits of the updated D (constants for G);
                # cached: D's spectral norms are computed once for both passes, not twice
                with parametrize.cached():
                    fake_logits, fake_cls = p.D_local(augmented(rt.images(fake), cfg), y_fake if cond else None)
                    with torch.no_grad():
                        real_logits, _ = p.D_local(augmented(real, cfg), y if cond else None)
            else:  # the other losses ignore them: no third D pass (the D step's real logits are reported)
                fake_logits, fake_cls = p.D_local(augmented(rt.images(fake), cfg), y_fake if cond else None)
                real_logits = None
            d_fake = fake_logits.detach().float().mean()
            loss_g = loss.g(real_logits, fake_logits)
            if p.aux:
                loss_g = loss_g + cfg.aux_class_weight * class_loss(fake_cls, y_fake)
        p.opt_g.zero_grad(set_to_none=True)
        p.scaler_g.scale(loss_g).backward()
    finally:
        D_module.requires_grad_(True)
    return loss_g, d_fake


def augmented(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """``x`` through ``train.augment``'s DiffAugment policy (the same for real and fake images); as is without."""
    return diff_augment(x, cfg.augment) if cfg.augment else x


def train_step(p: Parts, data: DeviceData, cfg: TrainConfig, rt: Runtime, step: int = 0) -> dict[str, torch.Tensor]:
    """``d_steps`` discriminator updates, then one generator update, then the EMA of G.

    step: the steps already done (0-based); the EMA's warm-up reads it (``ema.ema_decay_at``), and so do the cosine
    warm restarts (:func:`set_lr`), so a loop of its own must pass it: left at 0, the decay would stay at step 0's
    0.1, and G_ema would be nearly a copy of G rather than an average.

    Returns 0-d tensors on the device: ``loss_d`` (the last D update's), ``loss_g``, ``d_real`` (the mean
    logit of the real images in the last D update, before it) and ``d_fake`` (the mean logit of the G step's
    fakes, by D after its updates). The two logits come from different Ds and batches: their gap is not D's
    margin on one batch. Reading them (``float``) waits for the GPU, so the loop does it only when it logs
    (see :func:`as_floats`).
    """
    loss = get_loss(cfg.loss)
    set_lr(p, cfg, step)
    if cfg.compile and cfg.compile_mode in CUDA_GRAPH_MODES:
        # a new iteration for CUDA graph trees: the memory of the last step's graph outputs may be reused
        torch.compiler.cudagraph_mark_step_begin()
    # Spectral norms are computed once per network and update (cached_spectral_norms): G's for its passes in the
    # D steps and the G step, as its weights change only in the G step's optimizer step, its last act; D's for
    # its passes in each D step. torch.compile fuses the spectral norms itself: no cache there.
    with cached_spectral_norms(unwrap(p.G), enabled=not cfg.compile):
        for _ in range(cfg.d_steps):
            with cached_spectral_norms(unwrap(p.D), enabled=not cfg.compile):
                loss_d, d_real, real, y = d_step(p, data, cfg, rt, loss)
        loss_g, d_fake = g_step(p, data, cfg, rt, loss, real, y)
    p.scaler_g.step(p.opt_g)
    p.scaler_g.update()
    if p.G_ema is not None:
        ema_update(p.G_ema, p.G, ema_decay_at(step, cfg.ema_decay, cfg.ema_start))
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "d_real": d_real, "d_fake": d_fake}


def as_floats(values: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """``train_step``'s tensors as Python floats (one wait for the device)."""
    if not values:
        return {}
    keys = list(values)
    stacked = torch.stack([torch.as_tensor(values[k], dtype=torch.float32).reshape(()) for k in keys]).cpu()
    return dict(zip(keys, stacked.tolist()))
