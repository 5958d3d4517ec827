"""The score stage end to end with the stand-in network, its reference cache, the memorizer guard,
the leaderboard, and the 2019 public-board numbers it ranks against."""

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import leaderboard as L
from pipeline import score
from pipeline.files import Dataset, save_dataset
from pipeline.images import png_bytes
from pipeline.metrics import features as F
from pipeline.metrics import mifid as M
from pipeline.metrics import scoring
from pipeline.validate import read_zip_images

N_REF, N_GEN = 200, 20  # a reference much smaller than 512 makes scipy's sqrtm slow (singular products)
KEYS = ["network", "reference", "reference_images", "comparable_to_kaggle", "n_images", "fid", "frechet", "distance",
        "distance_thresholded", "mifid", "eps", "memorizer", "seconds", "submission_sha256", "model", "params"]


def pictures(n: int, seed: int) -> np.ndarray:
    """uint8 [n, 64, 64, 3]: gradients with a few flat rectangles, distinct for each seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    out = np.empty((n, 64, 64, 3), np.uint8)
    for i in range(n):
        a, b, c = rng.uniform(0, 255, (3, 3))
        img = a + (b - a) * xx[..., None] * rng.uniform() + (c - a) * yy[..., None] * rng.uniform()
        for _ in range(rng.integers(2, 5)):
            x0, y0 = rng.integers(0, 48, 2)
            w, h = rng.integers(6, 30, 2)
            img[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 255, 3)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def write_dataset(path: Path, images: np.ndarray) -> Path:
    n = len(images)
    save_dataset(path, Dataset(images, np.arange(n) % 2, np.array(["pug", "beagle"]),
                               np.array([f"n0_{i}#0" for i in range(n)])))
    return path


def write_zip(path: Path, images: np.ndarray) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for i, image in enumerate(images):
            z.writestr(f"{i:05d}.png", png_bytes(image))
    return path


class Run:
    """Paths of one test's score runs, and a way to call the stage."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        # the default reference is the photos; the crops are there for score.reference=crops
        self.reference = write_dataset(tmp / "prepared" / "photos64.npz", pictures(N_REF, 0))
        self.crops = write_dataset(tmp / "prepared" / "dogs64.npz", pictures(N_REF + 10, 5))
        self.cache = tmp / "reference"
        self.metrics = tmp / "metrics" / "score.json"
        self.board = tmp / "submissions"
        self.params = tmp / "defaults.yaml"
        self.params.write_text("{}\n")  # every key at its built-in default but those set in __call__

    def __call__(self, submission: Path, *extra: str) -> int:
        return score.main([
            "--submission", str(submission), "--photos", str(self.reference), "--crops", str(self.crops),
            "--metrics", str(self.metrics),
            "--leaderboard-dir", str(self.board), "--cache", str(self.cache), "--device", "cpu", "--no-progress",
            "--params", str(self.params),
            "--set", "score.network=standin", "--set", f"score.expected_images={N_GEN}", *extra,
        ])

    def result(self) -> dict:
        return json.loads(self.metrics.read_text())

    def rows(self) -> list[dict]:
        with open(self.board / "leaderboard.csv", newline="") as fh:
            return list(csv.DictReader(fh))


@pytest.fixture
def run(tmp_path) -> Run:
    return Run(tmp_path)


@pytest.fixture
def reference_extractions(monkeypatch) -> list[int]:
    """Records the number of images of every feature extraction the score stage makes."""
    calls: list[int] = []
    real = scoring.extract_features

    def counting(network, images, *args, **kwargs):
        calls.append(len(images))
        return real(network, images, *args, **kwargs)

    monkeypatch.setattr(scoring, "extract_features", counting)
    return calls


