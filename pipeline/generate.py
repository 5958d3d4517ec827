"""Stage ``generate``: a checkpoint -> ``images.zip`` of 64x64 RGB PNGs, ready to submit.

    python -m pipeline.generate --checkpoint models/checkpoint.pt --out submissions/images.zip

Samples the EMA generator (when the checkpoint has one) with the truncation trick, conditional
models drawing breeds in proportion to the training set (or uniformly, or one ``--breed``), and
writes the PNGs straight into the zip (no 10,000 loose files; Kaggle allowed at most 500 outputs),
atomically. The same ``--seed`` on the same machine gives a byte-identical zip. A grid PNG of the
first images is written beside it.

    python -m pipeline.generate --checkpoint models/checkpoint.pt --walk submissions/walk.gif

``--walk`` writes an animated GIF of latent walks (and, for conditional models, breed walks; see
``pipeline.walks``), with or without ``--out``: a quick look for mode collapse and memorization.
"""

from __future__ import annotations

import argparse
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.checkpoint import CheckpointError, generator_from, load_checkpoint, samples_ema
from pipeline.config import ConfigError, GenerateConfig, add_config_arguments, config_from_args, option_overrides
from pipeline.errors import error_text
from pipeline.files import atomic_path
from pipeline.images import codec_threads, image_grid, png_bytes, save_gif, save_png
from pipeline.models import to_pixels
from pipeline.models.layers import cached_spectral_norms
from pipeline.phases import Phases, record, run_phases
from pipeline.runtime import pick_device
from pipeline.sampling import label_weights, sample_labels, truncated_normal
from pipeline.walks import plan_walks, render_walk

WALK_KEYS = 4  # key points of each walk (3 stretches)
WALK_FRAMES_PER_KEY = 8  # frames from one key point to the next: (4 - 1) * 8 + 1 = 25 frames (about 1 MB)
WALK_COLUMNS = 8  # walks side by side in each of the two rows
WALK_FRAME_MS = 80
WALK_HOLD_MS = 1000  # the last frame, before the loop restarts

ZIP_DATE = (2019, 8, 14, 0, 0, 0)  # a fixed timestamp for every member: same inputs, same bytes


@torch.no_grad()
def generate_images(G: torch.nn.Module, n: int, z_dim: int, weights: np.ndarray | None, truncation: float,
                    seed: int, batch_size: int, device: torch.device, progress: bool = True,
                    precision: str = "fp32", phases: Phases | None = None):
    """Yield uint8 [B, 64, 64, 3] batches, ``n`` images in all, from ``G`` (in eval mode).

    The latents and labels are drawn on the CPU from ``seed``, so they do not depend on the device.
    ``precision`` bf16 runs G under bf16 autocast: much faster on a CPU with AMX (Sapphire Rapids and newer),
    pixels within a few levels of fp32's (BENCHMARKS.md); fp32 elsewhere.
    ``phases``: where the time goes (None: not recorded); the consumer's time between batches is not counted.
    """
    with record(phases, "latents and labels"):
        gen = torch.Generator().manual_seed(seed)
        z_all = truncated_normal((n, z_dim), truncation, gen)
        y_all = sample_labels(n, weights, gen) if weights is not None else None
    # channels_last: oneDNN's convolutions on a CPU run 8% (fp32) to 15% (bf16) faster with it, as cuDNN's do
    G.eval().to(memory_format=torch.channels_last)
    # the weights do not change while sampling: each spectral norm is evaluated once, not once per batch
    # (the 1st-place BigGAN: 122 operators per batch instead of 224, i.e. fewer kernel launches on a GPU)
    with tqdm(total=n, desc="generate", unit="img", disable=not progress) as bar, cached_spectral_norms(G):
        for start in range(0, n, batch_size):
            # on a GPU this includes waiting for the batch: .cpu() synchronises
            with record(phases, "generator: forward, pixels to the host"):
                z = z_all[start:start + batch_size].to(device)
                y = y_all[start:start + batch_size].to(device) if y_all is not None else None
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    images = G(z, y)
                pixels = to_pixels(images)
            bar.update(len(pixels))
            yield pixels


