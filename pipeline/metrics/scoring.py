"""The score stage's building blocks, shared with train's in-training MiFID and the report stage: the cached
reference statistics (mean, covariance, normalised features of the reference set:
the whole photos, as Kaggle, or the prepared crops; pipeline.reference_set), a submission's cached
features, and the MiFID metrics dict of a set of generated images.

Stages import these from here, never from one another, so that DVC reruns train only when what it uses
changes (``tests/test_dvc_deps.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import ScoreConfig
from pipeline.files import atomic_path
from pipeline.metrics.features import FeatureNetwork, extract_features
from pipeline.metrics.mifid import CovarianceRoot, covariance_root, mifid_from_reference, nonzero_rows, prepare_reference
from pipeline.phases import Phases, record
from pipeline.reference_set import comparable_to_kaggle

NOT_COMPARABLE_NOTE = ("stand-in network: these numbers are NOT comparable to Kaggle's leaderboard (nor to "
                       "Inception scores); set score.network: inception for those")
CROPS_NOTE = ("crops reference: Kaggle compared with the whole training photos, not the prepared crops, so these "
              "numbers are NOT Kaggle's; set score.reference: photos for those")


def not_comparable_note(network: str, reference: str) -> str:
    """Why a score cannot be set beside Kaggle's 2019 board ("" when it can: inception against the photos)."""
    if network != "inception":
        return NOT_COMPARABLE_NOTE
    return CROPS_NOTE if reference != "photos" else ""



# ----------------------------------------------------------------------------------- reference statistics


@dataclass(frozen=True)
class ReferenceStats:
    """What MiFID needs from the reference set (see mifid.prepare_reference).

    mu float64 [D], sigma float64 [D, D], normalized float64 [M', D] (non-zero rows, unit norm);
    key: what they were computed from (data hash, network, weights, reference kind); n_images: M;
    kind: the reference kind, "photos" or "crops" (pipeline.reference_set.REFERENCE_KINDS);
    rows int64 [M']: the reference image of each normalised row (all-zero rows are dropped), so a nearest
    neighbour can be shown as the training crop it is;
    root: the symmetric square root of sigma (score.frechet: eigh), cached with the rest.
    """

    mu: np.ndarray
    sigma: np.ndarray
    normalized: np.ndarray
    key: str
    n_images: int
    rows: np.ndarray
    kind: str
    root: CovarianceRoot


