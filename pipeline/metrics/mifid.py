"""MiFID (memorization-informed FID), computed from feature vectors as Kaggle's scorer did.

With ``f_g`` the features of the generated images and ``f_t`` those of the reference images:

1. FID: Frechet distance between Gaussians fitted to ``f_g`` and ``f_t`` (every row counts).
2. Memorization distance ``d``: drop all-zero rows; L2-normalise rows; for each generated row the
   minimum over reference rows of ``1 - |cos|``; ``d`` is the mean of these minima. The direction is
   generated -> reference (torchmetrics' MiFID goes the other way and does not reproduce Kaggle).
3. ``d_thr = d if d < eps else 1``  (eps 0.1 on the public board, 0.25 on the private one).
4. ``MiFID = FID / (d_thr + 1e-15)``.

The chain is split so that the score stage can cache what depends only on the reference set:
``prepare_reference(f_t) -> (mu, sigma, normalized)`` once, then :func:`mifid_from_reference` per
submission. :func:`mifid_from_features` is the same computation in one call. Features come from a
network outside this module (Inception pool_3, 2048-d, on the public board).

The trace of ``sqrtm(sigma1 sigma2)`` is taken one of two ways (``FRECHET_METHODS``): ``eigh`` (the default),
from the eigenvalues of ``R sigma1 R``, ``R`` the symmetric square root of the reference covariance, which is
cached with the reference (see :func:`frechet_distance_eigh`), or ``sqrtm``, Kaggle's literal computation
(scipy's general matrix square root, on one core whatever the machine, and many times slower). The two agree
far below any leaderboard difference (BENCHMARKS.md has the agreement and the times).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from pipeline.phases import Phases, record

EPS_PUBLIC = 0.1  # memorization threshold of the public leaderboard
EPS_PRIVATE = 0.25  # ... and of the private one (set by hand at the end of the competition)
SQRTM_EPS = 1e-6  # added to both covariance diagonals when the product's square root is not finite
IMAGINARY_TOLERANCE = 1e-3  # largest |imaginary part| accepted on the diagonal of sqrtm(s1 s2)
DISTANCE_FLOOR = 1e-15  # keeps MiFID finite when d_thr is 0 (an exact copy of a reference image)
FRECHET_METHODS = ("sqrtm", "eigh")  # how Tr sqrtm(sigma1 sigma2) is taken; sqrtm is Kaggle's computation
EIGH_FALLBACK = "sqrtm (eigh fallback)"  # the method recorded when eigh hands a singular case to sqrtm


def _check_features(features: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D] (one feature row per image), got shape {features.shape}")
    if not np.issubdtype(features.dtype, np.floating) and not np.issubdtype(features.dtype, np.integer):
        raise ValueError(f"{name} must hold numbers, got dtype {features.dtype}")
    if not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).any(axis=1).sum())
        raise ValueError(f"{name}: {bad} feature rows hold NaN or inf; check the network's input and precision")
    return features


# ---------------------------------------------------------------------------------------------------- FID


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a feature set.

    features: float [N, D], N >= 2, one row per image.
    Returns mu float64 [D] and sigma float64 [D, D] (unbiased, divided by N - 1, as ``np.cov``).
    """
    features = _check_features(features, "features")
    if len(features) < 2:
        raise ValueError(f"a covariance needs at least 2 feature rows, got {len(features)}")
    features = features.astype(np.float64, copy=False)
    mu = features.mean(axis=0)
    sigma = np.atleast_2d(np.cov(features, rowvar=False))  # D == 1 gives a 0-d array otherwise
    return mu, sigma


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = SQRTM_EPS
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

        ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))

    mu: [D]; sigma: [D, D]. If the square root of the product is not finite, ``eps`` is added to both
    diagonals and it is taken again, as Kaggle's scorer did. Kaggle's scipy (2019) failed that way on
    singular products; scipy 1.17 returns a finite root for them, so here the offset practically never
    applies (docs/scoring.md). Rounding leaves a tiny imaginary part,
    which is dropped; an imaginary diagonal entry larger than 1e-3 means the inputs are not valid
    covariances (or are badly conditioned) and raises ``ValueError``.
    """
    mu1, sigma1, mu2, sigma2 = _check_gaussians(mu1, sigma1, mu2, sigma2)
    d = mu1.shape[0]
    with warnings.catch_warnings():
        # scipy warns on singular products; a non-finite result is handled below, a finite one is kept
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(d) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if not np.isfinite(covmean).all():
        raise ValueError(f"the square root of the covariance product is not finite, even with {eps} added "
                         "to the diagonals; check the features for constant or duplicated columns")
    if np.iscomplexobj(covmean):
        worst = float(np.abs(np.diagonal(covmean).imag).max())
        if worst > IMAGINARY_TOLERANCE:
            raise ValueError(
                f"sqrtm(sigma1 @ sigma2) has an imaginary diagonal entry of {worst:.3g} (tolerance "
                f"{IMAGINARY_TOLERANCE}); the covariances are not positive semi-definite or are badly conditioned"
            )
        covmean = covmean.real
    return _fid(mu1, sigma1, mu2, sigma2, float(np.trace(covmean)))


def _check_gaussians(mu1, sigma1, mu2, sigma2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four as float64 [D], [D, D], [D], [D, D]; ValueError when their shapes disagree."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}; "
            "expected [D], [D, D], [D], [D, D] with one D"
        )
    return mu1, sigma1, mu2, sigma2


def _fid(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, trace_covmean: float) -> float:
    diff = mu1 - mu2
    fid = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean)
    # identical sets can round to about -1e-7; a negative FID would rank a copy above every real model
    return max(fid, 0.0)


@dataclass(frozen=True)
class CovarianceRoot:
    """The symmetric square root of a covariance ``sigma`` [D, D], for :func:`frechet_distance_eigh`.

    root:     float64 [D, D], symmetric, ``root @ root == sigma`` (negative rounding eigenvalues taken as 0)
    singular: True when ``sigma`` is singular to rounding (smallest eigenvalue <= D * 2.2e-16 * largest):
              then the product is singular, where the trace from eigenvalues and scipy's sqrtm can differ
              (and Kaggle's 2019 scipy needed its 1e-6 offset), so :func:`frechet_distance_eigh` leaves
              such cases to :func:`frechet_distance`
    """

    root: np.ndarray
    singular: bool


def covariance_root(sigma: np.ndarray) -> CovarianceRoot:
    """The symmetric square root of the covariance ``sigma`` float [D, D], from its eigendecomposition."""
    sigma = np.atleast_2d(np.asarray(sigma, np.float64))
    w, v = np.linalg.eigh(sigma)
    # numpy's matrix_rank tolerance: eigenvalues below it are rounding noise around 0
    tol = max(float(w[-1]), 0.0) * len(w) * np.finfo(np.float64).eps
    return CovarianceRoot((v * np.sqrt(np.clip(w, 0.0, None))) @ v.T, bool(w[0] <= tol))


def is_positive_definite(sigma: np.ndarray) -> bool:
    """True when the symmetric ``sigma`` [D, D] has a Cholesky factor, i.e. it is positive definite to rounding.

    A constant feature (zero variance) or fewer samples than dimensions + 1 make a covariance fail this.
    """
    try:
        np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        return False
    return True


def frechet_distance_eigh(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
    root2: CovarianceRoot | None = None, eps: float = SQRTM_EPS,
) -> tuple[float, str]:
    """The Frechet distance of :func:`frechet_distance`, with the trace of the square root from eigenvalues.

    With R the symmetric square root of sigma2, ``sigma1 sigma2`` is similar to the symmetric positive
    semi-definite ``R sigma1 R`` (when R is invertible), so ``Tr sqrtm(sigma1 sigma2)`` is the sum of the square
    roots of that matrix's eigenvalues: two matrix products and one ``eigvalsh`` instead of a Schur
    decomposition. ``root2``: :func:`covariance_root` of sigma2 when already known (the reference's is cached).

    Where either covariance is singular, so is the product: there the number is scipy's, as the default
    method gives it, and the distance is taken with :func:`frechet_distance` itself (which adds ``eps`` if
    scipy's root is not finite, as Kaggle's 2019 scipy's was for singular products). Returns (FID, the method that gave it: "eigh" or ``EIGH_FALLBACK``).
    """
    mu1, sigma1, mu2, sigma2 = _check_gaussians(mu1, sigma1, mu2, sigma2)
    root2 = covariance_root(sigma2) if root2 is None else root2
    if root2.root.shape != sigma2.shape:
        raise ValueError(f"root2 is {root2.root.shape}, sigma2 {sigma2.shape}: not the root of this covariance")
    if root2.singular or not is_positive_definite(sigma1):
        return frechet_distance(mu1, sigma1, mu2, sigma2, eps), EIGH_FALLBACK
    eigenvalues = np.linalg.eigvalsh(root2.root @ sigma1 @ root2.root)
    # PSD in exact arithmetic: negative values are rounding around 0 and count as 0
    return _fid(mu1, sigma1, mu2, sigma2, float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())), "eigh"


def frechet_distance_by(
    method: str, mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
    root2: CovarianceRoot | None = None,
) -> tuple[float, str]:
    """(FID, the method that gave it) with ``method`` one of ``FRECHET_METHODS``; sigma2 is the reference's,
    ``root2`` its cached :func:`covariance_root` (eigh only)."""
    if method == "sqrtm":
        return frechet_distance(mu1, sigma1, mu2, sigma2), "sqrtm"
    if method == "eigh":
        return frechet_distance_eigh(mu1, sigma1, mu2, sigma2, root2)
    raise ValueError(f"unknown Frechet method {method!r}; choose one of {', '.join(FRECHET_METHODS)}")


# ------------------------------------------------------------------------------------ memorization distance


def nonzero_rows(features: np.ndarray) -> np.ndarray:
    """bool [N]: True where a feature row has at least one non-zero entry."""
    return np.any(np.asarray(features) != 0, axis=1)


def drop_zero_rows(features: np.ndarray) -> np.ndarray:
    """features [N, D] -> [N', D] without its all-zero rows (they have no direction, so no cosine)."""
    features = np.asarray(features)
    return features[nonzero_rows(features)]


def normalize_rows(features: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Rows scaled to unit L2 norm: [N, D] -> ``dtype`` [N, D].

    Every row must be non-zero: drop all-zero rows first with :func:`drop_zero_rows`.
    """
    features = np.asarray(features, dtype=np.float64)  # the norm in float64: no overflow or underflow
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{int((norms == 0).sum())} rows are all zeros and have no direction; "
                         "remove them with drop_zero_rows() before normalize_rows()")
    return (features / norms).astype(dtype, copy=False)


def nearest_cosine_neighbours(
    gen_normalized: np.ndarray, ref_normalized: np.ndarray, chunk: int = 1024, ref_chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """For each generated row, ``min over reference rows of 1 - |cos|`` and the reference row reaching it.

    gen_normalized: [N, D], ref_normalized: [M, D], unit L2 rows, same float dtype: float64 as Kaggle's
    scorer (the score path's default; float32 is about 2x faster and moves a normal submission's d by about
    1e-9, more only for near-exact copies).
    Returns (distances float64 [N] in [0, 1], nearest int64 [N], row indices into ``ref_normalized``;
    the first such row on ties). Works on blocks of ``chunk`` x ``ref_chunk`` rows, so the N x M matrix
    never exists (10,000 x 20,579 float64 would be 1.6 GB).

    Rounding can push |cos| of an exact copy a hair above 1; it is clipped to 1 so that a copy's
    distance is 0, never negative (a negative d would make MiFID negative, i.e. look *best*).
    """
    if chunk < 1 or ref_chunk < 1:
        raise ValueError(f"chunk sizes must be at least 1, got chunk={chunk}, ref_chunk={ref_chunk}")
    if gen_normalized.ndim != 2 or ref_normalized.ndim != 2 or gen_normalized.shape[1] != ref_normalized.shape[1]:
        raise ValueError(
            f"expected [N, D] and [M, D] with one D, got {gen_normalized.shape} and {ref_normalized.shape}"
        )
    if len(ref_normalized) == 0:
        raise ValueError("no reference rows to compare with (all reference feature rows were zero?)")
    n = len(gen_normalized)
    best = np.ones(n, dtype=np.float64)  # 1 - |cos| <= 1 always
    nearest = np.zeros(n, dtype=np.int64)
    for g0 in range(0, n, chunk):
        gen_block = gen_normalized[g0:g0 + chunk]
        rows = np.arange(len(gen_block))
        best_abs_cos = np.full(len(gen_block), -1.0, dtype=gen_block.dtype)
        best_index = np.zeros(len(gen_block), dtype=np.int64)
        for r0 in range(0, len(ref_normalized), ref_chunk):
            block = np.abs(gen_block @ ref_normalized[r0:r0 + ref_chunk].T)  # [chunk, ref_chunk] |cosines|
            arg = block.argmax(axis=1)
            top = block[rows, arg]
            better = top > best_abs_cos  # strictly: an earlier block keeps a tie
            best_abs_cos[better] = top[better]
            best_index[better] = arg[better] + r0
        # max |cos| over the reference set, then 1 - it: the same minimum as min over (1 - |cos|)
        best[g0:g0 + len(gen_block)] = 1.0 - np.minimum(best_abs_cos.astype(np.float64), 1.0)
        nearest[g0:g0 + len(gen_block)] = best_index
    return best, nearest


def nearest_cosine_distances(
    gen_normalized: np.ndarray, ref_normalized: np.ndarray, chunk: int = 1024, ref_chunk: int = 8192
) -> np.ndarray:
    """For each generated row, ``min over reference rows of 1 - |cos|``: float64 [N] in [0, 1].

    The distances of :func:`nearest_cosine_neighbours` (same inputs, same blocks).
    """
    return nearest_cosine_neighbours(gen_normalized, ref_normalized, chunk, ref_chunk)[0]


def normalized_reference(ref_features: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Reference features ready for the distance: all-zero rows dropped, rows unit-norm. [M, D] -> [M', D]."""
    ref_features = _check_features(ref_features, "reference features")
    normalized = normalize_rows(drop_zero_rows(ref_features), dtype)
    if len(normalized) == 0:
        raise ValueError("every reference feature row is zero; the features are broken (check the network)")
    return normalized


def memorization_distances_to(gen_features: np.ndarray, ref_normalized: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Per generated image, its ``1 - |cos|`` to the nearest reference image.

    gen_features: [N, D] raw features; ref_normalized: [M, D] from :func:`normalized_reference`.
    Returns float64 [N], aligned with the generated images; NaN where a generated row is all zeros
    (Kaggle dropped those rows, so they count in neither the sum nor the number of the mean).
    """
    return memorization_neighbours_to(gen_features, ref_normalized, chunk)[0]


def memorization_neighbours_to(
    gen_features: np.ndarray, ref_normalized: np.ndarray, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Per generated image, its distance to the nearest reference row and that row's index.

    gen_features: [N, D] raw features; ref_normalized: [M', D] from :func:`normalized_reference`.
    Returns (float64 [N], NaN where a generated row is all zeros; int64 [N] row of ``ref_normalized``,
    -1 where the generated row is all zeros). :func:`normalized_reference` drops all-zero reference rows:
    map these indices back to images with ``np.flatnonzero(nonzero_rows(ref_features))``.
    """
    gen_features = _check_features(gen_features, "generated features")
    keep = nonzero_rows(gen_features)
    if not keep.any():
        raise ValueError("every generated feature row is zero; the features are broken (check the network)")
    distances = np.full(len(gen_features), np.nan)
    nearest = np.full(len(gen_features), -1, dtype=np.int64)
    gen_normalized = normalize_rows(gen_features[keep], ref_normalized.dtype)
    distances[keep], nearest[keep] = nearest_cosine_neighbours(gen_normalized, ref_normalized, chunk)
    return distances, nearest


def memorization_distances(gen_features: np.ndarray, ref_features: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """float64 [N_gen]: each generated image's distance to its nearest reference image (NaN: zero row).

    gen_features [N, D], ref_features [M, D]: raw features. See :func:`memorization_distances_to`.
    """
    return memorization_distances_to(gen_features, normalized_reference(ref_features), chunk)


def mean_distance(distances: np.ndarray) -> float:
    """The memorization distance d: the mean of the per-image minima, skipping NaN (dropped zero rows)."""
    return float(np.nanmean(distances))


def memorization_distance(gen_features: np.ndarray, ref_features: np.ndarray, chunk: int = 1024) -> float:
    """d: the mean over generated images of ``min over reference images of 1 - |cos|``, in [0, 1]."""
    return mean_distance(memorization_distances(gen_features, ref_features, chunk))


# -------------------------------------------------------------------------------------------------- MiFID


def threshold_distance(d: float, eps: float) -> float:
    """``d`` if it is below ``eps`` (a memorizer: penalised), else 1.0 (no penalty). Strictly below."""
    return float(d) if d < eps else 1.0


def mifid(fid: float, d_thr: float) -> float:
    """FID divided by the thresholded memorization distance (plus 1e-15 to stay finite)."""
    return float(fid) / (float(d_thr) + DISTANCE_FLOOR)


def mifid_result(fid: float, distance: float, eps: float) -> dict[str, float]:
    """The score record: exactly ``fid``, ``distance``, ``distance_thresholded`` and ``mifid``, plain floats."""
    d_thr = threshold_distance(distance, eps)
    return {"fid": float(fid), "distance": float(distance), "distance_thresholded": d_thr, "mifid": mifid(fid, d_thr)}


def prepare_reference(ref_features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Everything MiFID needs from the reference set, to compute once and cache.

    ref_features: [M, D] (float32 out of the network). Returns mu float64 [D], sigma float64 [D, D] (all rows)
    and the normalised non-zero rows float64 [M', D], all reduced in float64 as Kaggle's scorer did.
    """
    mu, sigma = feature_statistics(ref_features)
    return mu, sigma, normalized_reference(ref_features)


def mifid_from_reference(
    gen_features: np.ndarray,
    ref_mu: np.ndarray,
    ref_sigma: np.ndarray,
    ref_normalized: np.ndarray,
    eps: float = EPS_PUBLIC,
    chunk: int = 1024,
    phases: Phases | None = None,
    frechet: str = "eigh",
    ref_root: CovarianceRoot | None = None,
) -> dict[str, float | str]:
    """MiFID of generated features against a prepared reference (see :func:`prepare_reference`).

    gen_features: [N, D]; ref_mu [D], ref_sigma [D, D], ref_normalized [M', D];
    eps: 0.1 on the public board, 0.25 on the private one; phases: where the steps' wall times go;
    frechet: one of ``FRECHET_METHODS`` (eigh: the default; sqrtm: Kaggle's literal algorithm); ref_root: ``covariance_root(ref_sigma)`` if known.
    Returns {"fid", "distance", "distance_thresholded", "mifid"} (floats) and "frechet", the method that
    gave the FID.
    """
    if frechet not in FRECHET_METHODS:  # before the costly part
        raise ValueError(f"unknown Frechet method {frechet!r}; choose one of {', '.join(FRECHET_METHODS)}")
    with record(phases, "statistics (mean, covariance)"):
        gen_mu, gen_sigma = feature_statistics(gen_features)
    if gen_mu.shape != np.shape(ref_mu) or np.shape(ref_normalized)[1:] != gen_mu.shape:
        raise ValueError(f"generated features are {gen_mu.shape[0]}-d but the reference is "
                         f"{np.shape(ref_mu)} / {np.shape(ref_normalized)}: were they made by the same network?")
    with record(phases, f"frechet distance ({frechet})"):
        fid, used = frechet_distance_by(frechet, gen_mu, gen_sigma, ref_mu, ref_sigma, ref_root)
    with record(phases, "memorization distance"):
        distance = mean_distance(memorization_distances_to(gen_features, ref_normalized, chunk))
    return {**mifid_result(fid, distance, eps), "frechet": used}


def mifid_from_features(
    gen_features: np.ndarray, ref_features: np.ndarray, eps: float = EPS_PUBLIC, chunk: int = 1024,
    frechet: str = "eigh",
) -> dict[str, float | str]:
    """MiFID of generated features [N, D] against reference features [M, D]; see :func:`mifid_from_reference`."""
    return mifid_from_reference(gen_features, *prepare_reference(ref_features), eps=eps, chunk=chunk, frechet=frechet)
