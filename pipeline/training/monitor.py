"""What a training run shows of itself: fixed-seed sample grids (and the GIF of them all), and MiFID scored
during training as the score stage scores (the best checkpoint kept)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from pipeline.config import ConfigError, ScoreConfig, TrainConfig
from pipeline.files import TMP_MARK, Dataset
from pipeline.images import even_subsample, image_grid, save_gif, save_png
from pipeline.models import to_pixels
from pipeline.sampling import sample_labels


# ------------------------------------------------------------------------------------------------ sample grids


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
