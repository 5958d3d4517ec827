"""Generate + zip 10,000 images, validate them, and score them: wall time of each step.

    .venv/bin/python bench/submission_bench.py                 # BigGAN at its 1st-place size, this machine
    python bench/submission_bench.py --device cuda --networks standin inception
    .venv/bin/python bench/submission_bench.py --zip images.zip --phases standin   # where the score's time goes

Speed does not depend on what the weights learned, so the checkpoint is a freshly initialised
model of the requested size (random weights), saved in the real checkpoint format. The Inception
network is timed with the weights file when one is configured, else with randomly initialised
weights of the same architecture (same cost; its scores are then meaningless and are not shown).
"""

from __future__ import annotations

import argparse
import json
import re
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
from pipeline.generate import write_zip  # noqa: E402
from pipeline.metrics import features as feat  # noqa: E402
from pipeline.metrics.mifid import (covariance_root, feature_statistics, frechet_distance,  # noqa: E402
                                    frechet_distance_eigh, mifid_from_reference, prepare_reference)
from pipeline.models import build_model  # noqa: E402
from pipeline.runtime import pick_device  # noqa: E402
from bench.train_bench import FULL_SIZE_RECIPES, recipe_train  # noqa: E402


def make_checkpoint(path: Path, model: str, n_classes: int = 120) -> None:
    # the model at its full-size recipe's size (BigGAN: the 1st place's)
    cfg = build_config("train", {"model": model, model: recipe_train(FULL_SIZE_RECIPES[model])[model]})
    G, D = build_model(model, cfg.model_options, n_classes)
    save_checkpoint(path, G=G, D=D, G_ema=G, opt_g=None, opt_d=None, step=0, total_steps=0, model=model,
                    model_options=cfg.model_options, n_classes=n_classes, aux_classifier=False,
                    breeds=[f"breed{i}" for i in range(n_classes)], train_config={},
                    extra={"label_counts": [1] * n_classes})


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def random_inception(calibration_images: int = 48) -> tuple[feat.FeatureNetwork, torch.nn.Module]:
    """pytorch-fid's Inception architecture with random weights: the same cost as the real one.

    Returns (the network, its inner TF-ported Inception3, whose state dict is what a weights file holds).
    The batch norms' statistics are set from ``calibration_images`` random 64x64 images fed as the score
    feeds them: with the defaults (mean 0, variance 1), 418 of the 2048 features of noise images were
    identically zero, every covariance was singular, and the score's ``eigh`` Frechet path handed over to
    ``sqrtm`` (BENCHMARKS.md): the timing would not have been that of real weights, whose features have
    full rank. Calibrated, none was zero.
    """
    from unittest import mock

    from pytorch_fid import inception as fid_inception

    inner = []
    build = fid_inception.fid_inception_v3

    def keep(*args, **kwargs):  # the wrapper builds the inner network and keeps only its layers
        inner.append(build(*args, **kwargs))
        return inner[-1]

    with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None), \
            mock.patch.object(fid_inception, "fid_inception_v3", keep):
        torch.manual_seed(0)
        # fed by inception_input (the TF graph's resize and scale), as the registered network is
        net = fid_inception.InceptionV3([3], resize_input=False, normalize_input=False)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the calibration batch
    images = np.random.default_rng(0).integers(0, 256, (calibration_images, 64, 64, 3), dtype=np.uint8)
    net.train()
    with torch.no_grad():
        net(feat.inception_input(images))
    net.eval()
    return (feat.FeatureNetwork("inception", feat._PoolFeatures(net), 2048, True, "random",
                                prepare=feat.inception_input), inner[-1])


def network_for(name: str) -> tuple[feat.FeatureNetwork, str]:
    """(the registered network ``name``, a note on its weights); without Inception weights on this machine,
    :func:`random_inception` (the same architecture and cost)."""
    try:
        return feat.load_network(name), "real weights"
    except feat.FeatureNetworkError:
        return random_inception()[0], "random weights, same architecture (timing only)"


def feature_rate(name: str, images: np.ndarray, device: str, batch: int) -> tuple[float, np.ndarray, str]:
    net, note = network_for(name)
    t0 = time.perf_counter()
    f = feat.extract_features(net, images, batch_size=batch, device=pick_device(device), progress=False)
    return len(images) / (time.perf_counter() - t0), f, note


