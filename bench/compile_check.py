"""Does a compiled training step train like the eager one? Same seed, same batches, step by step.

    python bench/compile_check.py --model biggan --batch 128 --precision bf16 --compile-mode reduce-overhead
    .venv/bin/python bench/compile_check.py --model dcgan --batch 8 --steps 4      # a quick look on a CPU

A fast compiled step is worth nothing if it trains something else: CUDA graphs replay into the same output
buffers, and a value read after the next replay is silently another step's. This trains the same model
twice from the same seed, eagerly and with ``torch.compile(mode=...)``, reads the losses of every step, and
compares them and the generator's weights at the end. Kernels differ (fusion, bf16 rounding), and a compiled
BigGAN runs its spectral norms' power iteration in every pass where the eager step runs it once per update,
so the two drift apart slowly; a wrong step differs at once. Exits 1 when a loss is not finite or a loss
differs by more than ``--tol`` of its size (of 1 for losses under 1) at any step.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline.training import step as ts  # noqa: E402
from pipeline.runtime import unwrap  # noqa: E402
from train_bench import bench_config, bench_setup  # noqa: E402


def g_weights(parts) -> torch.Tensor:
    """G's weights, flattened into one float32 vector on the CPU."""
    return torch.cat([p.detach().float().flatten().cpu() for p in unwrap(parts.G_local).parameters()])


def run(cfg, device: str, steps: int) -> tuple[list[dict[str, float]], torch.Tensor, torch.Tensor, float]:
    """(losses of each step, G's weights before and after, seconds) for ``steps`` steps of ``cfg``."""
    rt, parts, data = bench_setup(cfg, device)
    before = g_weights(parts)
    t0 = time.perf_counter()
    losses = [ts.as_floats(ts.train_step(parts, data, cfg, rt, step)) for step in range(steps)]
    seconds = time.perf_counter() - t0
    return losses, before, g_weights(parts), seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="biggan")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precision", default="fp32", help="fp32, bf16, fp16 (GPU), auto")
    ap.add_argument("--compile-mode", default="reduce-overhead",
                    help="torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--params-yaml-sizes", action="store_true",
                    help="params.yaml's model sizes (default: the full-size recipes', BigGAN at the 1st place's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tol", type=float, default=0.05,
                    help="largest accepted |eager - compiled| / max(1, |eager|) of a loss at any step")
    args = ap.parse_args(argv)
    defaults = not args.params_yaml_sizes
    eager_cfg = bench_config(args.model, args.batch, args.precision, False, defaults)
    compiled_cfg = bench_config(args.model, args.batch, args.precision, True, defaults, args.compile_mode)
    eager, w_initial, w_eager, t_eager = run(eager_cfg, args.device, args.steps)
    compiled, _, w_compiled, t_compiled = run(compiled_cfg, args.device, args.steps)
    print(f"{args.model} batch {args.batch} {args.precision}: eager {t_eager:.1f} s, compiled "
          f"({args.compile_mode}) {t_compiled:.1f} s for {args.steps} steps, compilation included")
    keys = ("loss_d", "loss_g")
    print("step  " + "  ".join(f"{k} eager / compiled" for k in keys))
    worst = 0.0
    finite = True
    for i, (a, b) in enumerate(zip(eager, compiled)):
        print(f"{i:4d}  " + "  ".join(f"{a[k]:8.4f} / {b[k]:8.4f}    " for k in keys))
        for k in keys:
            finite &= math.isfinite(a[k]) and math.isfinite(b[k])
            worst = max(worst, abs(a[k] - b[k]) / max(1.0, abs(a[k])))
    rel = float((w_eager - w_compiled).norm() / w_eager.norm())
    moved = float((w_eager - w_initial).norm() / w_eager.norm())
    print(f"largest loss difference {worst:.2%} (tolerance {args.tol:.0%}); G weights: eager and compiled differ by "
          f"{rel:.2e} relative, training moved them by {moved:.2e}")
    ok = finite and worst <= args.tol
    print("OK: the compiled step trains like the eager one" if ok else
          "FAILED: " + ("a loss is not finite" if not finite else "the compiled step's losses differ"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
