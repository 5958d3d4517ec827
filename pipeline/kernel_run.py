"""What the Kaggle kernel runs: the competition data -> prepare -> train -> generate -> ``images.zip``.

The kernel built by ``python -m pipeline.kernel build`` carries this package and the params of one
experiment, and calls :func:`kernel_main`. Everything happens in one process with the stages' own
functions, so the kernel trains exactly what ``dvc repro`` trains (on the real photos instead of the
demo data). Kaggle's rules shape the rest:

- the data is read where Kaggle mounts it (``<root>/input/generative-dog-images/``, any nesting);
- the output folder ``<root>/working`` may hold at most 500 files: it gets ``images.zip`` (the
  submission, written straight into the zip) and a handful of small files (``OUTPUT_FILES``); the
  checkpoint and the sample grids stay in a scratch folder outside it;
- Kaggle stops a kernel after 9 hours: ``kernel.time_budget_min`` bounds the whole run and training
  gets what is left of it after prepare, minus ``kernel.reserve_min`` for generation and the checks;
- no internet and no dvclive: the losses train() would log to dvclive go to ``losses.csv`` instead.

``root`` is ``$KAGGLE_ROOT``, or ``/kaggle`` when unset; tests point it at a fake tree.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

import pipeline
from pipeline import train as train_stage
from pipeline.checkpoint import generator_from, load_checkpoint, samples_ema
from pipeline.config import (ConfigError, GenerateConfig, KernelConfig, PrepareConfig, ScoreConfig, TrainConfig,
                             build_config)
from pipeline.download import COMPETITION
from pipeline.files import COMPETITION_SIZE, write_bytes, write_json, write_text
from pipeline.generate import write_submission
from pipeline.layout import CompetitionDirs, find_competition_dirs
from pipeline.plan import AUTO
from pipeline.prepare import prepare
from pipeline.reference_set import build_photo_reference
from pipeline.runtime import pick_device, setup_runtime
from pipeline.sampling import label_weights
from pipeline.validate import validate_zip

ROOT_ENV = "KAGGLE_ROOT"
DEFAULT_ROOT = "/kaggle"
SECTIONS = ("prepare", "train", "generate", "score", "kernel")  # the params sections a kernel carries
# (score: how train scores itself when train.eval_every > 0)

SUBMISSION = "images.zip"
OUTPUT_FILES = (SUBMISSION, "images_grid.png", "progress.gif", "losses.csv", "losses.png", "run_summary.json")
CHECKPOINT = "checkpoint.pt"  # in the output only with kernel.keep_checkpoint
HEARTBEAT_S = 300.0  # a log line at most this often while training (no progress bar in a 9-hour log)


class KernelRunError(RuntimeError):
    """The kernel cannot do its job (no data, no time left); the message says why."""


@dataclass(frozen=True)
class KernelParams:
    """The validated sections the kernel runs with."""

    prepare: PrepareConfig
    train: TrainConfig
    generate: GenerateConfig
    score: ScoreConfig
    kernel: KernelConfig


def kernel_params(params: dict) -> KernelParams:
    """Validate the params mapping the kernel carries (one mapping per section in ``SECTIONS``)."""
    cfg = KernelParams(*(build_config(section, params.get(section)) for section in SECTIONS))
    if cfg.prepare.size != COMPETITION_SIZE:  # checked here so that the build fails, not the run hours later
        raise ConfigError(f"prepare.size: {cfg.prepare.size}; the kernel trains and submits {COMPETITION_SIZE}x"
                          f"{COMPETITION_SIZE} images (the competition's size), so it needs prepare.size: "
                          f"{COMPETITION_SIZE}")
    return cfg


def kaggle_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def find_inputs(input_root: Path) -> CompetitionDirs:
    """The photo and annotation folders: under the competition's own mount when it is there (Kaggle mounts
    ``all-dogs/all-dogs/`` and ``annotation/Annotation/``), else anywhere a few levels under ``input/``."""
    mount = input_root / COMPETITION
    try:
        return find_competition_dirs(mount if mount.is_dir() else input_root, max_depth=5)
    except FileNotFoundError as exc:
        raise KernelRunError(
            f"{exc} Add the competition's data to the kernel (kernel-metadata.json: competition_sources "
            f"[{COMPETITION!r}]; on the website: Add Input -> Competitions -> Generative Dog Images)."
        ) from None


def epochs_text(epochs: float | str) -> str:
    """``train.epochs`` in words: "6 epochs", or "as many epochs as fit" for ``auto``."""
    return "as many epochs as fit" if epochs == AUTO else f"{epochs:g} epochs"


def training_budget_min(kernel: KernelConfig, train: TrainConfig, elapsed_min: float) -> float:
    """Minutes training may take: the kernel's budget less what has already run and the reserve kept for
    generation and the checks; never more than train's own budget, when it has one."""
    left = kernel.time_budget_min - kernel.reserve_min - elapsed_min
    if left <= 0:
        raise KernelRunError(
            f"no time left to train: {elapsed_min:.1f} min have run, kernel.time_budget_min is "
            f"{kernel.time_budget_min} and kernel.reserve_min {kernel.reserve_min}."
        )
    return min(left, train.time_budget_min) if train.time_budget_min > 0 else left


