"""Does each model learn? Every model trained on the demo crops for the same CPU time, then measured.

    .venv/bin/python bench/learn_bench.py                          # dcgan, progan, biggan; 10 minutes each
    .venv/bin/python bench/learn_bench.py --models dcgan --minutes 2 --set train.lr_g=0.0002

Each model trains through the train stage's own ``train()`` with ``params.yaml``'s train section (plus
``--set`` overrides; the demo's model sizes), ``train.model`` set to it and ``train.time_budget_min`` to
``--minutes``, on ``data/prepared/dogs64.npz`` (the demo's prepared crops: run ``dvc repro prepare`` first). Then
``--images`` samples of the sampling generator (EMA when kept), untruncated, breeds as often as in training, are
compared with the training crops by

- the thumbnail FID (``pipeline.metrics.learning``: 8x8 pixel thumbnails; catches noise and wrong colours),
- the stand-in FID (the offline feature network of ``score.network: standin``; catches wrong shapes),

each also for the untrained generator of the same seed, so that "learned" reads as "moved from its start towards
the data". Writes per model ``OUT/<model>/samples/`` (grids during training, ``last.png``) and ``OUT/results.json``,
and prints a Markdown table for BENCHMARKS.md.
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

from pipeline import train as tr  # noqa: E402
from pipeline.checkpoint import generator_from, load_checkpoint  # noqa: E402
from pipeline.config import apply_overrides, build_config, read_params  # noqa: E402
from pipeline.files import load_dataset  # noqa: E402
from pipeline.generate import generate_images  # noqa: E402
from pipeline.metrics.features import extract_features, load_network  # noqa: E402
from pipeline.metrics.learning import thumbnail_fid  # noqa: E402
from pipeline.metrics.mifid import feature_statistics, frechet_distance  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.runtime import setup_runtime  # noqa: E402


def sample(G: torch.nn.Module, n: int, counts: list[int] | None, seed: int) -> np.ndarray:
    """uint8 [n, 64, 64, 3]: untruncated latents, breeds in proportion to ``counts`` (None: unconditional)."""
    weights = np.asarray(counts, dtype=np.float64) / sum(counts) if counts is not None else None
    return np.concatenate(list(generate_images(G, n, G.z_dim, weights, 0.0, seed, 100, torch.device("cpu"),
                                               progress=False)))


def measure(images: np.ndarray, reference: np.ndarray, ref_stats, network) -> dict:
    feats = extract_features(network, images, progress=False)
    mu, sigma = feature_statistics(feats)
    return {"thumbnail_fid": round(thumbnail_fid(images, reference), 4),
            "standin_fid": round(float(frechet_distance(mu, sigma, *ref_stats)), 3)}


def run_model(model: str, ds, minutes: float, overrides: list[str], out: Path, n_images: int) -> dict:
    values = apply_overrides("train", dict(read_params().get("train") or {}), overrides)
    values.update(model=model, time_budget_min=minutes)
    cfg = build_config("train", values)
    rt = setup_runtime(cfg.precision, cfg.channels_last, "cpu")
    counts = np.bincount(ds.labels, minlength=len(ds.breeds)).tolist() if cfg.conditional else None
    torch.manual_seed(cfg.seed)  # as the train stage seeds it: this is the generator that training starts from
    G0, _ = build_model(model, cfg.model_options, len(ds.breeds) if cfg.conditional else 0, cfg.aux_class_weight > 0)
    start_images = sample(G0.eval(), n_images, counts, seed=1)
    out.mkdir(parents=True, exist_ok=True)
    summary = tr.train(ds, cfg, out / "checkpoint.pt", rt, samples_dir=out / "samples", progress=True)
    G = generator_from(load_checkpoint(out / "checkpoint.pt"))
    return {"model": model, "start_images": start_images, "images": sample(G, n_images, counts, seed=1),
            "steps": summary["steps"], "planned_steps": summary["total_steps"], "seconds": summary["seconds"],
            "images_per_s": summary["images_per_s"], "options": str(cfg.model_options)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dcgan", "progan", "biggan"])
    ap.add_argument("--minutes", type=float, default=10.0, help="CPU training time per model (default: %(default)s)")
    ap.add_argument("--data", default="data/prepared/dogs64.npz", help="prepared crops (default: %(default)s)")
    ap.add_argument("--images", type=int, default=1000, help="samples measured per model (default: %(default)s)")
    ap.add_argument("--set", action="append", default=[], metavar="train.KEY=VALUE",
                    help="override a key of params.yaml's train section, for every model (repeatable)")
    ap.add_argument("--out", default="bench/out/learn", help="output folder (default: %(default)s)")
    args = ap.parse_args()
    if not Path(args.data).exists():
        print(f"error: {args.data} not found; build the demo crops first: dvc repro prepare", file=sys.stderr)
        return 2
    ds = load_dataset(args.data)
    network = load_network("standin")
    ref_stats = feature_statistics(extract_features(network, ds.images, progress=False))
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {platform.processor() or 'cpu'}; "
          f"{len(ds.images)} crops from {args.data}")
    for model in args.models:
        t0 = time.monotonic()
        r = run_model(model, ds, args.minutes, args.set, Path(args.out) / model, args.images)
        r["start"] = measure(r.pop("start_images"), ds.images, ref_stats, network)
        r["end"] = measure(r.pop("images"), ds.images, ref_stats, network)
        r["wall_s"] = round(time.monotonic() - t0, 1)
        rows.append(r)
        print(json.dumps(r), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps({"overrides": args.set, "minutes": args.minutes,
                                                             "rows": rows}, indent=2))
    print(f"\n| model | CPU min | steps | thumbnail FID start -> end | stand-in FID start -> end |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {args.minutes:g} | {r['steps']} | {r['start']['thumbnail_fid']:.3f} -> "
              f"{r['end']['thumbnail_fid']:.3f} | {r['start']['standin_fid']:.1f} -> {r['end']['standin_fid']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
