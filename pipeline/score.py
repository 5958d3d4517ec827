"""Stage ``score``: the MiFID of a submission zip, as Kaggle's scorer computed it.

    python -m pipeline.score --submission submissions/images.zip --photos data/prepared/photos64.npz \\
        [--crops data/prepared/dogs64.npz] [--metrics metrics/score.json] [--leaderboard-dir submissions] \\
        [--cache data/reference] [--checkpoint models/checkpoint.pt]

1. The zip is checked as Kaggle's scorer did (pipeline.validate, ``score.expected_images`` PNGs); a zip
   that fails is never scored.
2. The reference set is ``score.reference``: ``photos`` (Kaggle's: every training photo whole, squashed to
   64x64, written by the reference stage) or ``crops`` (the prepared training set).
3. The submission's images and the reference images go through the feature network ``score.network``:
   ``inception`` (Kaggle's public-board network, fed as the TF graph fed it; weights on disk or
   downloadable) or ``standin`` (no download; its numbers are NOT comparable to Kaggle's). What MiFID needs
   from the reference (float64 mean, covariance, normalised features) is cached in
   ``--cache``/<network>_<reference>.npz, keyed by a hash of the images, the network's weights and the
   reference kind, and recomputed only when one of them changes.
4. MiFID with ``score.eps`` (0.1 as on the public board; 0.25 as on the private one) goes to the metrics
   JSON, with the FID's trace taken by ``score.frechet`` (eigh: from eigenvalues, fast; sqrtm: Kaggle's
   literal algorithm; the same number, see BENCHMARKS.md); a memorizer (d < eps) gets a loud warning; a row goes to
   the leaderboard in ``--leaderboard-dir``. ``--verbose`` ends with the wall time of each step.

Exit status 0 on success, 2 with ``error: <problem>`` for an invalid zip, a missing file or missing weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pipeline import leaderboard
from pipeline.config import ConfigError, ScoreConfig, add_config_arguments, config_from_args
from pipeline.errors import error_text
from pipeline.files import write_json
from pipeline.metrics.features import FeatureNetworkError, load_network
from pipeline.metrics.scoring import (cache_file, not_comparable_note, pixels_sha256, reference_statistics,
                                      score_images, submission_features)
from pipeline.phases import Phases, record, run_phases
from pipeline.reference_set import load_reference
from pipeline.runtime import pick_device
from pipeline.validate import read_zip_images

METRIC_KEYS = ("network", "reference", "reference_images", "comparable_to_kaggle", "n_images", "fid", "frechet",
               "distance", "distance_thresholded", "mifid", "eps", "memorizer", "seconds", "submission_sha256",
               "model", "params")


def memorizer_warning(metrics: dict) -> str:
    """The lines printed on stderr for a memorizer (d < eps), each starting with ``WARNING: memorizer``."""
    d, fid, eps = metrics["distance"], metrics["fid"], metrics["eps"]
    times = 1.0 / metrics["distance_thresholded"] if metrics["distance_thresholded"] > 0 else float("inf")
    lines = [
        f"the memorization distance d = {d:.4g} is below eps = {eps}: "
        "these images are (near-)copies of training images.",
        f"Kaggle would have penalised this submission: its MiFID is FID / d = {fid:.4g} / {d:.4g} = "
        f"{metrics['mifid']:.4g} instead of FID = {fid:.4g}, i.e. {times:.3g} times worse.",
        "In 2019 such submissions were also disqualified by hand. Do not submit this model as it is.",
    ]
    if metrics["network"] != "inception":
        lines.append("(measured with the stand-in network; Inception's distance, Kaggle's, may differ)")
    return "\n".join(f"WARNING: memorizer: {line}" for line in lines)


def summary(metrics: dict, rank: str | None) -> str:
    verdict = (f"d {metrics['distance']:.4f} < eps {metrics['eps']}: MEMORIZER, penalised"
               if metrics["memorizer"] else f"d {metrics['distance']:.4f} >= eps {metrics['eps']}: no penalty")
    lines = [
        f"score: MiFID {metrics['mifid']:.4g} (FID {metrics['fid']:.4g} by {metrics['frechet']}, {verdict}) on "
        f"{metrics['n_images']} images, {metrics['network']} network, against {metrics['reference_images']} "
        f"reference {metrics['reference']}, {metrics['seconds']:.1f} s"
    ]
    if metrics["comparable_to_kaggle"]:
        best, median = leaderboard.public_board_summary()
        lines.append(f"  on Kaggle's 2019 public board it {rank} (497 real generative models: best {best:.2f}, "
                     f"median {median:.1f})")
    else:
        lines.append(f"  NOTE: {not_comparable_note(metrics['network'], metrics['reference'])}")
    return "\n".join(lines)


def score_submission(
    submission: str | os.PathLike,
    photos: str | os.PathLike | None,
    crops: str | os.PathLike | None,
    cfg: ScoreConfig,
    cache_dir: str | os.PathLike,
    device="cpu",
    progress: bool = True,
    phases: Phases | None = None,
) -> tuple[dict, bool]:
    """The stage's core: (metrics dict, whether the reference statistics came from the cache).

    The reference is ``photos`` or ``crops`` (dataset files) as ``cfg.reference`` says; only that one must exist.
    The metrics hold METRIC_KEYS less model and params. Raises SubmissionError (invalid zip),
    FeatureNetworkError (network or weights), FileNotFoundError / ValueError (no reference set).
    ``phases``: where the steps' wall times go (None: not recorded).
    """
    t0 = time.perf_counter()
    with record(phases, "zip: read, validate, decode"):
        images = read_zip_images(submission, cfg.expected_images)  # first: the check most likely to fail
    with record(phases, "feature network: build"):
        network = load_network(cfg.network, cfg.inception_weights)  # before the costly part: weights may be missing
    with record(phases, "reference: dataset load"):
        ref_images = load_reference(cfg.reference, photos, crops).images
    stats, reused = reference_statistics(ref_images, network, cache_dir, cfg.reference, cfg.batch_size, device,
                                         progress, phases)
    sha256 = pixels_sha256(images)  # hashed once: the features cache's key and the leaderboard's identity
    features, _ = submission_features(images, network, cache_dir, cfg.batch_size, device, progress, phases, sha256)
    metrics = score_images(images, stats, network, cfg, device, progress, features=features, phases=phases)
    metrics["submission_sha256"] = sha256  # the same images scored twice are one leaderboard row
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    return metrics, reused


def checkpoint_description(path: str | None) -> tuple[str, str]:
    """(model, params) for the leaderboard from ``--checkpoint``; ("unknown", "unknown") without one."""
    if not path:
        return leaderboard.UNKNOWN, leaderboard.UNKNOWN
    from pipeline.checkpoint import load_checkpoint  # imports the models: only when a checkpoint is named

    return leaderboard.describe_checkpoint(load_checkpoint(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.score",
        description="Score a submission zip with Kaggle's MiFID against the reference set score.reference (photos: "
        "Kaggle's, the whole training photos; crops: the prepared training set); write the metrics JSON and add a "
        "row to the local leaderboard. Warns loudly when the images are copies.",
    )
    parser.add_argument("--submission", required=True, metavar="ZIP",
                        help="the submission, e.g. submissions/images.zip")
    parser.add_argument("--photos", metavar="FILE.npz",
                        help="the photo reference (written by pipeline.reference); used when score.reference is photos")
    parser.add_argument("--crops", metavar="FILE.npz",
                        help="the prepared training set (written by pipeline.prepare); used when score.reference is "
                             "crops")
    parser.add_argument("--metrics", default="metrics/score.json", metavar="FILE.json",
                        help="metrics to write (default: %(default)s)")
    parser.add_argument("--leaderboard-dir", default="submissions", metavar="DIR",
                        help="folder of leaderboard.csv/.md/.png (default: %(default)s)")
    parser.add_argument("--cache", default="data/reference", metavar="DIR",
                        help="cache of reference statistics and of the submission's features, per network "
                             "(default: %(default)s)")
    parser.add_argument("--checkpoint", metavar="FILE",
                        help="checkpoint the images came from; its model and settings go into the leaderboard row")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true",
                        help="at the end, print the wall time of each step (imports, zip, hashing, caches, features, ...)")
    add_config_arguments(parser, "score")
    args = parser.parse_args(argv)
    phases = run_phases(args.verbose)
    try:
        cfg = config_from_args(args, "score")
        # early, so that a wrong checkpoint path or device fails before any feature is computed
        model, params = checkpoint_description(args.checkpoint)
        try:
            device = pick_device(args.device)
        except RuntimeError as exc:
            raise ConfigError(str(exc)) from None
        metrics, reused = score_submission(args.submission, args.photos, args.crops, cfg, args.cache, device,
                                           progress=not args.no_progress, phases=phases)
    # ValueError covers ConfigError, SubmissionError, CheckpointError, a bad dataset and broken features
    except (ValueError, FeatureNetworkError, OSError) as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    metrics = {**metrics, "model": model, "params": params}  # in the metrics: every experiment's row can name them
    metrics = {k: metrics[k] for k in METRIC_KEYS}
    try:
        with record(phases, "metrics JSON + leaderboard"):
            write_json(args.metrics, metrics)
            row = leaderboard.make_row(metrics, model, params)
            paths = leaderboard.update_leaderboard(args.leaderboard_dir, row)
    except OSError as exc:
        print(f"{summary(metrics, None)}\nerror: {error_text(exc)}", file=sys.stderr)  # the score is not lost
        return 2
    if metrics["memorizer"]:
        print(memorizer_warning(metrics), file=sys.stderr)
    rank = row["kaggle_2019_rank"] if metrics["comparable_to_kaggle"] else None
    print(f"reference statistics: {'reused' if reused else 'computed and cached in'} "
          f"{cache_file(args.cache, cfg.network, cfg.reference)}")
    print(summary(metrics, rank))
    print(f"wrote {args.metrics}; leaderboard row added to {paths['csv']} ({paths['md'].name}, {paths['png'].name})")
    if phases is not None:
        print("wall time per step:\n" + phases.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
