"""Stage ``train``: the prepared data set -> one self-contained checkpoint.

    python -m pipeline.train --data data/prepared/dogs64.npz --out models/checkpoint.pt
    torchrun --nproc_per_node 4 -m pipeline.train ...        # several GPUs, same command

Trains the model that ``params.yaml`` names (``train.model``), on the CPU, one GPU or several.
The data set is small (22k x 64 x 64 x 3 bytes), so it lives in memory on the training device and
batches are drawn there, with no DataLoader. Losses go to dvclive (``dvc plots show``), a fixed-seed
sample grid is written every ``sample_every`` steps, and the checkpoint every ``checkpoint_every``
steps and at the end; ``--resume`` continues a killed run from its last checkpoint. With
``train.eval_every > 0`` the EMA generator's samples are scored with MiFID against the training set every
that many steps (the network and eps of the ``score`` section, reference statistics cached as the score
stage caches them), the numbers go to dvclive, and the best checkpoint by MiFID is kept in ``--best``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn.utils import parametrize
from tqdm import tqdm

from pipeline.augment import diff_augment, random_hflip
from pipeline.checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from pipeline.config import (ConfigError, ScoreConfig, TrainConfig, add_config_arguments, config_from_args, load_config,
                             sample_grid_warning)
from pipeline.ema import ema_decay_at, ema_update, make_ema
from pipeline.errors import error_text, first_line
from pipeline.files import TMP_MARK, Dataset, ensure_writable, load_dataset, require_competition_size
from pipeline.images import even_subsample, image_grid, save_gif, save_png
from pipeline.losses import class_loss, get_loss
from pipeline.metrics.features import FeatureNetworkError
from pipeline.models import build_model, to_pixels
from pipeline.models.layers import cached_spectral_norms
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
    sched_g: torch.optim.lr_scheduler.LRScheduler | None
    sched_d: torch.optim.lr_scheduler.LRScheduler | None
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    n_classes: int
    aux: bool
    # D normalises over its batch (batch norm): the D step passes real and fake through it apart
    d_batch_dependent: bool = False
    # The same G and D for the calls that must not synchronise gradients across processes (G under
    # no_grad in the D step, D as a critic in the G step): compiled when train.compile is on, never
    # wrapped in DDP. Without torch.compile and DDP they are G and D themselves.
    G_local: nn.Module | None = None
    D_local: nn.Module | None = None

    def __post_init__(self):
        self.G_local = self.G if self.G_local is None else self.G_local
        self.D_local = self.D if self.D_local is None else self.D_local


def total_steps(cfg: TrainConfig, n_images: int, world_size: int = 1) -> int:
    """G updates for ``cfg.epochs`` passes over ``n_images`` at ``batch_size`` per process."""
    return max(1, math.ceil(cfg.epochs * n_images / (cfg.batch_size * world_size)))


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


def build_parts(cfg: TrainConfig, n_breeds: int, rt: Runtime, steps_per_epoch: float) -> Parts:
    n_classes = n_breeds if cfg.conditional else 0
    aux = cfg.aux_class_weight > 0 and n_classes > 0
    G, D = build_model(cfg.model, cfg.model_options, n_classes, aux)
    G, D = rt.prepare_module(G), rt.prepare_module(D)
    G_ema = make_ema(G) if cfg.ema_decay > 0 else None
    opt_g = adam(G.parameters(), cfg.lr_g, (cfg.beta1, cfg.beta2))
    opt_d = adam(D.parameters(), cfg.lr_d, (cfg.beta1, cfg.beta2))
    sched_g = sched_d = None
    if cfg.cosine_restart_epochs > 0:  # 3rd place: cosine annealing with warm restarts
        period = max(1, round(cfg.cosine_restart_epochs * steps_per_epoch))
        sched_g = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt_g, T_0=period)
        sched_d = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt_d, T_0=period)
    def compiled(m: nn.Module) -> nn.Module:
        return torch.compile(m, mode=cfg.compile_mode) if cfg.compile else m

    if cfg.compile:
        compile_room(G, D, variants=3 if get_loss(cfg.loss).g_uses_real else 2)

    G_local, D_local = compiled(G), compiled(D)
    if rt.distributed:  # the gradient-synchronised copies: compile(DDP(model)), as torch.compile expects
        G, D = compiled(rt.wrap(G)), compiled(rt.wrap(D))
    else:
        G, D = G_local, D_local
    return Parts(G, D, G_ema, opt_g, opt_d, sched_g, sched_d, rt.grad_scaler(), rt.grad_scaler(), n_classes, aux,
                 has_batch_norm(D_local), G_local, D_local)


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` has a layer that normalises over the batch (BatchNorm*, SyncBatchNorm)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in unwrap(model).modules())


def set_progress(p: Parts, fraction: float) -> None:
    """Tell progressive models how far training is (others have no ``set_progress``)."""
    for m in (p.G, p.D, p.G_ema):
        if m is not None and hasattr(unwrap(m), "set_progress"):
            unwrap(m).set_progress(fraction)


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

    step: the steps already done (0-based); the EMA's warm-up reads it (``ema.ema_decay_at``), so a loop of
    its own must pass it: left at 0, the decay would stay at step 0's 0.1, and G_ema would be nearly a copy of G
    rather than an average.

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
    for s in (p.sched_g, p.sched_d):
        if s is not None:
            s.step()
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
    """How to score during training: the ``score`` section (network, weights, eps, batch size), where the
    reference statistics are cached (shared with the score stage) and where the best checkpoint goes."""

    score: ScoreConfig
    cache_dir: Path
    best_out: Path


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
    """Load the feature network and the training set's reference statistics (from the cache when they match)."""
    from pipeline.metrics.features import load_network
    from pipeline.metrics.scoring import reference_statistics

    network = load_network(settings.score.network, settings.score.inception_weights)
    stats, reused = reference_statistics(ds.images, network, settings.cache_dir, settings.score.batch_size, device,
                                         progress)
    print(f"in-training MiFID every {cfg.eval_every} steps on {cfg.eval_images} images, {network.name} network; "
          f"reference statistics {'reused from' if reused else 'computed into'} {settings.cache_dir}")
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
    steps: int  # total steps of the run
    step: int = 0  # steps done
    grid: SampleGrid | None = None
    samples_dir: Path | None = None
    live: object = None  # dvclive's Live or the kernel's logger; None: no logging
    ev: Evaluator | None = None
    best_out: Path | None = None  # where the best checkpoint by MiFID goes (with ``ev``)
    last_eval: dict | None = None  # the latest evaluation's metrics
    # seconds, for the time budget: a step (moving average), the latest checkpoint and evaluation
    step_s: float = 0.0
    checkpoint_s: float = 0.0
    eval_s: float = 0.0
    eval_total_s: float = 0.0

    @property
    def sampler(self) -> nn.Module:
        """The generator that draws grids and is scored: the EMA one when training keeps it."""
        return self.p.G_ema or unwrap(self.p.G)

    def save(self, path: Path, evaluation: dict | None) -> None:
        p = self.p
        save_checkpoint(
            path, G=p.G, D=p.D, G_ema=p.G_ema, opt_g=p.opt_g, opt_d=p.opt_d, step=self.step, total_steps=self.steps,
            model=self.cfg.model, model_options=self.cfg.model_options, n_classes=p.n_classes, aux_classifier=p.aux,
            breeds=self.breeds, train_config={k: v for k, v in asdict(self.cfg).items() if k != "model_options"},
            extra={"label_counts": self.label_counts,
                   "sched_g": p.sched_g.state_dict() if p.sched_g else None,
                   "sched_d": p.sched_d.state_dict() if p.sched_d else None,
                   "eval": evaluation,  # in-training MiFID: the best so far and this step's (None: off)
                   "rng": rng_states(self.data),
                   "world_size": self.rt.world_size},  # with batch_size, what one step means (for --resume)
        )

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
        """The fixed-seed grid of this step into ``samples_dir`` (and to the logger)."""
        picture = self.grid.render(self.sampler, f"{self.cfg.model} step {self.step}")
        save_png(sample_path(self.samples_dir, self.step), picture)
        if log and self.live is not None:
            self.live.log_image("samples.png", picture)

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
    for name, s in (("sched_g", p.sched_g), ("sched_d", p.sched_d)):
        if s is not None and ck["extra"].get(name):
            s.load_state_dict(ck["extra"][name])
    restore_rng(ck, data, cfg, rt, int(ck["step"]))
    return int(ck["step"]), ck["extra"]


