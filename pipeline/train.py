"""Stage ``train``: the prepared data set -> one self-contained checkpoint.

    python -m pipeline.train --data data/prepared/dogs64.npz --out models/checkpoint.pt
    torchrun --nproc_per_node 4 -m pipeline.train ...        # several GPUs, same command

Trains the model that ``params.yaml`` names (``train.model``), on the CPU, one GPU or several.
The data set is small (22k x 64 x 64 x 3 bytes), so it lives in memory on the training device and
batches are drawn there, with no DataLoader. Losses go to dvclive (``dvc plots show``), a fixed-seed
sample grid is written every ``sample_every`` steps, and the checkpoint every ``checkpoint_every``
steps and at the end; ``--resume`` continues a killed run from its last checkpoint. With ``train.time_budget_min``
the run measures its speed first and, where the epochs would not fit, plans the steps that do (growth and cosine
cycles laid over them, see ``pipeline.plan``); ``train.epochs: auto`` asks for as many as fit. With
``train.eval_every > 0`` the EMA generator's samples are scored with MiFID every that many steps as the score
stage scores (the network, eps and reference of the ``score`` section: ``--photos`` for Kaggle's reference,
the training set itself for ``crops``; reference statistics cached where the score stage caches them), the
numbers go to dvclive, and the best checkpoint by MiFID is kept in ``--best``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn.utils import parametrize
from tqdm import tqdm

from pipeline.augment import diff_augment, random_hflip
from pipeline.checkpoint import CheckpointError, checkpoint_payload, load_checkpoint, load_weights, save_checkpoint
from pipeline.config import (ConfigError, ScoreConfig, TrainConfig, add_config_arguments, config_from_args,
                             epochs_need_budget, load_config, sample_grid_warning)
from pipeline.ema import ema_decay_at, ema_update, make_ema
from pipeline.errors import error_text, first_line
from pipeline.files import TMP_MARK, Dataset, ensure_writable, load_dataset, require_competition_size
from pipeline.images import even_subsample, image_grid, png_bytes, save_gif, save_png
from pipeline.losses import class_loss, get_loss
from pipeline.metrics.features import FeatureNetworkError
from pipeline.models import build_model, to_pixels
from pipeline.models.layers import cached_spectral_norms
from pipeline.plan import (Costs, Plan, asked_steps, cosine_factor, cycle_steps, fit_steps, fits, make_plan, share_at,
                           steps_to_epochs)
from pipeline.runtime import Runtime, setup_runtime, unwrap
from pipeline.sampling import sample_labels


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

    def __post_init__(self):
        self.G_local = self.G if self.G_local is None else self.G_local
        self.D_local = self.D if self.D_local is None else self.D_local


def total_steps(cfg: TrainConfig, n_images: int, world_size: int = 1) -> int | None:
    """G updates for ``cfg.epochs`` passes over ``n_images`` at ``batch_size`` per process; None for ``epochs:
    auto`` (the time budget decides: see :func:`plan_to_budget`)."""
    return asked_steps(cfg.epochs, n_images, cfg.batch_size, world_size)


CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that use CUDA graphs


def adam(params, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam, fused (one kernel per parameter group on a GPU, and 3x faster on a CPU) where torch has it.

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
                 lr_period=cycle_steps(cfg.cosine_restart_epochs, steps_per_epoch))


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
    uniform in [-real_noise, real_noise] on that scale), randomly flipped with ``hflip``; labels int64 [batch_size]."""
    x, y = data.batch(cfg.batch_size)
    if cfg.hflip:
        x = random_hflip(x)
    if cfg.real_noise > 0:  # 2nd place: uniform noise on the real images (one 8-bit level is 2/255 = 0.0078 here)
        x = x + (torch.rand_like(x) * 2 - 1) * cfg.real_noise
    return rt.images(x), y


def train_step(p: Parts, data: DeviceData, cfg: TrainConfig, rt: Runtime, step: int = 0) -> dict[str, torch.Tensor]:
    """``d_steps`` discriminator updates, then one generator update.

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
    z_dim = unwrap(p.G).z_dim
    cond = p.n_classes > 0
    # G_nosync, D_nosync: the models without the DDP wrapper (compiled, with train.compile), for the passes
    # that must not synchronise gradients across processes; D_module: D itself, to switch its gradients
    G_nosync, D_nosync = p.G_local, p.D_local
    D_module = unwrap(p.D)
    set_lr(p, cfg, step)
    if cfg.compile and cfg.compile_mode in CUDA_GRAPH_MODES:
        # a new iteration for CUDA graph trees: the memory of the last step's graph outputs may be reused
        torch.compiler.cudagraph_mark_step_begin()

    def aug(x):
        return diff_augment(x, cfg.augment) if cfg.augment else x

    # Spectral norms are computed once per network and update (cached_spectral_norms): G's for its passes in
    # the D step and the G step, as its weights do not change before opt_g.step(), where the block ends; D's
    # for its pass in each D step. torch.compile fuses the spectral norms itself: no cache there.
    with cached_spectral_norms(unwrap(p.G), enabled=not cfg.compile):
        for _ in range(cfg.d_steps):
            real, y = real_batch(data, cfg, rt)
            y_fake = data.random_labels(cfg.batch_size)
            z = torch.randn(cfg.batch_size, z_dim, device=rt.device)
            with cached_spectral_norms(D_module, enabled=not cfg.compile):
                with rt.autocast():
                    with torch.no_grad():
                        fake = G_nosync(z, y_fake if cond else None)
                    fake = fake.to(real.dtype)
                    if p.d_batch_dependent:
                        # D's batch norm normalises over the batch it sees: real and fake through D apart, as
                        # the DCGAN paper feeds them, so that D learns the same function of a batch of fakes
                        # that the G step asks of it (a joint batch here and fakes alone there: G learns nothing)
                        real_logits, real_cls = p.D(rt.images(aug(real)), y if cond else None)
                        fake_logits, _ = p.D(rt.images(aug(fake)), y_fake if cond else None)
                    else:
                        # no batch norm: one pass over both halves, fewer launches (ProGAN's minibatch stddev
                        # groups consecutive images, so its groups stay all real or all fake)
                        both = rt.images(aug(torch.cat([real, fake])))
                        logits, cls = p.D(both, torch.cat([y, y_fake]) if cond else None)
                        real_logits, fake_logits = logits[: len(real)], logits[len(real):]
                        real_cls = cls[: len(real)] if cls is not None else None
                    # read now: under CUDA graphs a pass's outputs are overwritten by the next pass
                    d_real = real_logits.detach().float().mean()
                    loss_d = loss.d(real_logits, fake_logits, cfg.label_smoothing)
                    if p.aux:
                        loss_d = loss_d + cfg.aux_class_weight * class_loss(real_cls, y)
                p.opt_d.zero_grad(set_to_none=True)
                p.scaler_d.scale(loss_d).backward()
            p.scaler_d.step(p.opt_d)
            p.scaler_d.update()

        # G step: D is only a critic here, so its weights need no gradients (and no DDP sync)
        D_module.requires_grad_(False)
        try:
            y_fake = data.random_labels(cfg.batch_size)
            z = torch.randn(cfg.batch_size, z_dim, device=rt.device)
            with rt.autocast():
                fake = p.G(z, y_fake if cond else None)
                if loss.g_uses_real:
                    # relativistic losses compare with the real logits of the updated D (constants for G);
                    # cached: D's spectral norms are computed once for both passes, not twice
                    with parametrize.cached():
                        fake_logits, fake_cls = D_nosync(aug(rt.images(fake)), y_fake if cond else None)
                        with torch.no_grad():
                            real_logits, _ = D_nosync(aug(real), y if cond else None)
                else:  # the other losses ignore them: no third D pass (the D step's real logits are reported)
                    fake_logits, fake_cls = D_nosync(aug(rt.images(fake)), y_fake if cond else None)
                    real_logits = None
                d_fake = fake_logits.detach().float().mean()
                loss_g = loss.g(real_logits, fake_logits)
                if p.aux:
                    loss_g = loss_g + cfg.aux_class_weight * class_loss(fake_cls, y_fake)
            p.opt_g.zero_grad(set_to_none=True)
            p.scaler_g.scale(loss_g).backward()
        finally:
            D_module.requires_grad_(True)
    p.scaler_g.step(p.opt_g)
    p.scaler_g.update()
    if p.G_ema is not None:
        ema_update(p.G_ema, p.G, ema_decay_at(step, cfg.ema_decay))
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "d_real": d_real, "d_fake": d_fake}


def as_floats(values: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """``train_step``'s tensors as Python floats (one wait for the device)."""
    if not values:
        return {}
    keys = list(values)
    stacked = torch.stack([torch.as_tensor(values[k], dtype=torch.float32).reshape(()) for k in keys]).cpu()
    return dict(zip(keys, stacked.tolist()))


