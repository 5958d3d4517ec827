"""Training throughput: images per second of each model, as the train stage runs it.

    .venv/bin/python bench/train_bench.py                       # every model, batch 64 and 128, this machine
    .venv/bin/python bench/train_bench.py --recipes first-place ours --steps 5   # recipes as they are, and hours
    python bench/train_bench.py --models biggan --batch 128 --precision bf16 --compile on   # on a GPU
    python bench/train_bench.py --models biggan --batch 128 --compile on --compile-mode reduce-overhead

Times real ``train_step`` calls (D step on real + fake, G step, EMA update) on a synthetic 64x64
data set held on the device, after warm-up steps, with the model sizes of ``params.yaml`` or the recipes'
(``--defaults``: BigGAN at recipes/first-place.yaml's size, DCGAN and ProGAN at recipes/dcgan.yaml's and
recipes/progan.yaml's). ``--recipes`` times each named recipe's whole train section as it is (its model, batch,
loss, D steps, augmentation, LeCam) and projects the hours its epochs take at that speed on the crops its prepare
section keeps of the real Stanford Dogs boxes (counted from ../shared's annotations where they are; 22,121, the
1st-place count, where not). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.prepare_bench import DEFAULT_ZIP as ANNOTATIONS_ZIP  # noqa: E402
from pipeline.annotations import Box, read_annotation_zip  # noqa: E402
from pipeline.boxes import BoxLimits, judge_box  # noqa: E402
from pipeline.config import build_config, read_params, resolve_section  # noqa: E402
from pipeline.files import Dataset  # noqa: E402
from pipeline.runtime import setup_runtime, unwrap  # noqa: E402
from pipeline.training import step as ts  # noqa: E402


def synthetic(n: int = 2048, classes: int = 120) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(
        rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
        rng.integers(0, classes, n).astype(np.int64),
        np.array([f"breed{i}" for i in range(classes)]),
        np.array([f"p{i}#0" for i in range(n)]),
    )


REAL_CROPS = 22_121  # crops the real data gives under the 1st-place prepare settings (README, "train")


def real_boxes(zip_path: Path) -> list[tuple[Box, int, int]]:
    """Every box of the Stanford Dogs annotations in ``zip_path``, with its photo's width and height."""
    return [(box, ann.width, ann.height) for _, _, ann in read_annotation_zip(zip_path) for box in ann.boxes]


def crops_under(recipe: str, boxes: list[tuple[Box, int, int]]) -> int:
    """How many of ``boxes`` recipe ``recipe``'s prepare section keeps (the prepare stage's box rules)."""
    cfg = build_config("prepare", resolve_section(dict(read_params(), recipe=recipe), "prepare"))
    limits = BoxLimits(cfg.min_aspect, cfg.max_aspect, cfg.min_side)
    return sum(judge_box(box, w, h, limits)[0] is not None for box, w, h in boxes)
FULL_SIZE_RECIPES = {"biggan": "first-place", "dcgan": "dcgan", "progan": "progan"}  # --defaults: the sizes of these


def recipe_train(name: str) -> dict:
    """The raw train section of recipe ``name`` over params.yaml (config.resolve_section)."""
    return resolve_section(dict(read_params(), recipe=name), "train")


def bench_config(model: str, batch: int, precision: str, compile_: bool, defaults: bool,
                 compile_mode: str = "default"):
    """The train stage's config for one benchmarked case (``defaults``: the model at its full-size recipe's size)."""
    values = dict(read_params().get("train") or {})
    if defaults:
        values[model] = recipe_train(FULL_SIZE_RECIPES[model])[model]
    values.update(model=model, batch_size=batch, precision=precision, compile=compile_, compile_mode=compile_mode,
                  ema_decay=0.999)
    return build_config("train", values)


def recipe_config(name: str, precision: str, compile_: bool, compile_mode: str = "default"):
    """Recipe ``name``'s train config as it is, at ``precision`` and compile settings."""
    return build_config("train", dict(recipe_train(name), precision=precision, compile=compile_,
                                      compile_mode=compile_mode))


def bench_setup(cfg, device: str, seed: int = 0):
    """(runtime, parts, device data) for ``cfg`` on the synthetic set, from ``seed``: the same weights and
    batches for the same seed."""
    rt = setup_runtime(cfg.precision, cfg.channels_last, device)
    ds = synthetic()
    torch.manual_seed(seed)
    parts = ts.build_parts(cfg, len(ds.breeds), rt, steps_per_epoch=len(ds) / cfg.batch_size)
    data = ts.DeviceData(ds, rt.device, seed)
    ts.set_progress(parts, 1.0)  # progressive models at full 64x64 resolution: the expensive case
    return rt, parts, data


