"""Generate + zip 10,000 images, validate them, and score them: wall time of each step.

    .venv/bin/python bench/submission_bench.py                 # BigGAN at its 1st-place size, this machine
    python bench/submission_bench.py --device cuda --networks standin inception

Speed does not depend on what the weights learned, so the checkpoint is a freshly initialised
model of the requested size (random weights), saved in the real checkpoint format. The Inception
network is timed with the weights file when one is configured, else with randomly initialised
weights of the same architecture (same cost; its scores are then meaningless and are not shown).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.checkpoint import save_checkpoint  # noqa: E402
from pipeline.config import build_config  # noqa: E402
from pipeline.files import Dataset, save_dataset  # noqa: E402
from pipeline.metrics import features as feat  # noqa: E402
from pipeline.metrics.mifid import mifid_from_reference, prepare_reference  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.runtime import pick_device  # noqa: E402


def make_checkpoint(path: Path, model: str, n_classes: int = 120) -> None:
    cfg = build_config("train", {"model": model})  # the model's default (1st-place) size
    G, D = build_model(model, cfg.model_options, n_classes)
    save_checkpoint(path, G=G, D=D, G_ema=G, opt_g=None, opt_d=None, step=0, total_steps=0, model=model,
                    model_options=cfg.model_options, n_classes=n_classes, aux_classifier=False,
                    breeds=[f"breed{i}" for i in range(n_classes)], train_config={},
                    extra={"label_counts": [1] * n_classes})


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def random_inception() -> feat.FeatureNetwork:
    """pytorch-fid's Inception architecture with random weights: the same cost as the real one."""
    from unittest import mock

    from pytorch_fid import inception as fid_inception

    with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None):
        net = fid_inception.InceptionV3([3], resize_input=True, normalize_input=True)
    return feat.FeatureNetwork("inception", feat._PoolFeatures(net), 2048, True, "random")


def feature_rate(name: str, images: np.ndarray, device: str, batch: int) -> tuple[float, np.ndarray, str]:
    try:
        net = feat.load_network(name)
        note = "real weights"
    except feat.FeatureNetworkError:  # no Inception weights on this machine
        net = random_inception()
        note = "random weights, same architecture (timing only)"
    t0 = time.perf_counter()
    f = feat.extract_features(net, images, batch_size=batch, device=pick_device(device), progress=False)
    return len(images) / (time.perf_counter() - t0), f, note


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="biggan")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--networks", nargs="+", default=["standin", "inception"])
    ap.add_argument("--feature-images", type=int, default=500, help="images timed per network (rate only)")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "submission")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    ck, zp = args.work / "checkpoint.pt", args.work / "images.zip"
    make_checkpoint(ck, args.model)
    py = sys.executable
    results = {"model": args.model, "n": args.n, "device": str(pick_device(args.device)),
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    results["generate_zip_s"] = round(timed([py, "-m", "pipeline.generate", "--checkpoint", str(ck), "--out", str(zp),
                                              "--n", str(args.n), "--no-progress", "--device", args.device]), 2)
    results["validate_s"] = round(timed([py, "-m", "pipeline.validate", str(zp), "--expected", str(args.n)]), 2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.feature_images, 64, 64, 3), dtype=np.uint8)
    for name in args.networks:
        rate, f, note = feature_rate(name, images, args.device, 100)
        results[f"features_{name}_img_per_s"] = round(rate, 1)
        results[f"features_{name}_weights"] = note
    # the MiFID step itself at full size: 10,000 generated x 22,000 reference features of 2048 dims
    big_ref = rng.random((22_000, 2048), dtype=np.float32)
    big_gen = rng.random((10_000, 2048), dtype=np.float32)
    t0 = time.perf_counter()
    ref = prepare_reference(big_ref)
    results["reference_stats_2048d_22k_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    mifid_from_reference(big_gen, *ref)
    results["mifid_2048d_10k_vs_22k_s"] = round(time.perf_counter() - t0, 2)
    import resource

    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(results, indent=2))
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