def test_end_to_end_with_the_standin_network(run, tmp_path, capsys):
    sub = write_zip(tmp_path / "images.zip", pictures(N_GEN, 1))
    assert run(sub) == 0
    result = run.result()
    assert list(result) == KEYS
    assert result["network"] == "standin" and result["comparable_to_kaggle"] is False
    assert result["reference"] == "photos" and result["reference_images"] == N_REF
    assert result["n_images"] == N_GEN and result["eps"] == 0.1
    assert result["submission_sha256"] == scoring.pixels_sha256(pictures(N_GEN, 1))
    assert result["model"] == "unknown" and result["params"] == "unknown"
    assert result["memorizer"] is False and result["distance"] >= 0.1
    assert result["distance_thresholded"] == 1.0 and result["mifid"] == pytest.approx(result["fid"])
    out = capsys.readouterr()
    assert "NOT comparable to Kaggle" in out.out and "WARNING" not in out.err
    (row,) = run.rows()
    assert row["network"] == "standin" and row["model"] == "unknown" and row["params"] == "unknown"
    assert row["kaggle_2019_rank"] == L.NOT_COMPARABLE and float(row["mifid"]) == pytest.approx(result["mifid"])
    assert "not comparable to Kaggle" in (run.board / "leaderboard.md").read_text()
    assert (run.board / "leaderboard.png").read_bytes().startswith(b"\x89PNG")
    # score.frechet is eigh by default: 20 images and 200 reference images in 512 dimensions make singular
    # covariances, so eigh hands the FID to Kaggle's sqrtm, and the metrics and the row say so
    assert result["frechet"] == row["frechet"] == M.EIGH_FALLBACK
    assert run(sub, "--set", "score.frechet=sqrtm") == 0
    assert len(run.rows()) == 2  # appended, not replaced
    markdown = (run.board / "leaderboard.md").read_text()
    assert f"({M.EIGH_FALLBACK})" in markdown
    again = run.result()
    assert again["frechet"] == run.rows()[1]["frechet"] == "sqrtm" and again["fid"] == result["fid"]
    assert f"by {M.EIGH_FALLBACK}" in out.out and "by sqrtm," in capsys.readouterr().out


def test_score_eps_is_the_memorization_threshold(run, tmp_path, capsys):
    """score.eps at the stage: the same images, a threshold above their distance d: a memorizer, MiFID FID / d."""
    sub = write_zip(tmp_path / "images.zip", pictures(N_GEN, 1))
    assert run(sub) == 0
    d = run.result()["distance"]
    assert 0.1 <= d < 1.0
    assert run(sub, "--set", "score.eps=1.0") == 0
    result = run.result()
    assert result["eps"] == 1.0 and result["memorizer"] is True and result["distance"] == d
    assert result["distance_thresholded"] == d and result["mifid"] == pytest.approx(result["fid"] / d)
    assert "WARNING: memorizer" in capsys.readouterr().err and run.rows()[1]["memorizer"] == "true"


def test_verbose_reports_each_step_cold_then_warm(run, tmp_path, capsys):
    sub = write_zip(tmp_path / "images.zip", pictures(N_GEN, 1))

    def steps() -> list[str]:
        report = capsys.readouterr().out.split("wall time per step:\n")[1]
        return [line.rsplit(None, 3)[0].strip() for line in report.splitlines()[:-1]]  # less the total line

    assert run(sub, "--verbose") == 0
    cold = steps()
    assert cold[:3] == ["interpreter start + imports", "zip: read, validate, decode", "feature network: build"]
    assert {"reference: features", "submission: features", "frechet distance (eigh)", "memorization distance",
            "metrics JSON + leaderboard"} <= set(cold)
    assert run(sub, "--verbose") == 0
    warm = steps()  # both caches hit: no features computed
    assert "reference: features" not in warm and "submission: features" not in warm
    assert "memorization distance" in warm


def test_training_images_are_flagged_as_a_memorizer(run, tmp_path, capsys):
    sub = write_zip(tmp_path / "copies.zip", pictures(N_REF, 0)[:N_GEN])  # the reference images themselves
    assert run(sub) == 0
    result = run.result()
    assert result["memorizer"] is True and result["distance"] < 1e-4
    assert result["distance_thresholded"] == result["distance"]
    assert result["mifid"] > 1000 * result["fid"]
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("WARNING: memorizer")]
    assert len(warnings) >= 3 and "Kaggle would have penalised" in err and "times worse" in err
    assert run.rows()[0]["memorizer"] == "true"
    assert "**memorizer**" in (run.board / "leaderboard.md").read_text()