def write_zip(path: Path, batches, n: int, phases: Phases | None = None) -> np.ndarray:
    """Write every image of ``batches`` (uint8 [B, 64, 64, 3] arrays, ``n`` images in all) as ``NNNNN.png``
    into the zip at ``path`` (atomically).

    Returns the first (up to) 64 images for the grid, uint8 [<=64, 64, 64, 3]. PNGs are already compressed, so they are stored.
    A batch's PNGs are encoded on threads (see codec_threads) while the next batch is generated: on a GPU
    the generator and the host's encoding then overlap instead of taking turns. ``phases``: where the time
    goes (waiting for the encoder threads, writing the zip; None: not recorded).
    """
    first = []
    written = 0

    def flush(pixels, encoded) -> None:
        nonlocal written
        for image, future in zip(pixels, encoded):
            with record(phases, "PNG: wait for the encoder threads"):
                data = future.result()
            with record(phases, "zip: write members"):
                z.writestr(zipfile.ZipInfo(f"{written:05d}.png", date_time=ZIP_DATE), data)
            if len(first) < 64:
                first.append(image)
            written += 1

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z, \
            codec_threads() as pool:
        pending = None
        for pixels in batches:  # drawing the next batch from the generator runs G
            encoding = [pool.submit(png_bytes, image) for image in pixels]
            if pending is not None:
                flush(*pending)
            pending = (pixels, encoding)
        if pending is not None:
            flush(*pending)
        if written != n:
            raise RuntimeError(f"generated {written} images, expected {n}")
    return np.stack(first)


def write_submission(ck: dict, G: torch.nn.Module, cfg: GenerateConfig, n: int, seed: int, weights: np.ndarray | None,
                     zip_path: Path, grid_path: Path, device: torch.device, progress: bool = True,
                     phases: Phases | None = None) -> None:
    """``n`` images of ``G`` (checkpoint ``ck``'s sampling generator, on ``device``) into the zip ``zip_path``,
    and a grid of the first 64 at ``grid_path``: what the generate stage and the Kaggle kernel both write.

    weights: per-breed sampling weights (:func:`label_weights`; None: unconditional); ``cfg`` gives the
    truncation, batch size and precision.
    """
    batches = generate_images(G, n, G.z_dim, weights, cfg.truncation, seed, cfg.batch_size, device,
                              progress=progress, precision=cfg.precision, phases=phases)
    first = write_zip(zip_path, batches, n, phases)
    with record(phases, "grid PNG"):
        save_png(grid_path, image_grid(first, columns=8, zoom=1,
                                       title=f"{ck['model']} step {ck['step']}, truncation {cfg.truncation}"))


def walk_frames(G: torch.nn.Module, ck: dict, weights: np.ndarray | None, truncation: float, seed: int,
                device: torch.device, keys: int = WALK_KEYS, frames_per_key: int = WALK_FRAMES_PER_KEY,
                columns: int = WALK_COLUMNS) -> tuple[np.ndarray, list[str]]:
    """The latent (and breed) walks of ``G``: (uint8 [T, 2 * columns, 64, 64, 3], one caption per walk).

    Key latents are drawn with the truncation trick and the breeds from ``weights`` (as the submission draws
    them), on the CPU from ``seed``, so the same seed gives the same walks on any device.
    """
    gen = torch.Generator().manual_seed(seed)
    z_keys = truncated_normal((keys, 2 * columns, G.z_dim), truncation, gen)
    top = walk = None
    if weights is not None:
        top = sample_labels(columns, weights, gen)
        walk = sample_labels(keys * columns, weights, gen).reshape(keys, columns)
    plan = plan_walks(z_keys, top, walk, ck["n_classes"], ck["breeds"])
    return render_walk(G, plan, frames_per_key, device), plan.captions


