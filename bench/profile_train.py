"""Where a training step's time goes on a GPU: launch-bound (CPU) or kernel-bound (GPU)?

    python bench/profile_train.py --model biggan --batch 128 --precision fp32 [--compile [--compile-mode reduce-overhead]]

Runs ``train_step`` as bench/train_bench.py does (the full-size recipes' model sizes: BigGAN at the 1st place's), then profiles a few steps and
prints: wall time per step, GPU kernel time per step, kernels launched per step, and the top
operators by GPU time and by CPU time. Wall >> GPU time means the step waits on Python and kernel
launches, and torch.compile (or larger batches) is the fix; wall ~ GPU time means the kernels
themselves are the cost.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_bench import FULL_SIZE_RECIPES, recipe_train, synthetic  # noqa: E402
from pipeline.training import step as ts  # noqa: E402
from pipeline.config import build_config, read_params  # noqa: E402
from pipeline.runtime import setup_runtime  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="biggan")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-mode", default="default", help="with --compile: default, reduce-overhead (CUDA graphs)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rows", type=int, default=15)
    args = ap.parse_args()
    values = dict(read_params().get("train") or {})
    values[args.model] = recipe_train(FULL_SIZE_RECIPES[args.model])[args.model]  # the full-size recipe's model
    values.update(model=args.model, batch_size=args.batch, precision=args.precision, compile=args.compile,
                  compile_mode=args.compile_mode)
    cfg = build_config("train", values)
    rt = setup_runtime(cfg.precision, cfg.channels_last, "cuda")
    ds = synthetic()
    parts = ts.build_parts(cfg, len(ds.breeds), rt, steps_per_epoch=len(ds) / args.batch)
    data = ts.DeviceData(ds, rt.device, 0)
    ts.set_progress(parts, 1.0)
    for _ in range(5):
        ts.train_step(parts, data, cfg, rt)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        ts.train_step(parts, data, cfg, rt)
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / args.steps
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            ts.train_step(parts, data, cfg, rt)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu_ms = sum(e.device_time if hasattr(e, "device_time") else e.cuda_time for e in kernels) / 1000 / args.steps
    print(f"{args.model} batch {args.batch} {rt.precision} compile {args.compile}: wall {wall * 1000:.1f} ms/step "
          f"({args.batch / wall:.0f} img/s), GPU kernels {gpu_ms:.1f} ms/step, {len(kernels) / args.steps:.0f} "
          f"kernels/step")
    for key in ("self_device_time_total", "self_cuda_time_total"):
        try:
            print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
            break
        except (AttributeError, KeyError, ValueError):
            continue
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