class LossLog:
    """Takes the place of dvclive's ``Live`` inside train(): keeps every logged number by step, for
    ``losses.csv`` and ``losses.png``, and prints a line now and then so the kernel's log shows progress."""

    def __init__(self, heartbeat_s: float = HEARTBEAT_S):
        self.step = 0
        self.rows: dict[int, dict[str, float]] = {}
        self.summary: dict = {}
        self.heartbeat_s = heartbeat_s
        self._last_print = time.monotonic()

    def log_metric(self, name: str, value: float) -> None:
        key = name.removeprefix("train/").replace("/", "_")
        self.rows.setdefault(self.step, {})[key] = float(value)
        now = time.monotonic()
        if now - self._last_print >= self.heartbeat_s and {"loss_d", "loss_g"} <= set(self.rows[self.step]):
            self._last_print = now
            row = self.rows[self.step]
            print(f"  step {self.step}: loss_d {row['loss_d']:.3f}, loss_g {row['loss_g']:.3f}", flush=True)

    def log_image(self, name: str, picture) -> None:  # the grids go to the samples folder already
        pass

    def end(self) -> None:
        pass


def losses_csv(rows: dict[int, dict[str, float]]) -> str:
    """One line per logged step: step, then every logged quantity (sorted), empty where not logged."""
    columns = sorted({k for row in rows.values() for k in row})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", *columns])
    for step in sorted(rows):
        writer.writerow([step, *(f"{rows[step][c]:.6g}" if c in rows[step] else "" for c in columns)])
    return buf.getvalue()


