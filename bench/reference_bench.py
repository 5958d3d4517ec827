"""Kaggle's reference at full scale: building the photo reference, and scoring against cached statistics.

    .venv/bin/python bench/reference_bench.py --work bench/out/prepare [--device cpu] [--out FILE.json]

1. Photos: the 20,580 photos of the real Stanford Dogs annotations, synthesized at their real sizes by
   ``bench/prepare_bench.py``'s ``build_data`` (shared with that bench: WORK/all-dogs, made once).
2. Times ``build_photo_reference`` (the ``reference`` stage: full decode, RGB, LANCZOS to 64x64) on every core,
   after one read of every file (page cache warm). Target: at most 30 s on the 2-core machine.
3. Checks PIL's reduced-size JPEG decoding (``draft``, what prepare uses for crops) against the full decode
   on the first ``--draft-sample`` photos: the largest difference in levels after the 64x64 resize decides
   whether the stage may use it (only within one level).
4. Feature rate of each network on this device (images/s; Inception with random weights of the same
   architecture when the real file is absent: the speed is the same).
5. The score of 10,000 images against cached reference statistics of 20,580 photos, less the feature
   extraction: reading and checking the zip, hashing its pixels, loading the cached statistics (float64),
   the FID by eigh (and by sqrtm for comparison) and the float64 memorization distance, on Inception-sized
   random features (2048-d). On a GPU add the feature rate's share for 10,000 images.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.prepare_bench import DEFAULT_ZIP, build_data, machine, warm_cache  # noqa: E402
from bench.submission_bench import random_inception  # noqa: E402
from pipeline.config import build_config  # noqa: E402
from pipeline.images import png_bytes  # noqa: E402
from pipeline.metrics import features as feat  # noqa: E402
from pipeline.metrics.mifid import covariance_root, feature_statistics, frechet_distance, prepare_reference  # noqa: E402
from pipeline.metrics.scoring import (ReferenceStats, load_cached_reference, pixels_sha256,  # noqa: E402
                                      save_reference, score_images)
from pipeline.reference_set import build_photo_reference, kaggle_photo_pixels, list_photos  # noqa: E402
from pipeline.runtime import pick_device  # noqa: E402
from pipeline.validate import read_zip_images  # noqa: E402


def draft_check(photos: list[Path], n: int) -> dict:
    """Largest level difference between draft (reduced) decoding at 1/2 and the full decode, after LANCZOS 64x64."""
    from PIL import Image

    worst, off, checked = 0, [], 0
    for path in photos[:n]:
        full = kaggle_photo_pixels(path).astype(int)
        with Image.open(path) as im:
            w, h = im.size
            if min(w, h) // 2 < 64:
                continue
            im.draft("RGB", (w // 2, h // 2))
            reduced = np.asarray(im.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)).astype(int)
        diff = np.abs(reduced - full)
        worst = max(worst, int(diff.max()))
        off.append(float((diff > 1).mean()))
        checked += 1
    return {"draft_photos_checked": checked, "draft_half_max_level_difference": worst,
            "draft_half_share_of_values_off_by_more_than_1": round(float(np.mean(off)), 4)}


def feature_rates(images: np.ndarray, device: str) -> dict:
    out = {}
    for name in ("standin", "inception"):
        try:
            net, note = feat.load_network(name), "real weights"
        except feat.FeatureNetworkError:
            net, note = random_inception()[0], "random weights, same architecture"
        n = len(images) if name == "standin" else min(len(images), 200 if device == "cpu" else len(images))
        feat.extract_features(net, images[:min(n, 50)], 50, pick_device(device), progress=False)  # warm-up
        t0 = time.perf_counter()
        feat.extract_features(net, images[:n], 100, pick_device(device), progress=False)
        out[f"{name}_images_per_s"] = round(n / (time.perf_counter() - t0), 1)
        out[f"{name}_weights"] = note
    return out


def score_without_features(work: Path, n_ref: int, n_gen: int) -> dict:
    """Seconds of each step of a score against cached statistics, the features given (random, 2048-d)."""
    rng = np.random.default_rng(0)
    ref_features = rng.random((n_ref, 2048), dtype=np.float32)
    gen_features = (rng.random((n_gen, 2048), dtype=np.float32) * 1.1).astype(np.float32)
    mu, sigma, normalized = prepare_reference(ref_features)
    stats = ReferenceStats(mu, sigma, normalized, "bench", n_ref, np.arange(n_ref), "photos", covariance_root(sigma))
    out = {}
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        cache = Path(tmp) / "inception_photos.npz"
        save_reference(cache, stats)
        out["cache_file_mb"] = round(cache.stat().st_size / 1e6, 1)
        zp = Path(tmp) / "images.zip"
        pixels = rng.integers(0, 256, (n_gen, 64, 64, 3), dtype=np.uint8)
        with zipfile.ZipFile(zp, "w") as z:
            for i, image in enumerate(pixels):
                z.writestr(f"{i:05d}.png", png_bytes(image))
        t_all = time.perf_counter()
        t0 = time.perf_counter()
        images = read_zip_images(zp, n_gen)
        out["zip_read_validate_decode_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        pixels_sha256(images)
        out["pixels_hash_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        cached = load_cached_reference(cache, "bench", "photos")
        out["cache_load_s"] = round(time.perf_counter() - t0, 2)
        assert cached is not None
        network = feat.FeatureNetwork("inception", None, 2048, True, "bench")  # features given: never run
        t0 = time.perf_counter()
        result = score_images(images, cached, network, build_config("score", {"network": "inception"}),
                              features=gen_features)
        out["mifid_eigh_and_float64_distance_s"] = round(time.perf_counter() - t0, 2)
        out["frechet_method"] = result["frechet"]
        out["score_without_features_s"] = round(time.perf_counter() - t_all, 2)
    t0 = time.perf_counter()
    frechet_distance(*feature_statistics(gen_features), mu, sigma)
    out["frechet_sqrtm_for_comparison_s"] = round(time.perf_counter() - t0, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "prepare",
                    help="folder of the synthesized photos, shared with prepare_bench (default: %(default)s)")
    ap.add_argument("--annotations-zip", type=Path, default=DEFAULT_ZIP)
    ap.add_argument("--device", default="cpu", help="device of the feature rates (default: %(default)s)")
    ap.add_argument("--draft-sample", type=int, default=500, help="photos compared for the draft-decoding check")
    ap.add_argument("--gen", type=int, default=10_000, help="generated images of the score timing")
    ap.add_argument("--skip-build", action="store_true", help="only the score timing (no photos needed)")
    ap.add_argument("--ref-images", type=int, default=20_580,
                    help="reference images of the score timing with --skip-build (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = ap.parse_args(argv)
    results: dict = {"machine": machine(), "command": " ".join(["bench/reference_bench.py", *(argv or sys.argv[1:])])}
    n_ref = args.ref_images
    if not args.skip_build:
        build_data(args.annotations_zip, args.work, seed=0, quality=75, jobs=os.cpu_count() or 1)
        photos = list_photos(args.work / "all-dogs")
        results["photos"] = n_ref = len(photos)
        results["page_cache_warm_s"] = round(warm_cache(args.work), 1)
        t0 = time.perf_counter()
        ds, report = build_photo_reference(args.work / "all-dogs", workers=0, progress=False)
        wall = time.perf_counter() - t0
        results.update(reference_build_s=round(wall, 2), reference_photos_per_s=round(len(photos) / wall, 1),
                       reference_images=len(ds), reference_skipped=len(report.skips))
        print(f"photo reference: {len(ds)} of {len(photos)} photos in {wall:.1f} s", flush=True)
        results.update(draft_check(photos, args.draft_sample))
        results.update(feature_rates(ds.images[:2000], args.device))
        del ds
    results.update(score_without_features(REPO / "bench" / "out", n_ref, args.gen))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
