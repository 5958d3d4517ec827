"""How many operators one training step dispatches: a device-independent measure of launch overhead.

    .venv/bin/python bench/count_ops.py --model biggan          # the 1st-place BigGAN, batch 8, on this CPU
    .venv/bin/python bench/count_ops.py --model biggan --top 30 --json bench/out/ops.json

On a GPU a step like BigGAN's is launch-bound (BENCHMARKS.md: 121.8 ms of wall time per step against
44.8 ms of kernels on an H100): nearly every operator that is not a view launches at least one kernel,
and each launch costs the host several microseconds whatever the batch size. So the number of operators
per step, which is the same on a CPU and a GPU and does not depend on the batch, tells whether a change
cuts launch overhead, even on a machine without a GPU. It is a proxy: a ``_foreach_*`` or fused
optimizer call counts once here but launches one kernel per group of tensors on a GPU, and cuDNN may
launch more than one kernel for a convolution.

Counts every ATen operator that ``train_step`` dispatches (forward, backward, optimizer, EMA), except
views (``view``, ``transpose``, ``expand``, ``slice`` ...: no kernel), after warm-up steps, averaged
over ``--steps`` steps. Prints the total and the most frequent operators.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_bench import FULL_SIZE_RECIPES, recipe_train, synthetic  # noqa: E402
from pipeline.training import step as ts  # noqa: E402
from pipeline.config import build_config, read_params  # noqa: E402
from pipeline.runtime import setup_runtime  # noqa: E402


def is_view(func) -> bool:
    """True for an operator whose output aliases its input without writing it (no kernel is launched)."""
    returns = func._schema.returns
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


class OpCounter(TorchDispatchMode):
    """Counts the non-view ATen operators dispatched inside the ``with`` block, by name."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not is_view(func):
            self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_step_ops(model: str, batch: int, steps: int, warmup: int, defaults: bool, overrides: dict) -> dict:
    values = dict(read_params().get("train") or {})
    if defaults:  # the full-size recipe's model (BigGAN: the 1st place's)
        values[model] = recipe_train(FULL_SIZE_RECIPES[model])[model]
    values.update(model=model, batch_size=batch, precision="fp32", compile=False, ema_decay=0.999, **overrides)
    cfg = build_config("train", values)
    rt = setup_runtime(cfg.precision, cfg.channels_last, "cpu")
    ds = synthetic(256)
    torch.manual_seed(0)
    parts = ts.build_parts(cfg, len(ds.breeds), rt, steps_per_epoch=len(ds) / batch)
    data = ts.DeviceData(ds, rt.device, 0)
    ts.set_progress(parts, 1.0)
    for _ in range(warmup):
        ts.train_step(parts, data, cfg, rt)
    with OpCounter() as counter:
        for _ in range(steps):
            ts.train_step(parts, data, cfg, rt)
    per_step = {k: v / steps for k, v in counter.counts.most_common()}
    return {"model": model, "batch": batch, "loss": cfg.loss, "augment": cfg.augment,
            "ops_per_step": sum(per_step.values()), "by_op": per_step}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="biggan")
    ap.add_argument("--batch", type=int, default=8, help="does not change the count; small is quick")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--params", action="store_true", help="params.yaml's model sizes, not the full-size recipes' "
                    "(BigGAN: the 1st place's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="train option override, e.g. --set loss=rals --set augment=color,translation")
    ap.add_argument("--gpu-adam", action="store_true",
                    help="build Adam as torch does by default on a GPU (foreach) when the code asks for the default: "
                         "on a CPU the default is one operator per tensor, which a GPU never runs")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = value
    if args.gpu_adam:
        default_adam = torch.optim.Adam

        def gpu_like_adam(params, *a, **kw):
            if not kw.get("fused"):
                kw.setdefault("foreach", True)
            return default_adam(params, *a, **kw)

        torch.optim.Adam = gpu_like_adam
    result = count_step_ops(args.model, args.batch, args.steps, args.warmup, not args.params, overrides)
    print(f"{result['model']} (loss {result['loss']}, augment {result['augment'] or 'none'}): "
          f"{result['ops_per_step']:.0f} operators per training step (views excluded)")
    for name, n in list(result["by_op"].items())[: args.top]:
        print(f"  {n:7.0f}  {name}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