class SampleGrid:
    """Fixed latents (and, for conditional models, one row per breed) so successive grids are comparable."""

    def __init__(self, z_dim: int, n_classes: int, breeds: list[str], rows: int, device: torch.device, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.columns = 8
        if n_classes:
            self.rows = min(rows, n_classes)
            self.labels = torch.arange(self.rows).repeat_interleave(self.columns).to(device)
            self.captions = [breeds[i].replace("_", " ") if c == 0 else "" for i in range(self.rows) for c in range(self.columns)]
        else:
            self.rows = rows
            self.labels = None
            self.captions = None
        self.z = torch.randn(self.rows * self.columns, z_dim, generator=g).to(device)

    @torch.no_grad()
    def render(self, G: nn.Module, title: str):
        was_training = G.training
        G.eval()
        pixels = to_pixels(G(self.z, self.labels))
        G.train(was_training)
        return image_grid(pixels, self.captions, columns=self.columns, zoom=2, title=title)


SAMPLE_PREFIX = "step_"  # sample grids are <samples>/step_NNNNNNN.png
PROGRESS_GIF = "progress.gif"  # every grid of the run, one per frame (evenly subsampled to GIF_MAX_FRAMES)
LAST_PNG = "last.png"  # the last grid, as a still, at full size
GIF_MAX_FRAMES = 24
GIF_SHRINK = 2  # GIF frames at half the grid's size: tiles at their real 64 px (the grids zoom them 2x)
# 24 half-size frames of a 12-breed grid: about 5 MB (GIF compresses noisy 64x64 pictures poorly)
GIF_FRAME_MS = 200
GIF_LAST_MS = 2000  # hold the final grid before the loop restarts


def sample_path(samples_dir: Path, step: int) -> Path:
    return samples_dir / f"{SAMPLE_PREFIX}{step:07d}.png"


def sample_files(samples_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every sample grid in ``samples_dir``, by step."""
    found = []
    for path in samples_dir.glob(f"{SAMPLE_PREFIX}*.png"):
        digits = path.stem[len(SAMPLE_PREFIX):]
        if digits.isdigit():
            found.append((int(digits), path))
    return sorted(found)


def drop_samples_after(samples_dir: Path, step: int) -> None:
    """Remove grids of steps after ``step``: left by an earlier run (``step`` 0: a fresh start) or by a killed
    run past its last checkpoint, they do not belong to the run that continues from ``step``."""
    for s, path in sample_files(samples_dir):
        if s > step:
            path.unlink()
    if step == 0:  # a fresh start: the still and the GIF of another run must not stand beside this run's grids
        for name in (LAST_PNG, PROGRESS_GIF):
            (samples_dir / name).unlink(missing_ok=True)
    for leftover in samples_dir.glob(f".*{TMP_MARK}*"):  # a grid half-written when a run was killed
        leftover.unlink(missing_ok=True)


def write_progress(samples_dir: Path, max_frames: int = GIF_MAX_FRAMES) -> tuple[int, int]:
    """Assemble the sample grids of ``samples_dir`` into ``progress.gif`` (at most ``max_frames`` frames,
    evenly spread, first and last always in, each shrunk by ``GIF_SHRINK``) and copy the last grid to
    ``last.png``; both written atomically.

    Returns (grids found, frames written); (0, 0) writes nothing.
    """
    files = sample_files(samples_dir)
    if not files:
        return 0, 0
    keep = [files[i][1] for i in even_subsample(len(files), max_frames)]
    frames = []
    for path in keep:
        with Image.open(path) as im:
            frames.append(im.convert("RGB"))
    save_png(samples_dir / LAST_PNG, frames[-1])
    save_gif(samples_dir / PROGRESS_GIF, [f.reduce(GIF_SHRINK) for f in frames], GIF_FRAME_MS, GIF_LAST_MS)
    return len(files), len(frames)


# ------------------------------------------------------------------------------------ MiFID during training


@dataclass(frozen=True)
class EvalSettings:
    """How to score during training: the ``score`` section (network, weights, eps, batch size, reference kind),
    where the reference statistics are cached (shared with the score stage), where the best checkpoint goes,
    and the photo reference (``score.reference: photos``; None with ``crops``, whose reference is the training
    set itself)."""

    score: ScoreConfig
    cache_dir: Path
    best_out: Path
    photos: Dataset | None = None


class Evaluator:
    """MiFID of the generator's samples against the training set; remembers the best evaluation.

    Latents (untruncated N(0, 1): this measures the generator, not the generate stage's sampling settings)
    and labels (in proportion to the training set) are drawn once from ``seed``, so successive evaluations
    differ only by the generator. Scoring is the score stage's own ``score_images`` on cached statistics.
    """

    def __init__(self, network, stats, score_cfg: ScoreConfig, n_images: int, z_dim: int,
                 label_counts: list[int] | None, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.network, self.stats, self.score_cfg = network, stats, score_cfg
        self.z = torch.randn(n_images, z_dim, generator=g)
        self.y = sample_labels(n_images, label_counts, g) if label_counts is not None else None
        self.best_mifid, self.best_step = math.inf, -1

    @torch.no_grad()
    def images(self, G: nn.Module, device: torch.device, batch_size: int = 250) -> np.ndarray:
        """uint8 [eval_images, 64, 64, 3] from ``G`` (put in eval mode for the call)."""
        was_training = G.training
        G.eval()
        out = []
        for start in range(0, len(self.z), batch_size):
            y = self.y[start:start + batch_size].to(device) if self.y is not None else None
            out.append(to_pixels(G(self.z[start:start + batch_size].to(device), y)))
        G.train(was_training)
        return np.concatenate(out)

    def run(self, G: nn.Module, step: int, device: torch.device) -> dict:
        """Score ``G`` at ``step``: {"fid", "distance", "mifid", ..., "seconds", "best"} (best: lowest MiFID yet)."""
        from pipeline.metrics.scoring import score_images

        t0 = time.perf_counter()
        metrics = score_images(self.images(G, device), self.stats, self.network, self.score_cfg, device, progress=False)
        metrics["seconds"] = time.perf_counter() - t0
        metrics["best"] = metrics["mifid"] < self.best_mifid
        if metrics["best"]:
            self.best_mifid, self.best_step = metrics["mifid"], step
        return metrics

    def state(self) -> dict:
        return {"best_mifid": self.best_mifid, "best_step": self.best_step}

    def restore(self, state: dict | None) -> None:
        if state:
            self.best_mifid, self.best_step = float(state["best_mifid"]), int(state["best_step"])


def make_evaluator(ds: Dataset, cfg: TrainConfig, settings: EvalSettings, z_dim: int, n_classes: int,
                   device: torch.device, progress: bool) -> Evaluator:
    """Load the feature network and the reference statistics the score stage uses (from the cache when they match)."""
    from pipeline.metrics.features import load_network
    from pipeline.metrics.scoring import reference_statistics

    kind = settings.score.reference
    if kind == "photos" and settings.photos is None:
        raise ConfigError("score.reference is photos, so the in-training MiFID needs the photo reference: pass "
                          "--photos data/prepared/photos64.npz (written by `python -m pipeline.reference`), or set "
                          "score.reference: crops")
    reference = settings.photos if kind == "photos" else ds
    network = load_network(settings.score.network, settings.score.inception_weights)
    stats, reused = reference_statistics(reference.images, network, settings.cache_dir, kind,
                                         settings.score.batch_size, device, progress)
    print(f"in-training MiFID every {cfg.eval_every} steps on {cfg.eval_images} images, {network.name} network, "
          f"against {len(reference)} reference {kind}; reference statistics "
          f"{'reused from' if reused else 'computed into'} {settings.cache_dir}")
    counts = np.bincount(ds.labels, minlength=len(ds.breeds)).tolist() if n_classes else None
    return Evaluator(network, stats, settings.score, cfg.eval_images, z_dim, counts, seed=cfg.seed + 7919)


def rng_states(data: DeviceData) -> dict:
    """The generators a step draws from besides torch's CPU one (which the checkpoint keeps itself): the data
    set's (batches, fake labels) and, on a GPU, the device's (latents, real_noise, DiffAugment). Kept in the
    checkpoint so that --resume continues the same random streams instead of replaying them from the start."""
    cuda = data.device.type == "cuda"
    return {"data": data.generator.get_state(), "cuda": torch.cuda.get_rng_state(data.device) if cuda else None}


def restore_rng(ck: dict, data: DeviceData, cfg: TrainConfig, rt: Runtime, step: int) -> None:
    """Put back the random streams of checkpoint ``ck`` (see :func:`rng_states`). One process: exactly, so a
    resumed run draws what the uninterrupted run would have. Several: the checkpoint holds rank 0's streams
    only, so each rank starts new ones, distinct per rank and step (no replay of the first steps' batches)."""
    rng = ck["extra"].get("rng")
    if rt.world_size == 1 and rng is not None:
        torch.set_rng_state(ck["rng_cpu"])
        data.generator.set_state(rng["data"])
        if rng["cuda"] is not None and data.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], data.device)
        return
    seed = ((cfg.seed * 1_000_003 + step) * 1000 + rt.rank) % 2**63
    torch.manual_seed(seed)
    data.generator.manual_seed(seed)


def due(step: int, every: int, last: int) -> bool:
    """Whether something done every ``every`` steps (log, grid, evaluation) happens after step ``step``
    (1-based: the number of steps done); the last step ``last`` always counts."""
    return step % every == 0 or step == last


def out_of_time(elapsed: float, step_s: float, checkpoint_s: float, eval_s: float, budget_s: float) -> bool:
    """Whether to stop before the next step, in seconds: the run has used ``elapsed`` of ``budget_s``, and the
    next step, if taken, must still leave room for a slow step and the final checkpoint (each counted twice:
    times vary) and for the evaluation that step would start (``eval_s``, 0 when none is due)."""
    return elapsed + 2 * step_s + 2 * checkpoint_s + eval_s > budget_s


@dataclass
class Run:
    """One training run between its steps: the parts being trained, the data, where the outputs go and who
    logs. ``train`` drives it; its methods are what happens at the intervals of ``cfg`` (log, sample grid,
    evaluation, checkpoint). Only rank 0 has ``live``, ``samples_dir`` and ``ev``; the others train."""

    p: Parts
    cfg: TrainConfig
    rt: Runtime
    data: DeviceData
    out: Path  # the checkpoint
    breeds: list[str]
    label_counts: list[int]  # crops per breed, kept so generate draws breeds as often as training saw them
    steps: int  # total steps of the run: those of ``plan`` (0 until an ``epochs: auto`` run has one)
    step: int = 0  # steps done
    plan: Plan | None = None  # None only until an ``epochs: auto`` run is fitted to its budget
    grid: SampleGrid | None = None
    samples_dir: Path | None = None
    live: object = None  # dvclive's Live or the kernel's logger; None: no logging
    ev: Evaluator | None = None
    best_out: Path | None = None  # where the best checkpoint by MiFID goes (with ``ev``)
    last_eval: dict | None = None  # the latest evaluation's metrics
    # seconds, for the time budget: a step (moving average), the latest checkpoint, evaluation and sample grid
    step_s: float = 0.0
    checkpoint_s: float = 0.0
    eval_s: float = 0.0
    eval_total_s: float = 0.0
    grid_s: float = 0.0
    # a budgeted run's measured costs (rank 0's), and its steps in this process: their seconds as taken (periodic
    # work left out) and as the measured costs expected them, whose ratio tells how the speed has held up
    costs: Costs | None = None
    t_start: float = 0.0  # time.monotonic() when train() started: the budget counts from there
    taken_s: float = 0.0
    expected_s: float = 0.0
    steps_taken: int = 0

    @property
    def sampler(self) -> nn.Module:
        """The generator that draws grids and is scored: the EMA one when training keeps it."""
        return self.p.G_ema or unwrap(self.p.G)

    @property
    def stages(self) -> int:
        return growth_stages(self.p)

    def contents(self, evaluation: dict | None) -> dict:
        """What a checkpoint of this step holds: the arguments of ``checkpoint.save_checkpoint``."""
        p = self.p
        return dict(
            G=p.G, D=p.D, G_ema=p.G_ema, opt_g=p.opt_g, opt_d=p.opt_d, step=self.step, total_steps=self.steps,
            model=self.cfg.model, model_options=self.cfg.model_options, n_classes=p.n_classes, aux_classifier=p.aux,
            breeds=self.breeds, train_config={k: v for k, v in asdict(self.cfg).items() if k != "model_options"},
            extra={"label_counts": self.label_counts,
                   "plan": self.plan.as_dict() if self.plan else None,  # so that --resume continues it
                   "eval": evaluation,  # in-training MiFID: the best so far and this step's (None: off)
                   "rng": rng_states(self.data),
                   "world_size": self.rt.world_size},  # with batch_size, what one step means (for --resume)
        )

    def save(self, path: Path, evaluation: dict | None) -> None:
        save_checkpoint(path, **self.contents(evaluation))

    def checkpoint(self) -> None:
        """Write ``out``, timed for the budget. What it keeps of the evaluations: the best so far (for
        --resume) and the latest one's numbers."""
        t0 = time.monotonic()
        record = None
        if self.ev is not None:
            record = self.ev.state()
            if self.last_eval is not None:
                record["last"] = {k: self.last_eval[k] for k in ("fid", "distance", "mifid")}
        self.save(self.out, record)
        self.checkpoint_s = time.monotonic() - t0

    def log(self, losses: dict[str, torch.Tensor], images_per_s: float, bar) -> None:
        """Losses averaged over the ranks, to the progress bar and the logger."""
        logged = {k: self.rt.all_mean(v) for k, v in as_floats(losses).items()}
        bar.set_postfix(loss_d=f"{logged['loss_d']:.3f}", loss_g=f"{logged['loss_g']:.3f}", img_s=f"{images_per_s:.0f}")
        if self.live is not None:
            self.live.step = self.step
            for k, v in logged.items():
                self.live.log_metric(f"train/{k}", v)
            self.live.log_metric("train/images_per_s", images_per_s)

    def sample(self, log: bool = True) -> None:
        """The fixed-seed grid of this step into ``samples_dir`` (and to the logger), timed for the budget."""
        t0 = time.monotonic()
        picture = self.grid.render(self.sampler, f"{self.cfg.model} step {self.step}")
        save_png(sample_path(self.samples_dir, self.step), picture)
        if log and self.live is not None:
            self.live.log_image("samples.png", picture)
        self.grid_s = time.monotonic() - t0

    def evaluate(self, bar) -> None:
        """Score the sampling generator, log it, and write the best checkpoint when it is the best so far."""
        t0 = time.monotonic()
        metrics = self.ev.run(self.sampler, self.step, self.rt.device)
        if self.live is not None:
            self.live.step = self.step
            for key in ("fid", "distance", "mifid"):
                self.live.log_metric(f"eval/{key}", metrics[key])
        if metrics["best"]:
            self.save(self.best_out, {"step": self.step, "mifid": metrics["mifid"], "fid": metrics["fid"],
                                      "distance": metrics["distance"], **self.ev.state()})
        self.last_eval = metrics
        self.eval_s = time.monotonic() - t0
        self.eval_total_s += self.eval_s
        bar.write(f"step {self.step}: MiFID {metrics['mifid']:.4g} (FID {metrics['fid']:.4g}, "
                  f"d {metrics['distance']:.4f}){' best so far' if metrics['best'] else ''}, {self.eval_s:.1f} s")

    def eval_due(self, step: int) -> bool:
        return self.ev is not None and due(step, self.cfg.eval_every, self.steps)


def _resume(path: Path, p: Parts, cfg: TrainConfig, breeds: list[str], data: DeviceData, rt: Runtime) -> tuple[int, dict]:
    """Load the state of ``path`` into ``p``; returns the step it reached and the checkpoint's ``extra``."""
    ck = load_checkpoint(path, map_location="cpu")
    if ck["model"] != cfg.model or ck["n_classes"] != p.n_classes:
        raise CheckpointError(
            f"{path} holds a {ck['model']!r} model with {ck['n_classes']} classes, but params ask for "
            f"{cfg.model!r} with {p.n_classes}; remove the file or change the params to resume."
        )
    if list(ck["breeds"]) != list(breeds):
        raise CheckpointError(f"{path} was trained on other breeds than this data set; remove it to start afresh.")
    saved = dict(ck["model_options"], aux_classifier=ck["aux_classifier"])
    wanted = dict(asdict(cfg.model_options), aux_classifier=p.aux)
    changed = [f"{k}: {saved.get(k)!r} in the checkpoint, {wanted.get(k)!r} now" for k in sorted(set(saved) | set(wanted))
               if saved.get(k) != wanted.get(k)]
    if changed:
        raise CheckpointError(
            f"{path} was trained with other model settings ({'; '.join(changed)}). Put them back in params.yaml "
            "to resume (aux_classifier comes from train.aux_class_weight > 0), or remove the file to start afresh."
        )
    if ck["opt_g"] is None or ck["opt_d"] is None:
        raise CheckpointError(f"{path} has no optimizer states (a checkpoint for sampling only); it cannot be resumed.")
    # a step is one global batch (batch_size per process x processes): another global batch makes the saved
    # step count mean another number of images, so the run would see more or less data than its epochs say
    old_batch = ck["train_config"].get("batch_size")
    old_world = ck["extra"].get("world_size")  # None: a checkpoint from before it was kept
    if rt.is_main and (old_batch not in (None, cfg.batch_size) or old_world not in (None, rt.world_size)):
        def global_batch(batch, world) -> str:
            return f"batch {batch if batch is not None else '?'} x {world or '?'} process{'' if world == 1 else 'es'}"

        print(f"warning: {path} was trained at {global_batch(old_batch, old_world)}, this run uses "
              f"{global_batch(cfg.batch_size, rt.world_size)}: its {ck['step']} steps count as steps of the new "
              "global batch", file=sys.stderr)
    load_weights(unwrap(p.G), ck["G"], ck)
    load_weights(unwrap(p.D), ck["D"], ck)
    if p.G_ema is not None:
        load_weights(p.G_ema, ck["G_ema"] if ck["G_ema"] is not None else ck["G"], ck)
    try:
        p.opt_g.load_state_dict(ck["opt_g"])
        p.opt_d.load_state_dict(ck["opt_d"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: its optimizer states do not fit the model ({first_line(exc)}); "
                              "remove the file to start afresh.") from None
    restore_rng(ck, data, cfg, rt, int(ck["step"]))
    return int(ck["step"]), ck["extra"]


def start_run(ds: Dataset, cfg: TrainConfig, out: Path, rt: Runtime, *, resume: bool,
              samples_dir: Path | None, evaluation: EvalSettings | None, progress: bool) -> Run:
    """Build the models for ``ds``, put the data on the device, load the checkpoint with --resume and take its plan
    (see :func:`resumed_plan`); then set up what rank 0 writes: the evaluator (which scores from the step reached)
    and the sample folder (cleared of grids after that step). Logging starts once the run has its plan."""
    torch.manual_seed(cfg.seed + rt.rank)
    breeds = [str(b) for b in ds.breeds]
    data = DeviceData(ds, rt.device, cfg.seed * 1000 + rt.rank)
    p = build_parts(cfg, len(breeds), rt, steps_per_epoch=len(data) / (cfg.batch_size * rt.world_size))
    run = Run(p, cfg, rt, data, out, breeds, np.bincount(ds.labels, minlength=len(breeds)).tolist(), 0)
    asked = total_steps(cfg, len(data), rt.world_size)
    plan = epochs_plan(run, asked)
    extra = {}
    if resume and out.exists():
        run.step, extra = _resume(out, p, cfg, breeds, data, rt)
        plan = resumed_plan(run, extra.get("plan"), asked)
        if rt.is_main:
            left = plan is not None and run.step >= plan.steps
            print(f"resuming from {out} at step {run.step} of {plan.steps if plan else 'as many as fit the budget'}"
                  + ("; nothing left to train (raise train.epochs to train on)" if left else ""))
    if plan is not None:
        apply_plan(run, plan)
    if evaluation is not None and rt.is_main:
        run.best_out = evaluation.best_out
        if run.step == 0:
            evaluation.best_out.unlink(missing_ok=True)  # a fresh run: a best.pt of another run must not survive
        if cfg.eval_every > 0:
            run.ev = make_evaluator(ds, cfg, evaluation, unwrap(p.G).z_dim, p.n_classes, rt.device, progress)
            run.ev.restore((extra.get("eval") or {}) if run.step > 0 else None)
    run.grid = SampleGrid(unwrap(p.G).z_dim, p.n_classes, breeds, cfg.sample_breeds, rt.device, seed=cfg.seed)
    if rt.is_main:
        run.samples_dir = samples_dir
        if samples_dir and samples_dir.is_dir():
            drop_samples_after(samples_dir, run.step)
    return run


# ------------------------------------------------------------------------------------ the plan and the budget


class TimeBudgetError(ConfigError):
    """A time budget too small to train in at the speed measured."""


PROBE_STEPS = 3  # steps timed at each point where the speed is measured, after one that warms up (not timed)
SCALE_AFTER = 20  # steps taken before their speed may revise the measured one (fewer: too noisy to act on)


def epochs_plan(run: Run, asked: int | None) -> Plan | None:
    """The plan of the ``asked`` steps that ``train.epochs`` asks for, cut to whole cosine cycles (see
    :func:`plan.cosine_plan`); None for ``epochs: auto`` (:func:`plan_to_budget` makes it)."""
    if asked is None:
        return None
    return make_plan(asked, asked, False, run_cycle(run), at_least=run.stages)


def resumed_plan(run: Run, saved: dict | None, asked: int | None) -> Plan | None:
    """The plan a resumed run goes on with: the checkpoint's, when ``train.epochs`` and
    ``train.cosine_restart_epochs`` ask for what they asked then (the same run, budget-fitted or not); a new one of
    the steps asked for when they changed."""
    if saved is not None:
        plan = Plan.from_dict(saved)
        if plan.asked == asked and plan.lr_cycle == run_cycle(run):
            return plan
    return epochs_plan(run, asked)


def run_cycle(run: Run) -> int:
    """``train.cosine_restart_epochs`` in steps of this run (0: no restarts)."""
    return cycle_steps(run.cfg.cosine_restart_epochs, len(run.data) / (run.cfg.batch_size * run.rt.world_size))


def apply_plan(run: Run, plan: Plan) -> None:
    """Lay the run's schedules over ``plan``: growth over its steps, the cosine warm restarts at its period."""
    run.plan, run.steps = plan, plan.steps
    run.p.lr_period = plan.lr_period


@contextlib.contextmanager
def undone(p: Parts, data: DeviceData):
    """Inside: training steps that leave no trace. On leaving, the weights and buffers of G, D and G_ema, both
    optimizers' and loss scalers' states and the random streams are put back as they were on entering."""
    saved = copy.deepcopy({"G": unwrap(p.G).state_dict(), "D": unwrap(p.D).state_dict(),
                           "G_ema": p.G_ema.state_dict() if p.G_ema is not None else None,
                           "opt_g": p.opt_g.state_dict(), "opt_d": p.opt_d.state_dict(),
                           "scaler_g": p.scaler_g.state_dict(), "scaler_d": p.scaler_d.state_dict(),
                           "rng_cpu": torch.get_rng_state(), "rng": rng_states(data)})
    try:
        yield
    finally:
        unwrap(p.G).load_state_dict(saved["G"])  # a progressive model's stage comes back with its buffers
        unwrap(p.D).load_state_dict(saved["D"])
        if p.G_ema is not None:
            p.G_ema.load_state_dict(saved["G_ema"])
        p.opt_g.load_state_dict(saved["opt_g"])
        p.opt_d.load_state_dict(saved["opt_d"])
        p.scaler_g.load_state_dict(saved["scaler_g"])
        p.scaler_d.load_state_dict(saved["scaler_d"])
        torch.set_rng_state(saved["rng_cpu"])
        data.generator.set_state(saved["rng"]["data"])
        if saved["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(saved["rng"]["cuda"], data.device)


def probe_shares(stages: int) -> int:
    """How many equal shares of training the speed is measured in: one for a model that does not grow; two per
    stage for one that does. ProGAN grows in the first half of training: with one share per stage its 32x32 steps
    were timed as 16x16 ones, and the slowdown the run then saw was put on its 64x64 steps too, which shrank a
    10-minute plan to 72% of it; with two per stage each of its stages has a share's middle in it."""
    return 1 if stages <= 1 else 2 * stages


def measure_costs(run: Run) -> Costs:
    """Time the run's work before it starts, for its time budget: training steps in the middle of
    :func:`probe_shares` equal shares of training (:data:`PROBE_STEPS` at each after one that warms up, compiles
    or tunes; on the run's own models, then undone), a sample grid (rendered at the end of growth and encoded, not
    written) and a checkpoint (serialised in memory). Every process takes the steps (under DDP they synchronise);
    the grid and the checkpoint are rank 0's."""
    p, cfg, rt = run.p, run.cfg, run.rt
    n = probe_shares(run.stages)
    share_s = []
    grid_s = checkpoint_s = 0.0
    with undone(p, run.data):
        for share in range(n):
            set_progress(p, (share + 0.5) / n)  # however the model lays its stages over training
            train_step(p, run.data, cfg, rt, run.step)
            rt.synchronize()
            t0 = time.monotonic()
            for _ in range(PROBE_STEPS):
                train_step(p, run.data, cfg, rt, run.step)
            rt.synchronize()
            share_s.append((time.monotonic() - t0) / PROBE_STEPS)
        if rt.is_main and run.samples_dir:
            t0 = time.monotonic()
            png_bytes(run.grid.render(run.sampler, f"{cfg.model} step {run.step}"))
            grid_s = time.monotonic() - t0
    if rt.is_main:
        t0 = time.monotonic()
        torch.save(checkpoint_payload(**run.contents(None)), io.BytesIO())
        checkpoint_s = time.monotonic() - t0
    run.checkpoint_s = max(run.checkpoint_s, checkpoint_s)  # the last-resort stop counts it from the start
    return Costs(tuple(share_s), grid_s=grid_s, checkpoint_s=checkpoint_s,
                 sample_every=cfg.sample_every if run.samples_dir else 0, checkpoint_every=cfg.checkpoint_every,
                 eval_every=cfg.eval_every if run.ev is not None else 0,
                 gif_frames=GIF_MAX_FRAMES if run.samples_dir else 0)


def current_costs(run: Run) -> Costs:
    """The measured costs revised by what the run has seen since: the time its steps took beyond the measured
    (once there are :data:`SCALE_AFTER` of them; as seconds per step on top, see ``plan.Costs``), the latest
    checkpoint, grid and evaluation (an evaluation's time is known only after the first)."""
    c = run.costs
    extra = c.extra_s
    if run.steps_taken >= SCALE_AFTER:
        extra = max(0.0, (run.taken_s - run.expected_s) / run.steps_taken)
    return replace(c, extra_s=extra, checkpoint_s=max(c.checkpoint_s, run.checkpoint_s), grid_s=max(c.grid_s, run.grid_s),
                   eval_s=run.eval_s, recent_step_s=run.step_s)


def plan_to_budget(run: Run, budget_s: float) -> None:
    """Measure the run's speed and, where the steps planned (none yet for ``epochs: auto``) would not fit in what is
    left of ``budget_s`` seconds since ``run.t_start``, plan the steps that do. Every process takes rank 0's plan.
    Raises :class:`TimeBudgetError` when the budget holds no step, or fewer than one per growth stage."""
    rt = run.rt
    run.costs = measure_costs(run)
    limit = run.plan.steps if run.plan is not None else None
    need = max(run.stages, run.step + 1)  # a step per growth stage, and one more than done already ...
    need = min(need, limit) if limit is not None else need  # ... unless the epochs ask for fewer
    fit = elapsed_s = 0.0
    if rt.is_main:
        elapsed_s = time.monotonic() - run.t_start
        fit = fit_steps(budget_s - elapsed_s, run.step, limit, run.costs)
    fit, elapsed_s, step_s = rt.from_main([fit, elapsed_s, run.costs.step_s])
    fit = int(fit)
    if fit < need:
        raise TimeBudgetError(budget_error(run, budget_s, elapsed_s, step_s, need))
    asked = run.plan.asked if run.plan is not None else None
    fitted = limit is None or fit < limit
    if fitted:
        apply_plan(run, make_plan(fit, asked, True, run_cycle(run), at_least=need))
    if rt.is_main:
        told = f"{step_s:.3g} s a step as measured"
        if not fitted:
            print(f"time budget {budget_s / 60:.4g} min, {told}: the {run.steps - run.step:,} steps left fit")
        else:
            of = (f"of the {asked:,} that train.epochs {run.cfg.epochs:g} asks for" if asked is not None
                  else "for train.epochs auto")
            print(f"time budget {budget_s / 60:.4g} min, {told}: planned {run.steps:,} steps "
                  f"({run_epochs(run, run.steps):g} epochs) {of}; growth and learning-rate cycles are laid over them")


def budget_error(run: Run, budget_s: float, elapsed_s: float, step_s: float, need: int) -> str:
    """Why the budget holds too few steps, with the numbers."""
    what = (f"{need} steps, one per stage that {run.cfg.model} grows through" if run.stages > 1 and need == run.stages
            else "one more step" if run.step > 0 else "a single step")
    return (f"the time budget of {budget_s / 60:.4g} min ({budget_s:.3g} s, train.time_budget_min) is too small for "
            f"{what}: {elapsed_s:.3g} s went to setting up and measuring the speed, a step takes {step_s:.3g} s as "
            "measured, and the final checkpoint and the room the budget's last-resort stop keeps come on top. Raise "
            "train.time_budget_min, or set it to 0 for no budget.")


def replan(run: Run, budget_s: float) -> None:
    """Shrink the plan when what is left of it would no longer fit in the budget at the speed seen so far (the
    steps slower than measured, the first evaluation's time now known), to the steps that do; never grow it, so
    that progress never goes backwards. Every process takes rank 0's decision."""
    rt = run.rt
    steps = run.steps
    if rt.is_main:
        costs = current_costs(run)
        left = budget_s - (time.monotonic() - run.t_start)
        if not fits(left, run.step, steps, costs, margin=0.0):  # behind the plan's margin, not merely into it
            steps = max(fit_steps(left, run.step, steps, costs), run.step + 1)
    steps = int(rt.from_main([steps])[0])
    if steps < run.steps:
        apply_plan(run, make_plan(steps, run.plan.asked, True, run_cycle(run), at_least=run.step + 1))
        steps = run.steps
        if rt.is_main:
            print(f"time budget: re-planned to {steps:,} steps ({run_epochs(run, steps):g} epochs) at step "
                  f"{run.step:,}: the steps, evaluations and checkpoints so far took longer than measured",
                  file=sys.stderr)


def replan_due(run: Run) -> bool:
    """Whether to check the plan after this step: after a logged step, an evaluation or a checkpoint (the same
    steps in every process)."""
    cfg, step = run.cfg, run.step
    return (due(step, cfg.log_every, run.steps) or step % cfg.checkpoint_every == 0
            or (cfg.eval_every > 0 and step % cfg.eval_every == 0))


def run_epochs(run: Run, steps: int) -> float:
    """``steps`` of this run in epochs (passes over its data set)."""
    return steps_to_epochs(steps, len(run.data), run.cfg.batch_size, run.rt.world_size)


def train(
    ds: Dataset,
    cfg: TrainConfig,
    out: Path,
    rt: Runtime,
    *,
    resume: bool = False,
    live_dir: Path | None = None,
    logger=None,
    samples_dir: Path | None = None,
    evaluation: EvalSettings | None = None,
    progress: bool = True,
) -> dict:
    """The stage's core. Trains the steps of the run's plan: what ``cfg.epochs`` asks for, or with a time budget
    (``cfg.time_budget_min``) what fits in it, measured before training (:func:`plan_to_budget`); the budget's
    last-resort stop (:func:`out_of_time`) ends a run whose plan turned out too long after all.

    Numbers are logged with dvclive into ``live_dir``, or into ``logger`` when given: any object with
    dvclive's ``step`` attribute, ``log_metric(name, value)``, ``log_image(name, picture)``, ``summary``
    dict and ``end()`` (the Kaggle kernel, which has no dvclive, passes one). Only rank 0 logs.

    ``evaluation`` (and ``cfg.eval_every > 0``): MiFID every ``eval_every`` steps and at the end, the best
    checkpoint in ``evaluation.best_out``. Returns a summary: steps done and planned, epochs done and planned,
    whether the plan was fitted to the budget and whether the budget stopped it, images/s (real images read by
    D: batch_size x d_steps per step and process), last losses, and the best MiFID and its step when evaluating.
    Raises ConfigError for ``epochs: auto`` without a budget, :class:`TimeBudgetError` for a budget too small,
    before any checkpoint is written.
    """
    t_start = time.monotonic()
    epochs_need_budget(cfg)
    run = start_run(ds, cfg, out, rt, resume=resume, samples_dir=samples_dir, evaluation=evaluation,
                    progress=progress)
    run.t_start = t_start
    budget_s = cfg.time_budget_min * 60 if cfg.time_budget_min > 0 else math.inf
    if budget_s < math.inf and (run.plan is None or run.step < run.steps):
        plan_to_budget(run, budget_s)
    if rt.is_main:
        if samples_dir and (warning := sample_grid_warning(run.steps, cfg.sample_every)):
            print(f"warning: {warning}", file=sys.stderr)
        run.live = logger if logger is not None else _open_live(live_dir, resume and run.step > 0) if live_dir else None
    bar = tqdm(total=run.steps, initial=run.step, desc=f"train {cfg.model}", unit="step",
               disable=not (progress and rt.is_main))
    stopped_by_budget = False
    images_seen, t_loop, last = 0, time.monotonic(), {}
    try:
        while run.step < run.steps:
            # the evaluation the next step would end with, the last step's included (it scores the final G)
            next_eval_s = run.eval_s if run.eval_due(run.step + 1) else 0.0
            over = out_of_time(time.monotonic() - t_start, run.step_s, run.checkpoint_s, next_eval_s, budget_s)
            # under DDP every rank must stop at the same step (else the others wait in a collective forever);
            # the checkpoint and evaluation times are rank 0's, so the ranks ask each other: only with a budget
            if budget_s < math.inf and rt.any_process(over):
                stopped_by_budget = True
                break
            t0 = time.monotonic()
            set_progress(run.p, run.step / run.steps)
            last = train_step(run.p, run.data, cfg, rt, run.step)
            run.step += 1
            took = time.monotonic() - t0
            run.step_s = 0.9 * run.step_s + 0.1 * took if run.step_s else took
            images_seen += cfg.batch_size * cfg.d_steps * rt.world_size
            bar.update(1)
            if due(run.step, cfg.log_every, run.steps):
                run.log(last, images_seen / max(1e-9, time.monotonic() - t_loop), bar)
            if run.costs is not None:  # the step as taken (logging included), and as the measured costs expect it
                run.taken_s += time.monotonic() - t0
                run.expected_s += run.costs.share_s[share_at(run.step - 1, run.steps, len(run.costs.share_s))]
                run.steps_taken += 1
            if run.samples_dir and due(run.step, cfg.sample_every, run.steps):
                run.sample()
            if run.eval_due(run.step):
                run.evaluate(bar)
            if rt.is_main and run.step % cfg.checkpoint_every == 0 and run.step < run.steps:
                run.checkpoint()
            if run.costs is not None and run.step < run.steps and replan_due(run):
                replan(run, budget_s)
                bar.total = run.steps
    finally:
        bar.close()
    set_progress(run.p, min(1.0, run.step / run.steps))
    if rt.is_main:
        run.checkpoint()
        if run.samples_dir:
            if stopped_by_budget and run.step % cfg.sample_every != 0:  # stopped between grids: where it stopped
                run.sample(log=False)
            write_progress(run.samples_dir)
    rt.barrier()
    summary = {
        "steps": run.step,
        "total_steps": run.steps,
        "epochs_asked": cfg.epochs,
        "planned_epochs": run_epochs(run, run.steps),
        "epochs_done": run_epochs(run, run.step),
        "fitted_to_budget": run.plan.fitted,
        "stopped_by_time_budget": stopped_by_budget,
        "seconds": round(time.monotonic() - t_start, 1),
        "images_per_s": round(images_seen / max(1e-9, time.monotonic() - t_loop), 1),
        "device": str(rt.device),
        "precision": rt.precision,
        "world_size": rt.world_size,
        **{k: round(v, 4) for k, v in as_floats(last).items()},
    }
    if run.ev is not None:
        summary.update(best_mifid=run.ev.best_mifid, best_step=run.ev.best_step, eval_seconds=round(run.eval_total_s, 1))
    if run.live is not None:
        for k in ("steps", "images_per_s", "planned_epochs", "epochs_done", "fitted_to_budget"):
            run.live.summary[k] = summary[k]
        # dvclive's end() takes its step from the summary, which a resumed Live read from the killed run's files
        run.live.summary["step"] = run.live.step = run.step
        run.live.end()
    return summary


def summary_line(summary: dict) -> str:
    """What a run did, in a line: steps and epochs done of those planned, whether the plan was fitted to the time
    budget and whether the budget's last-resort stop ended it, time and speed."""
    fitted = ", fitted to the time budget" if summary["fitted_to_budget"] else ""
    stopped = " (stopped by the time budget)" if summary["stopped_by_time_budget"] else ""
    return (f"{summary['steps']}/{summary['total_steps']} steps ({summary['epochs_done']:g} of "
            f"{summary['planned_epochs']:g} planned epochs{fitted}){stopped} in {summary['seconds']} s, "
            f"{summary['images_per_s']} images/s on {summary['device']} ({summary['precision']})")


def _open_live(live_dir: Path, resume: bool):
    """dvclive logger; imported lazily so the kernel (no dvclive on Kaggle) can train without it."""
    try:
        from dvclive import Live
    except ImportError:
        print("note: dvclive is not installed; losses are not logged", file=sys.stderr)
        return None
    return Live(str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.train",
        description="Train the GAN that params.yaml names (train.model) on the prepared data set and write one "
        "self-contained checkpoint. Runs on the CPU, one GPU, or several under `torchrun -m pipeline.train`.",
    )
    parser.add_argument("--data", required=True, metavar="FILE.npz", help="prepared data set (pipeline.prepare)")
    parser.add_argument("--out", required=True, metavar="CHECKPOINT", help="checkpoint to write (e.g. models/checkpoint.pt)")
    parser.add_argument("--live", metavar="DIR", help="dvclive folder for losses and sample grids (e.g. dvclive)")
    parser.add_argument("--samples", metavar="DIR", help="folder for the fixed-seed sample grids (step_NNNNNNN.png)")
    parser.add_argument("--best", metavar="CHECKPOINT",
                        help="where the best checkpoint by in-training MiFID goes (train.eval_every > 0; "
                        "default: best.pt beside --out)")
    parser.add_argument("--cache", default="data/reference", metavar="DIR",
                        help="cache of the reference statistics for the in-training MiFID, shared "
                        "with the score stage (default: %(default)s)")
    parser.add_argument("--photos", metavar="FILE.npz",
                        help="the photo reference (pipeline.reference), for the in-training MiFID when "
                        "score.reference is photos (with crops the reference is --data)")
    parser.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser, "train")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args, "train")
        epochs_need_budget(cfg)
        # MiFID during training (train.eval_every > 0): the score section says how to score
        score_cfg = load_config("score", args.params)
        photos = None
        if cfg.eval_every > 0 and score_cfg.reference == "photos":  # loaded now: a missing file fails before training
            from pipeline.reference_set import load_reference

            photos = load_reference("photos", args.photos, None)
        evaluation = EvalSettings(score_cfg, Path(args.cache),
                                  Path(args.best) if args.best else Path(args.out).with_name("best.pt"), photos)
        ds = load_dataset(args.data)
        require_competition_size(ds, args.data, "training (every model generates 64x64 images)")
        # before any training: a checkpoint path that cannot be written would otherwise lose the whole run
        ensure_writable(args.out)
        rt = setup_runtime(cfg.precision, cfg.channels_last, args.device)
    except (ConfigError, ValueError, OSError, RuntimeError) as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    try:
        summary = train(
            ds, cfg, Path(args.out), rt, resume=args.resume,
            live_dir=Path(args.live) if args.live else None,
            samples_dir=Path(args.samples) if args.samples else None,
            evaluation=evaluation, progress=not args.no_progress,
        )
    # OSError: a sample grid or dvclive folder that cannot be written, a full disk; TimeBudgetError (a ConfigError):
    # a budget too small for the speed measured
    except (CheckpointError, ConfigError, FeatureNetworkError, OSError) as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    finally:
        rt.close()
    if rt.is_main:
        print(f"train: {summary_line(summary)}; wrote {args.out}")
        if summary.get("best_step", -1) >= 0:
            print(f"best in-training MiFID {summary['best_mifid']:.4g} at step {summary['best_step']} "
                  f"(evaluations took {summary['eval_seconds']} s); in {evaluation.best_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