def inception_weights_file(work: Path) -> tuple[str, str]:
    """(path, note): the real weights when configured or cached, else a random-weight file of the same
    architecture (timing only: every number it gives is meaningless)."""
    try:
        return str(feat.find_inception_weights(download=False)), "real weights"
    except feat.FeatureNetworkError:
        path = work / "random_inception.pth"
        # the state dict pytorch-fid loads is that of the inner TF-ported Inception3, not of its wrapper
        torch.save(random_inception()[1].state_dict(), path)
        return str(path), "random weights, same architecture (timing only)"


def score_command(work: Path, zp: Path, device: str, n: int, n_ref: int, network: str, frechet: str) -> list[str]:
    """``python -m pipeline.score`` on ``zp`` against a reference of ``n_ref`` random images (made once, kept in
    ``work``), with an empty cache: the first run computes the reference statistics, later ones reuse them."""
    ref = work / f"reference_{n_ref}.npz"
    if not ref.is_file():
        rng = np.random.default_rng(1)
        save_dataset(ref, Dataset(rng.integers(0, 256, (n_ref, 64, 64, 3), dtype=np.uint8),
                                  rng.integers(0, 120, n_ref).astype(np.int64),
                                  np.array([f"breed{i}" for i in range(120)]),
                                  np.array([f"p{i}#0" for i in range(n_ref)])))
    cache = work / "reference_cache"
    for old in cache.glob("*.npz"):
        old.unlink()
    params = work / "no-params.yaml"  # empty: every setting takes its built-in default (a named file must exist)
    params.write_text("# empty: built-in defaults\n")
    cmd = [sys.executable, "-m", "pipeline.score", "--submission", str(zp), "--photos", str(ref),
           "--metrics", str(work / "score.json"), "--leaderboard-dir", str(work), "--cache", str(cache),
           "--device", device, "--no-progress", "--params", str(params),
           "--set", f"score.network={network}", "--set", f"score.expected_images={n}",
           "--set", f"score.frechet={frechet}"]
    if network == "inception":
        weights, _ = inception_weights_file(work)
        cmd += ["--set", f"score.inception_weights={weights}"]
    return cmd


def full_score(work: Path, zp: Path, device: str, n: int, n_ref: int, frechet: str) -> dict:
    """Wall time of the score stage as users run it: cold (reference features computed and cached)
    and warm (cached reference statistics reused, the figure the GPU target is about)."""
    _, note = inception_weights_file(work)
    cmd = score_command(work, zp, device, n, n_ref, "inception", frechet)
    return {"score_weights": note, "score_cold_s": round(timed(cmd), 2), "score_warm_s": round(timed(cmd), 2)}


STEP_LINE = re.compile(r"^\s+(.*?)\s+([\d.]+) s(\s+[\d.]+%)?$")


def verbose_steps(text: str) -> dict[str, float]:
    """Seconds per step from a stage's ``--verbose`` output: the lines after "wall time per step", each
    "  <step>   <seconds> s  <share>%", then "  total of the steps   <seconds> s"."""
    report = text[text.index("wall time per step"):].splitlines()[1:]
    return {m[1]: float(m[2]) for m in (STEP_LINE.match(line) for line in report) if m}


def timed_steps(cmd: list[str]) -> tuple[float, dict[str, float]]:
    """(wall seconds of ``cmd``, a stage run with ``--verbose``; its own seconds per step)."""
    t0 = time.perf_counter()
    text = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t0, verbose_steps(text)


def score_phases(work: Path, zp: Path, device: str, n: int, n_ref: int, network: str, frechet: str,
                 warm_runs: int = 2) -> dict:
    """The score stage's own report of where its time goes (``--verbose``), cold and warm, beside the wall
    time of the whole process and of ``import pipeline.score`` alone (interpreter start and imports)."""
    out = {"network": network, "frechet": frechet,
           "import_s": round(timed([sys.executable, "-c", "import pipeline.score"]), 2)}
    cmd = score_command(work, zp, device, n, n_ref, network, frechet) + ["--verbose"]
    for run in ("cold", "warm", "warm again")[:1 + warm_runs]:
        wall, steps = timed_steps(cmd)
        # the method that gave the FID: eigh hands singular covariances to sqrtm ("sqrtm (eigh fallback)")
        used = json.loads((work / "score.json").read_text())["frechet"]
        out[run] = {"process_s": round(wall, 2), "frechet_method": used, "steps_s": steps}
    return out