def losses_png(rows: dict[int, dict[str, float]], title: str) -> bytes | None:
    """PNG bytes of loss_d and loss_g against the step; None without matplotlib or without losses."""
    steps = [s for s in sorted(rows) if {"loss_d", "loss_g"} <= set(rows[s])]
    if not steps:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key in ("loss_d", "loss_g"):
        ax.plot(steps, [rows[s][key] for s in steps], label=key, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def generate_submission(checkpoint: Path, cfg: GenerateConfig, zip_path: Path, grid_path: Path,
                        progress: bool) -> dict:
    """Sample the checkpoint into ``zip_path`` (``cfg.n`` PNGs) and a grid of the first ones, as the
    generate stage does."""
    ck = load_checkpoint(checkpoint)
    weights = label_weights(ck, cfg.label_sampling, None)
    device = pick_device("auto")
    net = generator_from(ck, ema=cfg.use_ema).to(device)
    write_submission(ck, net, cfg, cfg.n, cfg.seed, weights, zip_path, grid_path, device, progress)
    return {"images": cfg.n, "model": ck["model"], "step": ck["step"], "ema": samples_ema(ck, cfg.use_ema),
            "truncation": cfg.truncation, "device": str(device)}


def run(params: dict, root: Path, scratch: Path, progress: bool = False) -> dict:
    """The whole kernel: returns the run summary, also written to ``<root>/working/run_summary.json`` (last)."""
    t0 = time.monotonic()
    cfg = kernel_params(params)
    working = root / "working"
    working.mkdir(parents=True, exist_ok=True)
    seconds = {}

    # prepare first: its worker processes fork before CUDA is initialised
    dirs = find_inputs(root / "input")
    print(f"kernel: photos in {dirs.images}, boxes in {dirs.annotations}", flush=True)
    ds, report = prepare(dirs.images, dirs.annotations, cfg.prepare, progress=progress)
    seconds["prepare"] = round(time.monotonic() - t0, 1)
    print(f"kernel: prepare kept {report['boxes_kept']} crops of {report['breeds']} breeds "
          f"from {report['images_read']} photos in {seconds['prepare']} s", flush=True)

    photos = None
    if cfg.train.eval_every > 0 and cfg.score.reference == "photos":
        # the in-training MiFID scores against what Kaggle's scorer compared with: every photo, whole (also a pool
        # of processes, so before CUDA is initialised)
        photos, read = build_photo_reference(dirs.images, progress=progress)
        print(f"kernel: photo reference of {read.images_read} photos for the in-training MiFID "
              f"({len(read.skips)} skipped)", flush=True)
    budget = training_budget_min(cfg.kernel, cfg.train, (time.monotonic() - t0) / 60)
    train_cfg = replace(cfg.train, time_budget_min=budget)
    rt = setup_runtime(train_cfg.precision, train_cfg.channels_last, "auto")
    checkpoint = (working if cfg.kernel.keep_checkpoint else scratch) / CHECKPOINT
    samples = scratch / "samples"
    fewer = " (fewer epochs if they would not fit)" if train_cfg.epochs != AUTO else ""
    print(f"kernel: training {train_cfg.model} on {rt.device} ({rt.precision}) for {epochs_text(train_cfg.epochs)}, "
          f"at most {budget:.1f} min{fewer}", flush=True)
    t_train = time.monotonic()
    log = LossLog()
    # MiFID during training, as `dvc repro` does it when train.eval_every > 0 (the best checkpoint is only logged:
    # generate samples the last one, as the generate stage does)
    evaluation = train_stage.EvalSettings(cfg.score, scratch / "reference", scratch / "best.pt", photos)
    try:
        trained = train_stage.train(ds, train_cfg, checkpoint, rt, logger=log, samples_dir=samples,
                                    evaluation=evaluation, progress=progress)
    finally:
        rt.close()
    seconds["train"] = round(time.monotonic() - t_train, 1)
    print(f"kernel: trained {train_stage.summary_line(trained)}", flush=True)
    del ds, photos, evaluation  # the crops and reference photos are not needed any more

    t_gen = time.monotonic()
    generated = generate_submission(checkpoint, cfg.generate, working / SUBMISSION, working / "images_grid.png",
                                    progress)
    checked = validate_zip(working / SUBMISSION, expected=cfg.generate.n)
    seconds["generate"] = round(time.monotonic() - t_gen, 1)
    print(f"kernel: {checked.summary()} in {working / SUBMISSION} ({seconds['generate']} s)", flush=True)

    write_text(working / "losses.csv", losses_csv(log.rows))
    plot = losses_png(log.rows, f"{train_cfg.model}, {trained['steps']} steps")
    if plot is not None:
        write_bytes(working / "losses.png", plot)
    if (samples / "progress.gif").is_file():
        write_bytes(working / "progress.gif", (samples / "progress.gif").read_bytes())

    seconds["total"] = round(time.monotonic() - t0, 1)
    summary = {
        "competition": COMPETITION,
        "code": str(Path(pipeline.__file__).parent),  # where the package was imported from (the kernel's bundle)
        "data": {"images": str(dirs.images), "annotations": str(dirs.annotations)},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "prepare": {k: report[k] for k in ("photos_found", "images_read", "boxes_found", "boxes_kept", "breeds",
                                           "skipped")},
        "train": {**trained, "time_budget_min": round(budget, 2)},
        "generate": generated,
        "submission": {"path": str(working / SUBMISSION), "valid": checked.summary(), "bytes": checked.zip_bytes},
        "seconds": seconds,
        "params": params,
    }
    summary["outputs"] = sorted({p.name for p in working.iterdir() if p.is_file()} | {"run_summary.json"})
    write_json(working / "run_summary.json", summary)  # last: its presence means the run finished
    return summary


def kernel_main(params: dict, scratch: str | os.PathLike) -> dict:
    """Entry point of the built kernel: run against ``$KAGGLE_ROOT`` (default /kaggle) and say where things are."""
    root = kaggle_root()
    summary = run(params, root, Path(scratch))
    print(f"kernel: done in {summary['seconds']['total'] / 60:.1f} min; {len(summary['outputs'])} files in "
          f"{root / 'working'}: {', '.join(summary['outputs'])}", flush=True)
    return summary