def bench_one(model: str, batch: int, precision: str, compile_: bool, defaults: bool, steps: int, warmup: int,
              device: str, compile_mode: str = "default") -> dict:
    return bench_cfg(bench_config(model, batch, precision, compile_, defaults, compile_mode), steps, warmup, device)


def bench_cfg(cfg, steps: int, warmup: int, device: str) -> dict:
    """Time ``steps`` train steps of ``cfg`` after ``warmup`` ones."""
    model, batch, compile_, compile_mode = cfg.model, cfg.batch_size, cfg.compile, cfg.compile_mode
    rt, parts, data = bench_setup(cfg, device)
    for _ in range(warmup):
        ts.train_step(parts, data, cfg, rt)
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        stats = ts.train_step(parts, data, cfg, rt)
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    last = ts.as_floats(stats)  # a fast step that trains nothing would show here as nan or inf
    g_params = sum(p.numel() for p in unwrap(parts.G).parameters())
    d_params = sum(p.numel() for p in unwrap(parts.D).parameters())
    return {
        "model": model, "batch": batch, "precision": rt.precision, "compile": compile_ and compile_mode,
        "options": str(cfg.model_options), "g_params": g_params, "d_params": d_params,
        "steps": steps, "seconds": round(dt, 3), "images_per_s": round(steps * batch * cfg.d_steps / dt, 1),
        "seconds_per_step": dt / steps,
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20) if rt.device.type == "cuda" else None,
        # CUDA graphs keep their tensors in private pools, which count as reserved, not allocated, between replays
        "reserved_gpu_mb": round(torch.cuda.memory_reserved() / 2**20) if rt.device.type == "cuda" else None,
        "last_losses": {k: round(v, 4) for k, v in last.items()},
        "device": torch.cuda.get_device_name() if rt.device.type == "cuda" else platform.processor() or "cpu",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dcgan", "progan", "biggan"])
    ap.add_argument("--batch", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--precision", nargs="+", default=["fp32"], help="fp32, bf16, fp16 (GPU), auto")
    ap.add_argument("--compile", nargs="+", default=["off"], choices=["off", "on"], help="torch.compile the models")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode with --compile on: default, reduce-overhead (CUDA graphs), max-autotune")
    ap.add_argument("--defaults", action="store_true",
                    help="the models at their full-size recipes' sizes (BigGAN: first-place's), not params.yaml's")
    ap.add_argument("--recipes", nargs="+", metavar="NAME",
                    help="time these recipes' train sections as they are (--models and --batch are then ignored)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="bench/out/train_bench.json")
    args = ap.parse_args()
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    boxes = real_boxes(ANNOTATIONS_ZIP) if args.recipes and ANNOTATIONS_ZIP.is_file() else None
    for name in args.recipes or []:
        for precision in args.precision:
            for comp in args.compile:
                cfg = recipe_config(name, precision, comp == "on", args.compile_mode)
                # the crops its prepare settings keep of the real boxes (the annotations, where they are here)
                crops = crops_under(name, boxes) if boxes else REAL_CROPS
                r = dict(bench_cfg(cfg, args.steps, args.warmup, args.device), recipe=name, epochs=cfg.epochs,
                         crops=crops)
                r["projected_hours"] = round(cfg.epochs * crops / cfg.batch_size * r["seconds_per_step"] / 3600, 2)
                rows.append(r)
                print(f"{name:13s} {r['model']:7s} batch {r['batch']:4d} {r['precision']:5s} compile "
                      f"{r['compile'] or 'off'} {r['seconds_per_step']:.3f} s/step: {cfg.epochs:g} epochs of "
                      f"{crops:,} crops in {r['projected_hours']:.2f} h ({r['device']})", flush=True)
    for model in ([] if args.recipes else args.models):
        for batch in args.batch:
            for precision in args.precision:
                for comp in args.compile:
                    r = bench_one(model, batch, precision, comp == "on", args.defaults, args.steps, args.warmup,
                                  args.device, args.compile_mode)
                    rows.append(r)
                    print(f"{r['model']:7s} batch {r['batch']:4d} {r['precision']:5s} compile {r['compile'] or 'off'} "
                          f"{r['images_per_s']:9.1f} img/s  G {r['g_params'] / 1e6:.2f}M  D {r['d_params'] / 1e6:.2f}M  "
                          f"peak GPU {r['peak_gpu_mb']} MB (reserved {r['reserved_gpu_mb']} MB)  "
                          f"last D/G loss {r['last_losses']['loss_d']:.3f}/{r['last_losses']['loss_g']:.3f}  "
                          f"({r['device']})", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