def test_reference_cache_is_reused_and_invalidated_by_new_data(run, tmp_path, reference_extractions, capsys):
    sub = write_zip(tmp_path / "images.zip", pictures(N_GEN, 1))
    assert run(sub) == 0
    assert reference_extractions == [N_REF, N_GEN]
    cached = run.cache / "standin_photos.npz"
    first = run.result()
    stamp = cached.stat().st_mtime_ns
    assert "computed and cached" in capsys.readouterr().out

    assert run(sub) == 0
    assert reference_extractions == [N_REF, N_GEN]  # neither the reference nor the same submission again
    assert cached.stat().st_mtime_ns == stamp
    assert "reference statistics: reused" in capsys.readouterr().out
    assert run.result()["fid"] == pytest.approx(first["fid"], rel=1e-6)

    write_dataset(run.reference, pictures(N_REF, 7))  # same size, other images
    assert run(sub) == 0
    assert reference_extractions == [N_REF, N_GEN, N_REF]  # the submission's features are still valid
    assert run.result()["fid"] != pytest.approx(first["fid"], rel=1e-6)
    assert "computed and cached" in capsys.readouterr().out
    # replaced atomically, no leftovers
    assert sorted(p.name for p in run.cache.iterdir()) == ["standin_photos.npz", "standin_submission.npz"]
    capsys.readouterr()

    # the crops are another reference, cached beside the photos' (switching back and forth recomputes nothing)
    assert run(sub, "--set", "score.reference=crops") == 0
    crops = run.result()
    assert crops["reference"] == "crops" and crops["reference_images"] == N_REF + 10
    assert reference_extractions == [N_REF, N_GEN, N_REF, N_REF + 10]
    assert (run.cache / "standin_crops.npz").is_file() and crops["fid"] != pytest.approx(first["fid"], rel=1e-6)
    assert run(sub) == 0 and run(sub, "--set", "score.reference=crops") == 0
    assert reference_extractions == [N_REF, N_GEN, N_REF, N_REF + 10]


def test_the_reference_kind_is_part_of_the_cache_key(tmp_path, reference_extractions, capsys):
    """The same images as photos and as crops are two caches: a stats file is never read for another kind, and
    a cache file copied over from another network or truncated is recomputed (named on stderr), never used."""
    network = F.load_network("standin")
    ref = pictures(N_REF, 0)
    photos, _ = scoring.reference_statistics(ref, network, tmp_path, "photos", progress=False)
    crops, reused = scoring.reference_statistics(ref, network, tmp_path, "crops", progress=False)
    assert not reused and photos.key != crops.key and (photos.kind, crops.kind) == ("photos", "crops")
    assert reference_extractions == [N_REF, N_REF]
    # a file of another kind (or network) under this name: its key differs, so it is recomputed, not used
    (tmp_path / "standin_crops.npz").write_bytes((tmp_path / "standin_photos.npz").read_bytes())
    again, reused = scoring.reference_statistics(ref, network, tmp_path, "crops", progress=False)
    assert not reused and again.kind == "crops" and reference_extractions == [N_REF] * 3
    # a truncated file: a one-line note, then recomputed
    data = (tmp_path / "standin_photos.npz").read_bytes()
    (tmp_path / "standin_photos.npz").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    _, reused = scoring.reference_statistics(ref, network, tmp_path, "photos", progress=False)
    assert not reused and reference_extractions == [N_REF] * 4
    assert "standin_photos.npz cannot be read" in capsys.readouterr().err


def test_submission_features_are_cached_by_pixels_and_network(tmp_path, reference_extractions):
    network = F.load_network("standin")
    images = pictures(N_GEN, 1)
    first, reused = scoring.submission_features(images, network, tmp_path, progress=False)
    assert not reused and reference_extractions == [N_GEN] and first.shape == (N_GEN, network.dim)
    again, reused = scoring.submission_features(images, network, tmp_path, progress=False)
    assert reused and reference_extractions == [N_GEN] and np.array_equal(again, first)
    other = images.copy()
    other[0, 0, 0, 0] ^= 1  # one pixel level: other images, other key
    _, reused = scoring.submission_features(other, network, tmp_path, progress=False)
    assert not reused and reference_extractions == [N_GEN, N_GEN]
    (tmp_path / "standin_submission.npz").write_bytes(b"broken")
    _, reused = scoring.submission_features(other, network, tmp_path, progress=False)
    assert not reused and reference_extractions == [N_GEN, N_GEN, N_GEN]  # unreadable: recomputed


def test_reference_statistics_match_a_direct_computation(tmp_path):
    network = F.load_network("standin")
    ref = pictures(N_REF, 0)
    stats, reused = scoring.reference_statistics(ref, network, tmp_path, "photos", progress=False)
    again, reused_again = scoring.reference_statistics(ref, network, tmp_path, "photos", progress=False)
    assert (reused, reused_again) == (False, True)
    features = F.extract_features(network, ref, progress=False)
    np.testing.assert_allclose(again.mu, features.mean(axis=0), rtol=1e-5, atol=1e-7)
    assert again.mu.dtype == again.sigma.dtype == again.normalized.dtype == np.float64
    assert again.sigma.shape == (F.STANDIN_DIM, F.STANDIN_DIM) and again.n_images == N_REF
    assert again.key == scoring.reference_key(ref, network, "photos")
    assert scoring.reference_key(ref[::-1].copy(), network, "photos") != again.key


