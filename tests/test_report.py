"""The memorization report: copies of training crops are found with their crops and called memorizers."""

import base64
import re

import numpy as np
import pytest
from PIL import Image

from pipeline import report
from pipeline.files import load_dataset
from tests.test_score import N_GEN, N_REF, pictures, write_dataset, write_zip
from tests.test_train import cfg_for, run_train


def run_report(tmp_path, submission, reference, *extra):
    (tmp_path / "defaults.yaml").write_text("{}\n")  # every key at its built-in default but those set below
    return report.main([
        "--submission", str(submission), "--photos", str(reference), "--out", str(tmp_path / "reports"),
        "--cache", str(tmp_path / "cache"), "--device", "cpu", "--no-progress",
        "--params", str(tmp_path / "defaults.yaml"),
        "--set", "score.network=standin", "--set", f"score.expected_images={N_GEN}", *extra,
    ])


def test_a_submission_of_training_crops_is_a_memorizer_and_shows_them(tmp_path, capsys):
    reference = write_dataset(tmp_path / "dogs64.npz", pictures(N_REF, 0))
    picked = np.arange(5, 5 + 2 * N_GEN, 2)  # 20 of the 200 crops, shuffled
    picked = np.random.default_rng(0).permutation(picked)
    sub = write_zip(tmp_path / "copies.zip", pictures(N_REF, 0)[picked])
    assert run_report(tmp_path, sub, reference, "--closest", "8") == 0
    out = capsys.readouterr().out
    assert "report: MEMORIZER: d = " in out and "Kaggle would have scored MiFID = FID / d" in out
    page = (tmp_path / "reports" / report.HTML_NAME).read_text()
    assert "<b>MEMORIZER.</b>" in page and "20 of 20 images (100.0%) lie closer than 0.1" in page
    sources = load_dataset(reference).sources
    # the table: rank, generated image #i, the crop it copies (its source id) and a distance near 0
    found = re.findall(r"<br>image #(\d+)</td><td><img[^>]*><br>(\S+) \((\w+)\)</td><td>([0-9.]+)</td>", page)
    assert len(found) == 8
    for i, source, breed, distance in found:
        assert source == sources[picked[int(i)]] and float(distance) < 1e-4
    assert "http" not in page.replace("http-equiv", "")  # self-contained: no external resources
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)[:3]:
        assert base64.b64decode(data).startswith(b"\x89PNG")
    with Image.open(tmp_path / "reports" / report.PNG_NAME) as png:
        assert png.format == "PNG" and png.width > 400


def test_analysis_of_new_images_is_no_memorizer_and_maps_indices_back(tmp_path):
    from pipeline.metrics.features import extract_features, load_network
    from pipeline.metrics.mifid import covariance_root, nonzero_rows, prepare_reference
    from pipeline.metrics.scoring import ReferenceStats, reference_statistics

    network = load_network("standin")
    ref_images = pictures(N_REF, 0)
    cached, _ = reference_statistics(ref_images, network, tmp_path, "photos", progress=False)
    assert cached.rows.tolist() == list(range(N_REF))  # no zero rows here: every image keeps its place
    features = extract_features(network, ref_images, progress=False)
    features[3] = 0  # an all-zero feature row is dropped from the normalised reference: indices shift after it
    mu, sigma, normalized = prepare_reference(features)
    stats = ReferenceStats(mu, sigma, normalized, "k", N_REF, np.flatnonzero(nonzero_rows(features)), "photos",
                           covariance_root(sigma))
    gen = np.concatenate([pictures(N_GEN - 2, 9), ref_images[[150, 199]]])  # two copies among new images
    m = report.analyse(extract_features(network, gen, progress=False), stats, network, 0.1, 7, n_closest=2)
    assert sorted(m.nearest[m.closest].tolist()) == [150, 199]  # the copies come first, as their own crops
    assert m.metrics["memorizer"] is False and m.metrics["penalty"] == 1.0
    assert m.metrics["below_public"] >= 2 and m.metrics["distance"] > 0.1
    assert report.verdict(m.metrics)[0] == "Not a memorizer"
    assert m.metrics["frechet"] == "sqrtm (eigh fallback)"  # eigh unless score.frechet says otherwise; singular here
    assert m.metrics["reference"] == "photos" and m.metrics["reference_images"] == N_REF
    fast = report.analyse(extract_features(network, gen, progress=False), cached, network, 0.1, 7, 2)
    slow = report.analyse(extract_features(network, gen, progress=False), cached, network, 0.1, 7, 2, "sqrtm")
    assert fast.metrics["frechet"] in ("eigh", "sqrtm (eigh fallback)")
    assert fast.metrics["fid"] == pytest.approx(slow.metrics["fid"], rel=1e-6)


def test_per_breed_grid_needs_a_conditional_checkpoint(tmp_path):
    run_train(tmp_path, cfg_for("dcgan", epochs=0.2))
    from pipeline.checkpoint import load_checkpoint

    ck = load_checkpoint(tmp_path / "ck.pt")
    grid = report.breed_grid(ck, n_breeds=5, truncation=0.8)
    assert grid is not None and grid.height < 2 * (64 + 14 + 4) + 40  # two breeds in the tiny data: two rows
    assert report.breed_grid({**ck, "n_classes": 0}, 5, 0.8) is None


def test_bad_zip_and_missing_checkpoint_exit_2(tmp_path, capsys):
    reference = write_dataset(tmp_path / "dogs64.npz", pictures(N_REF, 0))
    short = write_zip(tmp_path / "short.zip", pictures(3, 1))
    assert run_report(tmp_path, short, reference) == 2
    assert "must hold exactly 20 PNG images" in capsys.readouterr().err
    sub = write_zip(tmp_path / "ok.zip", pictures(N_GEN, 1))
    assert run_report(tmp_path, sub, reference, "--checkpoint", str(tmp_path / "none.pt")) == 2
    assert "no checkpoint here" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


def test_what_the_report_shows_comes_from_its_params_section(tmp_path, capsys):
    """report.closest in the params file sets the table's length; --closest overrides it, checked as the key."""
    reference = write_dataset(tmp_path / "dogs64.npz", pictures(N_REF, 0))
    sub = write_zip(tmp_path / "ok.zip", pictures(N_GEN, 1))
    params = tmp_path / "report.yaml"
    params.write_text("report:\n  closest: 3\n")
    args = [str(a) for a in ("--submission", sub, "--photos", reference, "--out", tmp_path / "reports", "--cache",
                             tmp_path / "cache", "--device", "cpu", "--no-progress", "--params", params,
                             "--set", "network=standin", "--set", f"expected_images={N_GEN}")]
    assert report.main(args) == 0
    rows = re.findall(r"<br>image #\d+</td>", (tmp_path / "reports" / report.HTML_NAME).read_text())
    assert len(rows) == 3
    assert report.main(args + ["--closest", "5"]) == 0
    assert len(re.findall(r"<br>image #\d+</td>", (tmp_path / "reports" / report.HTML_NAME).read_text())) == 5
    assert report.main(args + ["--closest", "0"]) == 2
    assert "report.closest: 0 is out of range" in capsys.readouterr().err