def start_run(ds: Dataset, cfg: TrainConfig, out: Path, rt: Runtime, *, resume: bool, live_dir: Path | None, logger,
              samples_dir: Path | None, evaluation: EvalSettings | None, progress: bool) -> Run:
    """Build the models for ``ds``, put the data on the device, and load the checkpoint with --resume; then set
    up what rank 0 writes: the evaluator (which scores from the step reached), the sample folder (cleared of
    grids after that step) and the logger."""
    torch.manual_seed(cfg.seed + rt.rank)
    breeds = [str(b) for b in ds.breeds]
    data = DeviceData(ds, rt.device, cfg.seed * 1000 + rt.rank)
    steps = total_steps(cfg, len(data), rt.world_size)
    p = build_parts(cfg, len(breeds), rt, steps_per_epoch=len(data) / (cfg.batch_size * rt.world_size))
    run = Run(p, cfg, rt, data, out, breeds, np.bincount(ds.labels, minlength=len(breeds)).tolist(), steps)
    if rt.is_main and samples_dir and (warning := sample_grid_warning(steps, cfg.sample_every)):
        print(f"warning: {warning}", file=sys.stderr)
    extra = {}
    if resume and out.exists():
        run.step, extra = _resume(out, p, cfg, breeds, data, rt)
        if rt.is_main:
            print(f"resuming from {out} at step {run.step} of {steps}"
                  + ("; nothing left to train (raise train.epochs to train on)" if run.step >= steps else ""))
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
        run.live = logger if logger is not None else _open_live(live_dir, resume and run.step > 0) if live_dir else None
    return run


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
    """The stage's core. Trains until ``cfg.epochs`` are done or the time budget says stop.

    Numbers are logged with dvclive into ``live_dir``, or into ``logger`` when given: any object with
    dvclive's ``step`` attribute, ``log_metric(name, value)``, ``log_image(name, picture)``, ``summary``
    dict and ``end()`` (the Kaggle kernel, which has no dvclive, passes one). Only rank 0 logs.

    ``evaluation`` (and ``cfg.eval_every > 0``): MiFID every ``eval_every`` steps and at the end, the best
    checkpoint in ``evaluation.best_out``. Returns a summary: steps done, whether stopped by the budget,
    images/s (real images read by D: batch_size x d_steps per step and process), last losses, and the best
    MiFID and its step when evaluating.
    """
    t_start = time.monotonic()
    run = start_run(ds, cfg, out, rt, resume=resume, live_dir=live_dir, logger=logger, samples_dir=samples_dir,
                    evaluation=evaluation, progress=progress)
    budget_s = cfg.time_budget_min * 60 if cfg.time_budget_min > 0 else math.inf
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
            if run.samples_dir and due(run.step, cfg.sample_every, run.steps):
                run.sample()
            if run.eval_due(run.step):
                run.evaluate(bar)
            if rt.is_main and run.step % cfg.checkpoint_every == 0 and run.step < run.steps:
                run.checkpoint()
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
        for k in ("steps", "images_per_s"):
            run.live.summary[k] = summary[k]
        # dvclive's end() takes its step from the summary, which a resumed Live read from the killed run's files
        run.live.summary["step"] = run.live.step = run.step
        run.live.end()
    return summary


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
                        help="cache of the training set's reference statistics for the in-training MiFID, shared "
                        "with the score stage (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser, "train")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args, "train")
        # MiFID during training (train.eval_every > 0): the score section says how to score
        evaluation = EvalSettings(load_config("score", args.params), Path(args.cache),
                                  Path(args.best) if args.best else Path(args.out).with_name("best.pt"))
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
    # OSError: a sample grid or dvclive folder that cannot be written, a full disk
    except (CheckpointError, FeatureNetworkError, OSError) as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    finally:
        rt.close()
    if rt.is_main:
        budget = " (stopped by the time budget)" if summary["stopped_by_time_budget"] else ""
        print(f"train: {summary['steps']}/{summary['total_steps']} steps{budget} in {summary['seconds']} s, "
              f"{summary['images_per_s']} images/s on {summary['device']} ({summary['precision']}); wrote {args.out}")
        if summary.get("best_step", -1) >= 0:
            print(f"best in-training MiFID {summary['best_mifid']:.4g} at step {summary['best_step']} "
                  f"(evaluations took {summary['eval_seconds']} s); in {evaluation.best_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
