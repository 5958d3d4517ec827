"""What the in-training MiFID adds to a training run: the fraction of time at a given ``train.eval_every``.

    .venv/bin/python bench/eval_bench.py --network standin                # this machine (CPU), demo-size BigGAN
    python bench/eval_bench.py --defaults --device cuda --precision bf16   # GPU: 1st-place BigGAN, Inception

Times, on synthetic data (speed does not depend on what the weights learned):

1. ``train_step`` as the train stage runs it (after warm-up steps): seconds per step;
2. one evaluation as the train stage runs it (``train.Evaluator.run``: ``eval_images`` images from the EMA
   generator, features with ``score.network``, MiFID against cached statistics of a reference set of
   ``--reference`` images, 22,121 like the real training set), after one warm-up evaluation, plus writing
   the best checkpoint (the worst case: every evaluation is the best so far);

and reports ``added = (evaluation + checkpoint) / (eval_every x step)``. The target is at most 5% at the
recommended interval (pipeline.config.EVAL_EVERY_GPU). Without the Inception weights file the Inception
architecture runs with random weights (same cost; scores meaningless, not shown). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from pipeline.training import monitor as tm  # noqa: E402
from pipeline.training import run as trun  # noqa: E402
from pipeline.training import step as ts  # noqa: E402
from pipeline.config import EVAL_EVERY_GPU, build_config, read_params  # noqa: E402
from pipeline.metrics import features as feat  # noqa: E402
from pipeline.metrics.scoring import reference_statistics  # noqa: E402
from pipeline.runtime import setup_runtime, unwrap  # noqa: E402
from submission_bench import network_for  # noqa: E402
from train_bench import FULL_SIZE_RECIPES, recipe_train, synthetic  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="biggan")
    ap.add_argument("--defaults", action="store_true", help="the model at its full-size recipe's size (BigGAN: "
                    "first-place's), not params.yaml's")
    ap.add_argument("--batch", type=int, default=32, help="training batch (1st place: 32)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--network", default="inception", choices=sorted(feat.NETWORKS))
    ap.add_argument("--eval-every", type=int, default=EVAL_EVERY_GPU)
    ap.add_argument("--eval-images", type=int, default=2000)
    ap.add_argument("--reference", type=int, default=22_121, help="reference images (the real set: 22,121)")
    ap.add_argument("--steps", type=int, default=50, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--evals", type=int, default=2, help="timed evaluations (after one warm-up)")
    ap.add_argument("--json", default="bench/out/eval_bench.json")
    args = ap.parse_args()

    values = dict(read_params(REPO / "params.yaml").get("train") or {})
    if args.defaults:  # the model at its full-size recipe's size (BigGAN: the 1st-place one)
        values[args.model] = recipe_train(FULL_SIZE_RECIPES[args.model])[args.model]
    values.update(model=args.model, batch_size=args.batch, precision=args.precision, ema_decay=0.999,
                  eval_every=args.eval_every, eval_images=args.eval_images)
    cfg = build_config("train", values)
    score_values = dict(read_params(REPO / "params.yaml").get("score") or {})
    score_cfg = build_config("score", {**score_values, "network": args.network})
    rt = setup_runtime(cfg.precision, cfg.channels_last, args.device)
    ds = synthetic(n=2048, classes=120)
    torch.manual_seed(0)
    parts = ts.build_parts(cfg, len(ds.breeds), rt, steps_per_epoch=len(ds) / args.batch)
    data = ts.DeviceData(ds, rt.device, 0)
    ts.set_progress(parts, 1.0)

    # 1. training steps
    for _ in range(args.warmup):
        ts.train_step(parts, data, cfg, rt)
    sync(rt.device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        ts.train_step(parts, data, cfg, rt)
    sync(rt.device)
    step_s = (time.perf_counter() - t0) / args.steps

    # 2. one evaluation, as the train stage makes it, against statistics of a reference set of that size
    network, weights = network_for(args.network)
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (args.reference, 64, 64, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        stats, _ = reference_statistics(reference, network, tmp, "photos", score_cfg.batch_size, rt.device,
                                        progress=True)
        reference_s = time.perf_counter() - t0
        ev = tm.Evaluator(network, stats, score_cfg, cfg.eval_images, unwrap(parts.G).z_dim,
                          np.bincount(ds.labels, minlength=120).tolist(), seed=0)
        G = parts.G_ema or unwrap(parts.G)
        ev.run(G, 0, rt.device)  # warm-up: cudnn autotuning, first allocation
        times = []
        for i in range(args.evals):
            sync(rt.device)
            t0 = time.perf_counter()
            ev.run(G, i + 1, rt.device)
            sync(rt.device)
            times.append(time.perf_counter() - t0)
        eval_s = float(np.median(times))
        t0 = time.perf_counter()
        run = trun.Run(parts, cfg, rt, data, Path(tmp) / "best.pt", [str(b) for b in ds.breeds], [1] * 120, steps=1, step=1)
        run.save(run.out, ev.state())
        checkpoint_s = time.perf_counter() - t0

    interval_s = args.eval_every * step_s
    added = (eval_s + checkpoint_s) / interval_s
    result = {
        "device": torch.cuda.get_device_name() if rt.device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "precision": rt.precision,
        "model": args.model, "options": str(cfg.model_options), "batch": args.batch,
        "network": network.name, "network_weights": weights,
        "eval_every": args.eval_every, "eval_images": args.eval_images, "reference_images": args.reference,
        "train_step_s": round(step_s, 5), "train_images_per_s": round(args.batch * cfg.d_steps / step_s, 1),
        "interval_s": round(interval_s, 1),
        "evaluation_s": round(eval_s, 3), "evaluations_s": [round(t, 3) for t in times],
        "best_checkpoint_write_s": round(checkpoint_s, 3),
        "reference_statistics_once_s": round(reference_s, 2),
        "added_fraction": round(added, 5),
        "target": "at most 0.05",
    }
    print(json.dumps(result, indent=2))
    print(f"in-training MiFID every {args.eval_every} steps adds {100 * added:.2f}% "
          f"({eval_s + checkpoint_s:.2f} s per {interval_s:.0f} s of training)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