def write_walk(path: Path, frames: np.ndarray, captions: list[str], title: str) -> None:
    """One grid per frame (two rows of walks), as an animated GIF written atomically."""
    columns = frames.shape[1] // 2
    pictures = [image_grid(f, captions, columns=columns, zoom=1, title=title) for f in frames]
    save_gif(path, pictures, WALK_FRAME_MS, WALK_HOLD_MS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.generate",
        description="Sample a trained checkpoint into images.zip (PNG, 64x64 RGB), the file Kaggle scores, "
        "plus a grid PNG of the first images beside it.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="FILE", help="checkpoint written by pipeline.train")
    parser.add_argument("--out", metavar="ZIP", help="zip to write (e.g. submissions/images.zip)")
    parser.add_argument("--grid", metavar="PNG", help="grid to write (default: beside --out, <name>_grid.png)")
    parser.add_argument("--n", type=int, help="number of images (default: generate.n, 10000 for Kaggle)")
    parser.add_argument("--seed", type=int, help="seed of latents and labels (default: generate.seed)")
    parser.add_argument("--breed", help="only this breed (conditional models), e.g. golden_retriever")
    parser.add_argument("--walk", metavar="GIF",
                        help=f"also (or only, without --out) write an animated GIF of {2 * WALK_COLUMNS} latent walks "
                        f"through {WALK_KEYS} latents each (slerp); for conditional models the bottom row walks "
                        "through breeds instead (soft labels), e.g. submissions/walk.gif")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="at the end, print the wall time of each step (imports, checkpoint, generator, PNGs, zip)")
    add_config_arguments(parser, "generate")
    args = parser.parse_args(argv)
    phases = run_phases(args.verbose)
    if not args.out and not args.walk:
        parser.error("nothing to write: give --out ZIP, --walk GIF, or both")
    out = Path(args.out) if args.out else None
    # --n and --seed are the generate.n and generate.seed keys, checked as those are
    args.set += option_overrides(n=args.n, seed=args.seed)
    try:
        cfg = config_from_args(args, "generate")
        n, seed = cfg.n, cfg.seed
        with record(phases, "checkpoint: load"):
            ck = load_checkpoint(args.checkpoint)
        weights = label_weights(ck, cfg.label_sampling, args.breed)
        with record(phases, "device: pick"):
            device = pick_device(args.device)
        with record(phases, "generator: build"):
            net = generator_from(ck, ema=cfg.use_ema)
        with record(phases, "generator: to the device"):  # on a GPU, the first CUDA call starts CUDA
            net = net.to(device)
        t0 = time.monotonic()
        if out is not None:
            grid_path = Path(args.grid) if args.grid else out.with_name(f"{out.stem}_grid.png")
            write_submission(ck, net, cfg, n, seed, weights, out, grid_path, device, not args.no_progress, phases)
            print(f"generate: {n} images from {ck['model']} (step {ck['step']}, {'EMA' if samples_ema(ck, cfg.use_ema) else 'raw'} G, "
                  f"truncation {cfg.truncation}) in {time.monotonic() - t0:.1f} s; wrote {out} and {grid_path}")
        if args.walk:
            kind = "latent walks (top) and breed walks (bottom)" if ck["n_classes"] else "latent walks"
            with record(phases, "walk GIF"):
                frames, captions = walk_frames(net, ck, weights, cfg.truncation, seed, device)
                write_walk(Path(args.walk), frames, captions, f"{ck['model']} step {ck['step']}: {kind}")
            print(f"generate: wrote {args.walk} ({len(frames)} frames of {frames.shape[1]} {kind})")
    except (ConfigError, CheckpointError, RuntimeError, OSError) as exc:  # OSError: --out, --grid, --walk
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    if phases is not None:
        print("wall time per step:\n" + phases.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
