"""MiFID step by step on tiny inputs whose answers are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics import mifid as m

SQRT_HALF = math.sqrt(0.5)


# ------------------------------------------------------------------------------------- statistics and FID


def test_feature_statistics_by_hand():
    # rows (0, 1), (2, 1), (4, 4): mean x = 6/3 = 2, mean y = 6/3 = 2
    # deviations x: -2, 0, 2; y: -1, -1, 2
    # var x = (4 + 0 + 4) / 2 = 4; var y = (1 + 1 + 4) / 2 = 3; cov = (2 + 0 + 4) / 2 = 3
    mu, sigma = m.feature_statistics(np.array([[0, 1], [2, 1], [4, 4]], dtype=np.float32))
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, [2, 2])
    np.testing.assert_allclose(sigma, [[4, 3], [3, 3]])


def test_feature_statistics_one_dimension():
    # (0), (2): mean 1, variance ((-1)^2 + 1^2) / (2 - 1) = 2; still [D] and [D, D]
    mu, sigma = m.feature_statistics(np.array([[0.0], [2.0]]))
    assert mu.shape == (1,) and sigma.shape == (1, 1)
    assert mu[0] == 1.0 and sigma[0, 0] == 2.0


def test_feature_statistics_needs_two_rows():
    with pytest.raises(ValueError, match="at least 2"):
        m.feature_statistics(np.ones((1, 3)))


def test_same_features_give_fid_zero():
    x = np.random.default_rng(0).normal(size=(50, 4))
    mu, sigma = m.feature_statistics(x)
    assert m.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_shift_gives_squared_distance_of_means():
    # y = x + v has the same covariance, so Tr(s + s - 2 sqrt(s s)) = Tr(2s - 2s) = 0
    # and FID = |v|^2 = 3^2 + 4^2 + 0^2 = 25
    x = np.random.default_rng(1).normal(size=(40, 3))
    v = np.array([3.0, 4.0, 0.0])
    fid = m.frechet_distance(*m.feature_statistics(x), *m.feature_statistics(x + v))
    assert fid == pytest.approx(25.0, rel=1e-9)


def test_diagonal_covariances_by_hand():
    # sigma1 = diag(1, 4), sigma2 = diag(9, 16): sqrt(s1 s2) = diag(3, 8)
    # Tr term = (1 + 9 - 2*3) + (4 + 16 - 2*8) = (1 - 3)^2 + (2 - 4)^2 = 4 + 4 = 8
    # means (0, 0) and (1, 2): 1 + 4 = 5; FID = 13
    fid = m.frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.array([1.0, 2.0]), np.diag([9.0, 16.0]))
    assert fid == pytest.approx(13.0, rel=1e-12)


def test_scaled_features_by_hand():
    # x: (1,0), (-1,0), (0,1), (0,-1): mean 0, var = 2/3 on each axis, no covariance
    # y = 2x: var = 8/3 on each axis
    # FID = 2 * (sqrt(2/3) - sqrt(8/3))^2 = 2 * (2/3) * (1 - 2)^2 = 4/3
    x = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float64)
    fid = m.frechet_distance(*m.feature_statistics(x), *m.feature_statistics(2 * x))
    assert fid == pytest.approx(4 / 3, rel=1e-9)


def test_one_dimensional_fid():
    # N(0, 4) vs N(3, 1): 3^2 + (sqrt(4) - sqrt(1))^2 = 9 + 1 = 10
    assert m.frechet_distance(np.array([0.0]), np.array([[4.0]]), np.array([3.0]), np.array([[1.0]])) == \
        pytest.approx(10.0)


def test_non_finite_square_root_retries_with_eps_on_the_diagonals():
    # s1 = diag(1, 0), s2 = [[0, 1], [0, 0]]: s1 s2 = [[0, 1], [0, 0]], which has no square root
    # (scipy returns inf). With e = 1e-6 on both diagonals:
    # (s1 + eI)(s2 + eI) = [[1+e, 0], [0, e]] @ [[e, 1], [0, e]] = [[(1+e) e, 1+e], [0, e^2]],
    # upper triangular, so Tr sqrt = sqrt((1+e) e) + e, and FID = Tr s1 + Tr s2 - 2 Tr sqrt
    # = 1 + 0 - 2 (sqrt(e + e^2) + e)   (the formula uses the covariances without the offset)
    e = 1e-6
    fid = m.frechet_distance(np.zeros(2), np.diag([1.0, 0.0]), np.zeros(2), np.array([[0.0, 1.0], [0.0, 0.0]]))
    assert fid == pytest.approx(1 - 2 * (math.sqrt(e + e * e) + e), rel=1e-9)


def test_fewer_samples_than_dimensions_is_finite():
    # 5 and 6 samples in 16 dimensions: both covariances (and their product) are singular
    rng = np.random.default_rng(2)
    fid = m.frechet_distance(*m.feature_statistics(rng.normal(size=(5, 16))),
                             *m.feature_statistics(rng.normal(size=(6, 16))))
    assert math.isfinite(fid) and fid > 0


def test_large_imaginary_part_raises():
    # sigma2 = diag(-1, 1) is no covariance: sqrt(s1 s2) = diag(i, 1), imaginary diagonal 1 > 1e-3
    with pytest.raises(ValueError, match="imaginary"):
        m.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([-1.0, 1.0]))


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="shapes do not match"):
        m.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# ------------------------------------------------------------------------------- FID from eigenvalues (eigh)


def test_covariance_root_by_hand():
    # diag(4, 9): root diag(2, 3); [[2, 1], [1, 2]] = Q diag(3, 1) Q^T with Q = [[1, 1], [1, -1]] / sqrt 2, so its
    # root is Q diag(sqrt 3, 1) Q^T = [[s + 1, s - 1], [s - 1, s + 1]] / 2 with s = sqrt 3
    r = m.covariance_root(np.diag([4.0, 9.0]))
    np.testing.assert_allclose(r.root, np.diag([2.0, 3.0]), atol=1e-12)
    assert not r.singular
    s3 = math.sqrt(3.0)
    np.testing.assert_allclose(m.covariance_root(np.array([[2.0, 1.0], [1.0, 2.0]])).root,
                               [[(s3 + 1) / 2, (s3 - 1) / 2], [(s3 - 1) / 2, (s3 + 1) / 2]], atol=1e-12)
    # [[1, 1], [1, 1]] has eigenvalues 2 and 0: singular, root [[1, 1], [1, 1]] / sqrt 2
    r = m.covariance_root(np.ones((2, 2)))
    assert r.singular
    np.testing.assert_allclose(r.root, np.ones((2, 2)) / math.sqrt(2), atol=1e-8)


def test_eigh_diagonal_covariances_by_hand():
    # the sqrtm test above: sqrt(diag(1, 4) diag(9, 16)) = diag(3, 8); FID = (1 - 3)^2 + (2 - 4)^2 + 1 + 4 = 13
    fid, used = m.frechet_distance_eigh(np.zeros(2), np.diag([1.0, 4.0]), np.array([1.0, 2.0]), np.diag([9.0, 16.0]))
    assert used == "eigh" and fid == pytest.approx(13.0, rel=1e-12)


def test_eigh_one_dimension_and_scaled_features_by_hand():
    # N(0, 4) vs N(3, 1): 9 + (2 - 1)^2 = 10; x vs 2x (4 points, variance 2/3 and 8/3 per axis): 4/3
    assert m.frechet_distance_eigh(np.array([0.0]), np.array([[4.0]]), np.array([3.0]), np.array([[1.0]])) == \
        (pytest.approx(10.0), "eigh")
    x = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float64)
    fid, used = m.frechet_distance_eigh(*m.feature_statistics(x), *m.feature_statistics(2 * x))
    assert used == "eigh" and fid == pytest.approx(4 / 3, rel=1e-9)


def test_eigh_equal_gaussians_and_a_shift():
    # the same Gaussian: 0; shifted by (3, 4, 0) with the same covariance: 3^2 + 4^2 = 25
    x = np.random.default_rng(1).normal(size=(40, 3))
    mu, sigma = m.feature_statistics(x)
    fid, used = m.frechet_distance_eigh(mu, sigma, mu, sigma)
    assert used == "eigh" and fid == pytest.approx(0.0, abs=1e-9)
    fid, _ = m.frechet_distance_eigh(mu, sigma, *m.feature_statistics(x + [3.0, 4.0, 0.0]))
    assert fid == pytest.approx(25.0, rel=1e-9)


def test_eigh_uses_the_given_reference_root():
    rng = np.random.default_rng(3)
    a, b = m.feature_statistics(rng.normal(size=(60, 5))), m.feature_statistics(rng.normal(size=(70, 5)) * 2)
    assert m.frechet_distance_eigh(*a, *b, root2=m.covariance_root(b[1])) == m.frechet_distance_eigh(*a, *b)
    with pytest.raises(ValueError, match="not the root"):
        m.frechet_distance_eigh(*a, *b, root2=m.covariance_root(np.eye(4)))


@pytest.mark.parametrize("case", ["constant generated feature", "constant reference feature", "fewer samples"])
def test_eigh_hands_singular_covariances_to_kaggles_computation(case):
    # where a covariance is singular, Kaggle's sqrtm may have added 1e-6 to the diagonals, which the eigenvalues
    # do not reproduce: eigh gives exactly frechet_distance's number and says so
    rng = np.random.default_rng(4)
    gen, ref = rng.normal(size=(50, 6)), rng.normal(size=(80, 6)) + 0.5
    if case == "constant generated feature":
        gen[:, 2] = 1.0  # zero variance: a zero row and column in sigma1
    elif case == "constant reference feature":
        ref[:, 0] = 0.0
    else:
        gen = gen[:4]  # 4 samples in 6 dimensions: rank 3
    a, b = m.feature_statistics(gen), m.feature_statistics(ref)
    fid, used = m.frechet_distance_eigh(*a, *b)
    assert used == m.EIGH_FALLBACK and fid == m.frechet_distance(*a, *b)


def test_eigh_agrees_with_sqrtm_on_realistic_covariances():
    # non-negative, correlated features with a decaying spectrum (as pooled ReLU features are), the generated
    # set another distribution than the reference; D = 256 keeps sqrtm fast enough for a test
    rng = np.random.default_rng(5)
    d = 256
    mixing = rng.normal(size=(d, d)) / math.sqrt(d)
    scales = 1.0 / np.sqrt(np.arange(1, d + 1))

    def features(n, shift, stretch):
        return np.abs(rng.normal(size=(n, d)) * scales * stretch @ mixing + shift)

    ref = m.feature_statistics(features(4000, 0.3, 1.0))
    worst = 0.0
    for shift, stretch in ((0.3, 1.0), (0.35, 1.1), (0.5, 0.7), (1.0, 2.0)):
        gen = m.feature_statistics(features(2000, shift, stretch))
        exact = m.frechet_distance(*gen, *ref)
        fast, used = m.frechet_distance_eigh(*gen, *ref)
        assert used == "eigh"
        worst = max(worst, abs(fast - exact) / exact)
    print(f"largest relative difference eigh vs sqrtm: {worst:.2e}")
    assert worst < 1e-9, worst


def test_unknown_frechet_method_names_the_choices():
    rng = np.random.default_rng(9)
    with pytest.raises(ValueError, match="choose one of sqrtm, eigh"):
        m.mifid_from_features(np.abs(rng.normal(size=(10, 3))), np.abs(rng.normal(size=(10, 3))), frechet="svd")


def test_mifid_with_eigh_matches_sqrtm():
    rng = np.random.default_rng(10)
    gen, ref = np.abs(rng.normal(size=(300, 8))), np.abs(rng.normal(size=(400, 8))) + 0.1
    exact, fast = m.mifid_from_features(gen, ref, frechet="sqrtm"), m.mifid_from_features(gen, ref)  # eigh: default
    assert (exact["frechet"], fast["frechet"]) == ("sqrtm", "eigh")
    assert fast["fid"] == pytest.approx(exact["fid"], rel=1e-9) and fast["distance"] == exact["distance"]


# --------------------------------------------------------------------------------- memorization distance


def test_drop_zero_rows_and_normalize():
    f = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]])
    kept = m.drop_zero_rows(f)
    np.testing.assert_array_equal(kept, [[3, 4], [0, -2]])
    # (3, 4) / 5 = (0.6, 0.8); (0, -2) / 2 = (0, -1)
    np.testing.assert_allclose(m.normalize_rows(kept), [[0.6, 0.8], [0.0, -1.0]], rtol=1e-7)
    with pytest.raises(ValueError, match="drop_zero_rows"):
        m.normalize_rows(f)


def test_negated_vector_is_a_copy():
    # cos((-2, 0), (1, 0)) = -1, |cos| = 1, distance 1 - 1 = 0
    assert m.memorization_distance(np.array([[-2.0, 0.0]]), np.array([[1.0, 0.0]])) == 0.0


def test_orthogonal_vectors_are_distance_one():
    # cos((0, 3), (5, 0)) = 0, distance 1 - 0 = 1
    assert m.memorization_distance(np.array([[0.0, 3.0]]), np.array([[5.0, 0.0]])) == 1.0


def test_mean_of_minima_by_hand():
    # generated (1, 0): nearest reference (2, 0), |cos| 1 -> 0
    # generated (1, 1): |cos| with (2, 0) and (0, 7) both 1/sqrt(2) -> 1 - sqrt(1/2) = 0.29289...
    # d = (0 + 0.29289) / 2 = 0.14645
    gen = np.array([[1.0, 0.0], [1.0, 1.0]])
    ref = np.array([[2.0, 0.0], [0.0, 7.0]])
    np.testing.assert_allclose(m.memorization_distances(gen, ref), [0.0, 1 - SQRT_HALF], atol=1e-7)
    assert m.memorization_distance(gen, ref) == pytest.approx((1 - SQRT_HALF) / 2, abs=1e-7)


def test_direction_is_generated_to_reference():
    # generated e1, e1; reference e1, e2
    # Kaggle (generated -> reference): each generated e1 finds e1: (0 + 0) / 2 = 0
    # the other way (reference -> generated): e1 -> 0, e2 -> 1: (0 + 1) / 2 = 0.5
    gen = np.array([[1.0, 0.0], [1.0, 0.0]])
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert m.memorization_distance(gen, ref) == 0.0
    assert m.memorization_distance(ref, gen) == 0.5


def test_zero_row_is_ignored_by_distance_but_not_by_fid():
    # the zero row has no direction: Kaggle dropped it from the distance (not counted in the mean),
    # but it is an image like any other for the Gaussian fit, so the FID moves
    rng = np.random.default_rng(3)
    ref = np.abs(rng.normal(size=(30, 4)))
    gen = np.abs(rng.normal(size=(20, 4)))
    with_zero = np.vstack([gen, np.zeros((1, 4))])
    before, after = m.mifid_from_features(gen, ref), m.mifid_from_features(with_zero, ref)
    assert after["distance"] == pytest.approx(before["distance"], rel=1e-12)
    assert after["fid"] != pytest.approx(before["fid"], rel=1e-3)
    per_image = m.memorization_distances(with_zero, ref)
    assert per_image.shape == (21,) and np.isnan(per_image[20]) and not np.isnan(per_image[:20]).any()
    # a zero row among the reference features does not change the distance either
    assert m.memorization_distance(gen, np.vstack([ref, np.zeros((2, 4))])) == pytest.approx(before["distance"])


def test_all_zero_features_raise():
    with pytest.raises(ValueError, match="every generated feature row is zero"):
        m.memorization_distance(np.zeros((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="every reference feature row is zero"):
        m.memorization_distance(np.ones((3, 2)), np.zeros((3, 2)))


@pytest.mark.parametrize("chunk, ref_chunk", [(1, 1), (3, 5), (7, 1000), (50, 8), (64, 36), (1000, 37)])
def test_chunked_equals_whole_matrix(chunk, ref_chunk):
    rng = np.random.default_rng(4)
    gen = m.normalize_rows(rng.normal(size=(50, 16)), np.float64)
    ref = m.normalize_rows(rng.normal(size=(37, 16)), np.float64)
    whole = (1 - np.abs(gen @ ref.T)).min(axis=1)  # the 50 x 37 matrix, at once
    got = m.nearest_cosine_distances(gen, ref, chunk=chunk, ref_chunk=ref_chunk)
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-12)
    # float32 (faster, not the default) agrees to float32 precision
    got32 = m.nearest_cosine_distances(gen.astype(np.float32), ref.astype(np.float32), chunk, ref_chunk)
    np.testing.assert_allclose(got32, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("chunk, ref_chunk", [(1, 1), (3, 5), (50, 8), (1000, 37)])
def test_neighbour_indices_equal_the_whole_matrix_argmin(chunk, ref_chunk):
    rng = np.random.default_rng(6)
    gen = m.normalize_rows(rng.normal(size=(50, 16)), np.float64)
    ref = m.normalize_rows(rng.normal(size=(37, 16)), np.float64)
    whole = 1 - np.abs(gen @ ref.T)
    d, idx = m.nearest_cosine_neighbours(gen, ref, chunk=chunk, ref_chunk=ref_chunk)
    np.testing.assert_array_equal(idx, whole.argmin(axis=1))
    np.testing.assert_allclose(d, whole.min(axis=1), rtol=0, atol=1e-12)


def test_neighbours_by_hand_with_a_zero_row():
    # reference rows (after dropping its zero row): e1, e2, (e1+e2)/sqrt2
    ref = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    gen = np.array([[0.0, -5.0], [3.0, 2.9], [0.0, 0.0], [2.0, 0.1]])
    d, idx = m.memorization_neighbours_to(gen, m.normalized_reference(ref), chunk=2)
    assert idx.tolist() == [1, 2, -1, 0]  # rows of the normalised reference; -1 for the zero row
    assert d[0] == 0.0 and np.isnan(d[2])  # -e2 is a copy of e2 (|cos|)
    assert d[1] == pytest.approx(1 - (3.0 + 2.9) / math.sqrt(2 * (9 + 2.9**2)), abs=1e-6)
    rows = np.flatnonzero(m.nonzero_rows(ref))
    assert rows[idx[[0, 1, 3]]].tolist() == [2, 3, 0]  # back to reference images
    np.testing.assert_array_equal(d, m.memorization_distances_to(gen, m.normalized_reference(ref)))


def test_distances_stay_in_zero_one():
    # exact copies in float32 can round |cos| above 1; the distance must not go below 0
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(200, 64)).astype(np.float32)
    d = m.memorization_distances(ref * 3.7, ref)
    assert (d >= 0).all() and (d < 1e-6).all()


# ------------------------------------------------------------------------------------- threshold and MiFID


def test_threshold_is_strict():
    assert m.threshold_distance(0.05, 0.1) == 0.05
    assert m.threshold_distance(0.1, 0.1) == 1.0  # at exactly eps: not penalised
    assert m.threshold_distance(0.3, 0.25) == 1.0


def test_mifid_by_hand():
    # FID 13, d 0.05 < eps 0.1: 13 / 0.05 = 260 (a 20x penalty); d 0.2 >= 0.1: 13 / 1 = 13
    assert m.mifid_result(13.0, 0.05, 0.1) == {
        "fid": 13.0, "distance": 0.05, "distance_thresholded": 0.05, "mifid": pytest.approx(260.0)
    }
    assert m.mifid_result(13.0, 0.2, 0.1)["mifid"] == pytest.approx(13.0)
    # the same d on the private board (eps 0.25) is penalised: 13 / 0.2 = 65
    assert m.mifid_result(13.0, 0.2, m.EPS_PRIVATE)["mifid"] == pytest.approx(65.0)


def test_copying_the_reference_is_penalised():
    # reference: 2e1, 3e2, 5e3 (mean (2/3, 1, 5/3)); generated: copies of only two of them, e1 twice, e2 once
    # with other scales. Every generated row is parallel to a reference row: |cos| = 1 exactly, d = 0,
    # d_thr = 0 < 0.1, and MiFID = FID / 1e-15. The sets differ, so FID > 0 and MiFID is enormous.
    ref = np.array([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 5.0]])
    gen = np.array([[1.0, 0, 0], [4.0, 0, 0], [0, 1.0, 0]])
    result = m.mifid_from_features(gen, ref)
    assert result["distance"] == 0.0 and result["distance_thresholded"] == 0.0
    assert result["fid"] > 1.0
    assert result["mifid"] == pytest.approx(result["fid"] / 1e-15)


def test_identical_sets_score_zero():
    # the same set: FID 0 and d 0, so MiFID is 0 / 1e-15 ~ 0: the FID carries the whole score
    ref = np.array([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 5.0], [1.0, 1.0, 0]])
    result = m.mifid_from_features(ref, ref)
    assert result["distance"] == pytest.approx(0.0, abs=1e-7)
    assert abs(result["fid"]) < 1e-9


def test_result_has_four_plain_floats_and_the_frechet_method():
    rng = np.random.default_rng(6)
    result = m.mifid_from_features(np.abs(rng.normal(size=(20, 3))), np.abs(rng.normal(size=(25, 3))))
    assert list(result) == ["fid", "distance", "distance_thresholded", "mifid", "frechet"]
    assert all(type(result[k]) is float for k in ["fid", "distance", "distance_thresholded", "mifid"])
    assert result["frechet"] == "eigh"  # the default


def test_from_reference_equals_from_features():
    rng = np.random.default_rng(7)
    gen = np.abs(rng.normal(size=(30, 5))).astype(np.float32)
    ref = np.abs(rng.normal(size=(40, 5))).astype(np.float32)
    mu, sigma, normalized = m.prepare_reference(ref)
    assert normalized.dtype == np.float64 and normalized.shape == (40, 5)  # float64, as Kaggle's scorer
    cached = m.mifid_from_reference(gen, mu, sigma, normalized, eps=m.EPS_PRIVATE)
    assert cached == m.mifid_from_features(gen, ref, eps=m.EPS_PRIVATE)


def test_reference_of_another_network_raises():
    rng = np.random.default_rng(8)
    mu, sigma, normalized = m.prepare_reference(rng.normal(size=(10, 4)))
    with pytest.raises(ValueError, match="same network"):
        m.mifid_from_reference(rng.normal(size=(10, 3)), mu, sigma, normalized)


def test_non_finite_features_raise():
    f = np.ones((4, 3))
    f[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        m.mifid_from_features(f, np.ones((4, 3)))


def test_the_score_path_distance_is_float64_and_equals_kaggles_brute_force():
    """float32 features, as the network gives them, reduced in float64 as Kaggle's scorer: zero rows dropped, rows
    normalised, the whole [N, M] matrix of 1 - |cos|, its row minima averaged. The chunked default path (blocks of
    3 generated rows) gives the same d to float64 rounding, and a float32 reduction would not."""
    rng = np.random.default_rng(11)
    gen = np.abs(rng.normal(size=(40, 64))).astype(np.float32) ** 3
    ref = np.abs(rng.normal(size=(55, 64))).astype(np.float32) ** 3
    gen[5] = 0.0
    ref[7] = 0.0
    g64, r64 = gen.astype(np.float64), ref.astype(np.float64)
    g64, r64 = g64[g64.sum(axis=1) != 0], r64[r64.sum(axis=1) != 0]
    g64 /= np.linalg.norm(g64, axis=1, keepdims=True)
    r64 /= np.linalg.norm(r64, axis=1, keepdims=True)
    brute = float(np.mean(np.min(1.0 - np.abs(g64 @ r64.T), axis=1)))
    _, _, normalized = m.prepare_reference(ref)
    assert normalized.dtype == np.float64
    got = m.mean_distance(m.memorization_distances_to(gen, normalized, chunk=3))
    assert got == pytest.approx(brute, rel=0, abs=1e-14)
    as32 = m.mean_distance(m.memorization_distances_to(gen, m.normalized_reference(ref, np.float32), chunk=3))
    assert abs(as32 - brute) > 1e-12  # float32 is measurably different: the test can tell the two apart