def test_covariance_root_is_cached(tmp_path, reference_extractions):
    network = F.load_network("standin")
    ref = pictures(N_REF, 0)
    stats, _ = scoring.reference_statistics(ref, network, tmp_path, "photos", progress=False)
    expected = M.covariance_root(stats.sigma)
    np.testing.assert_array_equal(stats.root.root, expected.root)
    assert stats.root.singular == expected.singular  # 200 images, 512 features: singular
    again, reused = scoring.reference_statistics(ref, network, tmp_path, "photos", progress=False)
    assert reused and np.array_equal(again.root.root, stats.root.root) and reference_extractions == [N_REF]


def test_frechet_eigh_agrees_with_sqrtm_in_score_images():
    # full-rank covariances (more images than features, no constant feature): eigh itself gives the FID
    rng = np.random.default_rng(11)
    network = F.load_network("standin")
    ref_features = np.abs(rng.normal(size=(1500, F.STANDIN_DIM))).astype(np.float32)
    gen_features = np.abs(rng.normal(size=(800, F.STANDIN_DIM)) * 1.1 + 0.05).astype(np.float32)
    mu, sigma, normalized = M.prepare_reference(ref_features)
    stats = scoring.ReferenceStats(mu, sigma, normalized, "k", 1500, np.arange(1500), "photos", M.covariance_root(sigma))
    images = np.zeros((800, 64, 64, 3), np.uint8)  # not looked at: the features are given
    results = {}
    for method in ("sqrtm", "eigh"):
        cfg = score.ScoreConfig(network="standin", frechet=method)
        results[method] = scoring.score_images(images, stats, network, cfg, features=gen_features)
    assert results["sqrtm"]["frechet"] == "sqrtm" and results["eigh"]["frechet"] == "eigh"
    assert results["eigh"]["fid"] == pytest.approx(results["sqrtm"]["fid"], rel=1e-9)
    assert results["eigh"]["distance"] == results["sqrtm"]["distance"]


def test_zip_images_are_read_back_exactly(tmp_path):
    images = pictures(5, 3)
    assert np.array_equal(read_zip_images(write_zip(tmp_path / "five.zip", images)), images)


def test_invalid_zip_exits_2_with_the_validators_message(run, tmp_path, capsys):
    sub = write_zip(tmp_path / "short.zip", pictures(3, 1))
    assert run(sub) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"holds 3 files, it must hold exactly {N_GEN} PNG images" in err
    assert not run.metrics.exists() and not run.board.exists()


def test_missing_inception_weights_exit_2_quickly(run, tmp_path, monkeypatch, capsys):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.delenv(F.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(F, "DOWNLOAD_TIMEOUT", 2.0)
    try:
        sub = write_zip(tmp_path / "images.zip", pictures(N_GEN, 1))
        assert run(sub, "--set", "score.network=inception") == 2
    finally:
        torch.hub.set_dir(old)
    assert F.INCEPTION_WEIGHTS_FILE in capsys.readouterr().err
    assert not run.metrics.exists()


def test_missing_checkpoint_and_wrong_config_exit_2(run, tmp_path, capsys):
    sub = write_zip(tmp_path / "images.zip", pictures(N_GEN, 1))
    assert run(sub, "--checkpoint", str(tmp_path / "none.pt")) == 2
    assert "no checkpoint here" in capsys.readouterr().err
    assert run(sub, "--set", "score.network=nasnet") == 2
    assert "score.network: 'nasnet' is not allowed" in capsys.readouterr().err
    assert run(sub, "--set", "score.frechet=svd") == 2
    assert "score.frechet: 'svd' is not allowed; choose one of sqrtm, eigh" in capsys.readouterr().err


def test_a_reference_of_another_size_is_refused(run, tmp_path, capsys):
    small = Dataset(np.zeros((8, 32, 32, 3), np.uint8), np.zeros(8, np.int64), np.array(["a"]), np.array(["x"] * 8))
    run.reference = tmp_path / "dogs32.npz"
    save_dataset(run.reference, small)
    assert run(write_zip(tmp_path / "images.zip", pictures(N_GEN, 1))) == 2
    assert "holds 32x32 crops, but a photos reference" in capsys.readouterr().err and not run.metrics.exists()


def test_a_missing_or_unnamed_reference_is_a_clear_error(run, tmp_path, capsys):
    sub = write_zip(tmp_path / "images.zip", pictures(N_GEN, 1))
    run.reference = tmp_path / "nowhere.npz"
    assert run(sub) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no photo reference here" in err and "pipeline.reference" in err
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(run.crops.read_bytes()[:5000])
    run.reference = truncated
    assert run(sub) == 2
    assert "is not a dataset" in capsys.readouterr().err and not run.metrics.exists()