def metric_math(rng: np.random.Generator) -> dict:
    """The MiFID step itself at full size, in this process: reference statistics, MiFID, and the Frechet
    distance both ways (Kaggle's sqrtm; eigh with the reference's root), on random features."""
    out = {}
    big_ref = rng.random((22_000, 2048), dtype=np.float32)
    big_gen = rng.random((10_000, 2048), dtype=np.float32)
    t0 = time.perf_counter()
    ref = prepare_reference(big_ref)
    out["reference_stats_2048d_22k_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    mifid_from_reference(big_gen, *ref)
    out["mifid_2048d_10k_vs_22k_s"] = round(time.perf_counter() - t0, 2)
    # the Frechet distance alone, both ways: Kaggle's sqrtm, and eigh (the reference's root once, then per score)
    gen_stats = feature_statistics(big_gen)
    t0 = time.perf_counter()
    exact = frechet_distance(*gen_stats, ref[0], ref[1])
    out["frechet_2048d_sqrtm_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    root = covariance_root(ref[1])
    out["covariance_root_2048d_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    fast, used = frechet_distance_eigh(*gen_stats, ref[0], ref[1], root)
    out["frechet_2048d_eigh_s"] = round(time.perf_counter() - t0, 2)
    out["frechet_eigh_method"] = used
    out["frechet_eigh_vs_sqrtm_relative_difference"] = float(f"{abs(fast - exact) / exact:.3g}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="biggan")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--networks", nargs="+", default=["standin", "inception"])
    ap.add_argument("--feature-images", type=int, default=500, help="images timed per network (rate only)")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "submission")
    ap.add_argument("--full-score", action="store_true",
                    help="also time the whole `python -m pipeline.score` with the inception network against a "
                         "22,000-image reference (random-weight Inception file when the real one is absent), "
                         "first computing the reference statistics, then reusing them")
    ap.add_argument("--ref-images", type=int, default=22_000, help="reference images of --full-score and --phases")
    ap.add_argument("--phases", metavar="NETWORK", choices=["standin", "inception"],
                    help="also run `python -m pipeline.score --verbose` with this network (cold, then twice warm) "
                         "and report the wall time of each of its steps")
    ap.add_argument("--warm-runs", type=int, default=2, choices=[0, 1, 2],
                    help="--phases: score runs after the cold one, reusing the cached reference (default 2)")
    ap.add_argument("--no-math", action="store_true",
                    help="skip the full-size MiFID and Frechet steps on random features (about 25 s)")
    ap.add_argument("--noise-submission", action="store_true",
                    help="--full-score and --phases score a zip of random-noise images, not the generated one: "
                         "with random weights, G's near-identical images give a singular covariance, which sends "
                         "score.frechet eigh to its sqrtm fallback; noise has full-rank features, as a trained G has")
    ap.add_argument("--frechet", default="eigh", choices=["sqrtm", "eigh"],
                    help="score.frechet of the score runs (default: %(default)s, the score's default)")
    ap.add_argument("--zip", type=Path, metavar="ZIP",
                    help="time this submission zip of --n images instead of generating one (no generate figure)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="generate.precision")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    ck, zp = args.work / "checkpoint.pt", args.zip or args.work / "images.zip"
    py = sys.executable
    results = {"model": args.model, "n": args.n, "device": str(pick_device(args.device)), "precision": args.precision,
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    if args.zip is None:
        make_checkpoint(ck, args.model)
        wall, steps = timed_steps([py, "-m", "pipeline.generate", "--checkpoint", str(ck), "--out", str(zp), "--n",
                                   str(args.n), "--no-progress", "--device", args.device, "--set",
                                   f"generate.precision={args.precision}", "--verbose"])
        results["generate_zip_s"], results["generate_steps_s"] = round(wall, 2), steps
    results["validate_s"] = round(timed([py, "-m", "pipeline.validate", str(zp), "--expected", str(args.n)]), 2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.feature_images, 64, 64, 3), dtype=np.uint8)
    for name in args.networks:
        rate, f, note = feature_rate(name, images, args.device, 100)
        results[f"features_{name}_img_per_s"] = round(rate, 1)
        results[f"features_{name}_weights"] = note
    if not args.no_math:
        results.update(metric_math(rng))
    if args.noise_submission and (args.full_score or args.phases):
        zp = args.work / "noise.zip"
        noise = np.random.default_rng(2)
        write_zip(zp, (noise.integers(0, 256, (min(1000, args.n - i), 64, 64, 3), dtype=np.uint8)
                       for i in range(0, args.n, 1000)), args.n)
        results["scored_zip"] = f"{args.n} random-noise images (--noise-submission)"
    if args.full_score:
        results.update(full_score(args.work, zp, args.device, args.n, args.ref_images, args.frechet))
    if args.phases:
        results["score_phases"] = score_phases(args.work, zp, args.device, args.n, args.ref_images, args.phases,
                                               args.frechet, args.warm_runs)
    import resource

    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(results, indent=2))
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
