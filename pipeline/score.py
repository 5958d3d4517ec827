"""Stage ``score``: the MiFID of a submission zip against the prepared training images, as Kaggle computed it.

    python -m pipeline.score --submission submissions/images.zip --reference data/prepared/dogs64.npz \\
        [--metrics metrics/score.json] [--leaderboard-dir submissions] [--cache data/reference] \\
        [--checkpoint models/checkpoint.pt]

1. The zip is checked as Kaggle's scorer did (pipeline.validate, ``score.expected_images`` PNGs).
2. Its images and the reference images go through the feature network ``score.network``: ``inception``
   (Kaggle's public-board network; weights on disk or downloadable) or ``standin`` (no download; its
   numbers are NOT comparable to Kaggle's). What MiFID needs from the reference set (mean, covariance,
   normalised features) is cached in ``--cache``/<network>.npz, keyed by a hash of the images and of the
   network's weights, and recomputed only when either changes.
3. MiFID with ``score.eps`` (0.1 as on the public board; 0.25 as on the private one) goes to the metrics
   JSON, with the FID's trace taken by ``score.frechet`` (sqrtm: Kaggle's; eigh: the same number from
   eigenvalues, fast); a memorizer (d < eps) gets a loud warning; a row goes to the leaderboard in
   ``--leaderboard-dir``. ``--verbose`` ends with the wall time of each step.

Exit status 0 on success, 2 with ``error: <problem>`` for an invalid zip, a missing file or missing weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pipeline.config import ConfigError, ScoreConfig, add_config_arguments, config_from_args
from pipeline.errors import error_text
from pipeline.files import load_dataset, require_competition_size, write_json
from pipeline.metrics import leaderboard
from pipeline.metrics.features import FeatureNetworkError, load_network
from pipeline.metrics.phases import Phases, record, run_phases
from pipeline.metrics.scoring import (NOT_COMPARABLE_NOTE, cache_file, read_zip_images, reference_statistics,
                                      score_images, submission_features)
from pipeline.runtime import pick_device

METRIC_KEYS = ("network", "comparable_to_kaggle", "n_images", "fid", "frechet", "distance", "distance_thresholded",
               "mifid", "eps", "memorizer", "seconds")


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
    if not metrics["comparable_to_kaggle"]:
        lines.append("(measured with the stand-in network; Inception's distance, Kaggle's, may differ)")
    return "\n".join(f"WARNING: memorizer: {line}" for line in lines)


def summary(metrics: dict, rank: str | None) -> str:
    verdict = (f"d {metrics['distance']:.4f} < eps {metrics['eps']}: MEMORIZER, penalised"
               if metrics["memorizer"] else f"d {metrics['distance']:.4f} >= eps {metrics['eps']}: no penalty")
    lines = [
        f"score: MiFID {metrics['mifid']:.4g} (FID {metrics['fid']:.4g} by {metrics['frechet']}, {verdict}) on "
        f"{metrics['n_images']} images, {metrics['network']} network, {metrics['seconds']:.1f} s"
    ]
    if metrics["comparable_to_kaggle"]:
        best, median = leaderboard.public_board_summary()
        lines.append(f"  on Kaggle's 2019 public board it {rank} (497 real generative models: best {best:.2f}, "
                     f"median {median:.1f}; the reference here is the prepared crops, not Kaggle's whole photos, so only roughly)")
    else:
        lines.append(f"  NOTE: {NOT_COMPARABLE_NOTE}")
    return "\n".join(lines)


def score_submission(
    submission: str | os.PathLike,
    reference: str | os.PathLike,
    cfg: ScoreConfig,
    cache_dir: str | os.PathLike,
    device="cpu",
    progress: bool = True,
    phases: Phases | None = None,
) -> tuple[dict, bool]:
    """The stage's core: (metrics dict with exactly METRIC_KEYS, whether the reference came from the cache).

    Raises SubmissionError (invalid zip), FeatureNetworkError (network or weights), FileNotFoundError /
    ValueError (no prepared dataset). ``phases``: where the steps' wall times go (None: not recorded).
    """
    t0 = time.perf_counter()
    with record(phases, "zip: read, validate, decode"):
        images = read_zip_images(submission, cfg.expected_images)  # first: the check most likely to fail
    with record(phases, "feature network: build"):
        network = load_network(cfg.network, cfg.inception_weights)  # before the costly part: weights may be missing
    with record(phases, "reference: dataset load"):
        ref = load_dataset(reference)
        require_competition_size(ref, reference, "the score (a reference for 64x64 submissions)")
        ref_images = ref.images
    stats, reused = reference_statistics(ref_images, network, cache_dir, cfg.batch_size, device, progress, phases)
    features, _ = submission_features(images, network, cache_dir, cfg.batch_size, device, progress, phases)
    metrics = score_images(images, stats, network, cfg, device, progress, features=features, phases=phases)
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
        description="Score a submission zip with Kaggle's MiFID against the prepared training images; write the "
        "metrics JSON and add a row to the local leaderboard. Warns loudly when the images are copies.",
    )
    parser.add_argument("--submission", required=True, metavar="ZIP",
                        help="the submission, e.g. submissions/images.zip")
    parser.add_argument("--reference", required=True, metavar="FILE.npz",
                        help="prepared dataset whose images are the reference (written by pipeline.prepare)")
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
        metrics, reused = score_submission(args.submission, args.reference, cfg, args.cache, device,
                                           progress=not args.no_progress, phases=phases)
    # ValueError covers ConfigError, SubmissionError, CheckpointError, a bad dataset and broken features
    except (ValueError, FeatureNetworkError, OSError) as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
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
          f"{cache_file(args.cache, cfg.network)}")
    print(summary(metrics, rank))
    print(f"wrote {args.metrics}; leaderboard row added to {paths['csv']} ({paths['md'].name}, {paths['png'].name})")
    if phases is not None:
        print("wall time per step:\n" + phases.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