def pixels_sha256(images: np.ndarray) -> str:
    """Hex sha256 of the pixels of ``images`` uint8 [N, H, W, 3] (hashed in place, no copy of a 270 MB array)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()


def reference_key(images: np.ndarray, network: FeatureNetwork, kind: str = "", sha256: str | None = None) -> str:
    """A string that changes whenever the images, the network's weights or input path, or the reference kind
    change (kind "" for a submission's features). ``sha256``: :func:`pixels_sha256` of ``images`` if known."""
    return json.dumps({
        "data_sha256": sha256 or pixels_sha256(images),
        "shape": list(images.shape),
        "network": network.name,
        "weights": network.fingerprint,
        "reference": kind,
    }, sort_keys=True)


def cache_file(cache_dir: str | os.PathLike, network_name: str, kind: str) -> Path:
    """One cache file per network and reference kind, so switching back and forth recomputes nothing."""
    return Path(cache_dir) / f"{network_name}_{kind}.npz"


def load_keyed(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays of the cache file ``path`` if it was written for ``key``; None if absent, stale or unreadable.

    The caller then recomputes and replaces it: a stale file (other images, network, weights or reference
    kind) is never used, and an unreadable one (truncated, not a cache) is named on stderr.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return {name: z[name] for name in z.files if name != "key"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        print(f"note: the cache {path} cannot be read ({type(exc).__name__}: {exc}); recomputing it",
              file=sys.stderr)
        return None


def save_keyed(path: Path, key: str, **arrays: np.ndarray) -> None:
    """Write ``arrays`` and ``key`` to the cache file ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: numpy adds no ".npz" to the name
        np.savez(fh, key=np.array(key), **arrays)


def load_cached_reference(path: Path, key: str, kind: str) -> ReferenceStats | None:
    """The cached statistics at ``path`` if they were computed for ``key``; None otherwise."""
    z = load_keyed(path, key)
    if z is None or not {"mu", "sigma", "normalized", "n_images", "rows", "root", "root_singular"} <= set(z):
        return None
    root = CovarianceRoot(z["root"], bool(z["root_singular"]))
    return ReferenceStats(z["mu"], z["sigma"], z["normalized"], key, int(z["n_images"]), z["rows"], kind, root)


def save_reference(path: Path, stats: ReferenceStats) -> None:
    save_keyed(path, stats.key, n_images=np.array(stats.n_images), mu=stats.mu, sigma=stats.sigma,
               normalized=stats.normalized, rows=stats.rows, root=stats.root.root,
               root_singular=np.array(stats.root.singular))


def reference_statistics(
    images: np.ndarray,
    network: FeatureNetwork,
    cache_dir: str | os.PathLike,
    kind: str,
    batch_size: int = 100,
    device="cpu",
    progress: bool = True,
    phases: Phases | None = None,
) -> tuple[ReferenceStats, bool]:
    """(statistics of the reference ``images`` uint8 [M, H, W, 3] under ``network``, whether they came from the
    cache). ``kind``: "photos" or "crops", recorded with them.

    Reused from ``cache_dir``/<network>_<kind>.npz when its key matches; computed and written (atomically,
    replacing a stale file) otherwise. ``phases``: where the steps' wall times go (None: not recorded).
    The square root of the covariance (for score.frechet: eigh) is always computed
    with the rest, so a cache serves either method.
    """
    with record(phases, "reference: cache key (hash)"):
        key = reference_key(images, network, kind)
    path = cache_file(cache_dir, network.name, kind)
    with record(phases, "reference: cache read"):
        cached = load_cached_reference(path, key, kind)
    if cached is not None:
        return cached, True
    with record(phases, "reference: features"):
        features = extract_features(network, images, batch_size, device, progress)
    with record(phases, "reference: statistics"):
        mu, sigma, normalized = prepare_reference(features)
    with record(phases, "reference: covariance root"):
        stats = ReferenceStats(mu, sigma, normalized, key, len(images), np.flatnonzero(nonzero_rows(features)),
                               kind, covariance_root(sigma))
    with record(phases, "reference: cache write"):
        save_reference(path, stats)
    return stats, False


def submission_features(
    images: np.ndarray,
    network: FeatureNetwork,
    cache_dir: str | os.PathLike,
    batch_size: int = 100,
    device="cpu",
    progress: bool = True,
    phases: Phases | None = None,
    sha256: str | None = None,
) -> tuple[np.ndarray, bool]:
    """(features float32 [N, D] of a submission's ``images`` uint8 [N, H, W, 3], whether they came from the cache).

    Kept in ``cache_dir``/<network>_submission.npz under the same kind of key as the reference statistics
    (the pixels' hash and the network's weights), so the report stage that follows the score stage reuses
    them: with Inception on a CPU that saves the 10,000 images' features, about 9 minutes.
    """
    with record(phases, "submission: cache key (hash)"):
        key = reference_key(images, network, sha256=sha256)
    path = Path(cache_dir) / f"{network.name}_submission.npz"
    with record(phases, "submission: cache read"):
        cached = load_keyed(path, key)
    if cached is not None and "features" in cached:
        return cached["features"], True
    with record(phases, "submission: features"):
        features = extract_features(network, images, batch_size, device, progress)
    with record(phases, "submission: cache write"):
        save_keyed(path, key, features=features)
    return features, False


# ---------------------------------------------------------------------------------------------- scoring


def score_images(
    images: np.ndarray,
    stats: ReferenceStats,
    network: FeatureNetwork,
    cfg: ScoreConfig,
    device="cpu",
    progress: bool = True,
    features: np.ndarray | None = None,
    phases: Phases | None = None,
) -> dict:
    """MiFID of generated ``images`` uint8 [N, 64, 64, 3] against ``stats``: the metrics dict, less ``seconds``.

    ``features``: the images' features when already computed (see :func:`submission_features`).
    """
    if features is None:
        with record(phases, "submission: features"):
            features = extract_features(network, images, cfg.batch_size, device, progress)
    result = mifid_from_reference(features, stats.mu, stats.sigma, stats.normalized, eps=cfg.eps, chunk=cfg.chunk,
                                  phases=phases, frechet=cfg.frechet, ref_root=stats.root)
    return {
        "network": network.name,
        "reference": stats.kind,  # photos: Kaggle's reference; crops: the prepared training crops
        "reference_images": stats.n_images,
        # only Kaggle's network against Kaggle's reference gives a number to set beside the 2019 board
        "comparable_to_kaggle": comparable_to_kaggle(network.name, stats.kind),
        "n_images": len(images),
        "fid": result["fid"],
        "frechet": result["frechet"],  # the method that gave the FID: sqrtm (Kaggle's), eigh, or eigh's fallback
        "distance": result["distance"],
        "distance_thresholded": result["distance_thresholded"],
        "mifid": result["mifid"],
        "eps": cfg.eps,
        "memorizer": result["distance"] < cfg.eps,
    }
