"""The benchmark scripts in bench/, each run once as a subprocess at the tiniest size that still takes its
real code path on a CPU: they import private parts of the pipeline, and nothing else calls them (eval_bench
once broke silently when a function it called changed signature). Outputs go to tmp_path, never bench/out/."""

import importlib.util
import json
import math
import re
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO, voc_xml

BENCH = REPO / "bench"


def run_bench(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python bench/<script> args`` from the repo root; fails the test with the output's tail unless it exits 0."""
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_train_bench_times_a_recipe_and_projects_its_hours(tmp_path):
    out = tmp_path / "recipes.json"
    proc = run_bench("train_bench.py", "--recipes", "fifth-place", "--steps", "1", "--warmup", "0", "--device", "cpu",
                     "--json", str(out))
    (row,) = json.loads(out.read_text())
    assert (row["recipe"], row["model"], row["batch"], row["epochs"]) == ("fifth-place", "biggan", 32, 60.0)
    # boxes under 64 px skipped: fewer crops than the 1st place's 22,121 (all of them where the annotations are not)
    assert 0 < row["crops"] <= 22_121
    assert row["projected_hours"] == pytest.approx(60 * row["crops"] / 32 * row["seconds_per_step"] / 3600, abs=0.01)
    assert "fifth-place" in proc.stdout and f"60 epochs of {row['crops']:,} crops in" in proc.stdout


def test_train_bench_times_every_model(tmp_path):
    """One timed step of each model at batch 2: a positive rate and finite losses for each."""
    out = tmp_path / "train.json"
    proc = run_bench("train_bench.py", "--models", "dcgan", "progan", "biggan", "--batch", "2", "--steps", "1",
                     "--warmup", "1", "--device", "cpu", "--json", str(out))
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["dcgan", "progan", "biggan"]
    for r in rows:
        assert r["batch"] == 2 and r["steps"] == 1 and r["images_per_s"] > 0 and r["device"]
        assert r["g_params"] > 0 and r["d_params"] > 0
        assert all(math.isfinite(v) for v in r["last_losses"].values())
        assert f"{r['images_per_s']:9.1f} img/s" in proc.stdout


def test_count_ops_counts_a_dcgan_step(tmp_path):
    """DCGAN (quick even at its 1st-place size; BigGAN's takes ~40 s here), with --set and --gpu-adam."""
    out = tmp_path / "ops.json"
    proc = run_bench("count_ops.py", "--model", "dcgan", "--batch", "2", "--steps", "1", "--warmup", "1",
                     "--gpu-adam", "--set", "loss=hinge", "--top", "3", "--json", str(out))
    result = json.loads(out.read_text())
    assert result["model"] == "dcgan" and result["loss"] == "hinge"
    assert result["ops_per_step"] == sum(result["by_op"].values()) > 0
    assert result["by_op"]["convolution"] > 0  # views are left out, kernels are not
    assert not any(name in result["by_op"] for name in ("view", "transpose", "expand"))
    assert "operators per training step" in proc.stdout


def test_eval_bench_times_steps_and_an_evaluation(tmp_path):
    """The stand-in network on 8 images against 16 reference images: Evaluator.run, Run.save and the JSON."""
    out = tmp_path / "eval.json"
    proc = run_bench("eval_bench.py", "--network", "standin", "--device", "cpu", "--batch", "4", "--steps", "1",
                     "--warmup", "1", "--evals", "1", "--eval-images", "8", "--reference", "16", "--eval-every", "10",
                     "--json", str(out))
    result = json.loads(out.read_text())
    assert result["network"] == "standin" and result["eval_images"] == 8 and result["reference_images"] == 16
    assert result["train_step_s"] > 0 and result["train_images_per_s"] > 0
    assert result["evaluation_s"] > 0 and len(result["evaluations_s"]) == 1
    assert result["best_checkpoint_write_s"] > 0 and result["added_fraction"] > 0
    assert "in-training MiFID every 10 steps adds" in proc.stdout


def test_reference_bench_times_a_score_against_cached_statistics(tmp_path):
    """--skip-build: no photos; 3,000 reference and 2,100 generated 2048-d feature rows, through the score's own
    cache file, zip reading and MiFID (eigh on full-rank random features), into the JSON."""
    out = tmp_path / "reference.json"
    run_bench("reference_bench.py", "--skip-build", "--ref-images", "3000", "--gen", "2100", "--out", str(out))
    result = json.loads(out.read_text())
    assert result["frechet_method"] == "eigh" and result["cache_file_mb"] > 3000 * 2048 * 8 / 1e6
    assert 0 < result["mifid_eigh_and_float64_distance_s"] <= result["score_without_features_s"]
    assert result["zip_read_validate_decode_s"] > 0 and result["frechet_sqrtm_for_comparison_s"] > 0


@pytest.mark.slow
def test_compile_check_compiled_dcgan_trains_like_eager():
    """torch.compile on the CPU (inductor, C++): 20-30 s with a cold compile cache, 6 s warm."""
    proc = run_bench("compile_check.py", "--model", "dcgan", "--batch", "2", "--steps", "2", "--device", "cpu",
                     "--compile-mode", "default")
    assert re.findall(r"^\s+(\d)\s+[-\d.]+ /\s+[-\d.]+", proc.stdout, re.M) == ["0", "1"]  # losses, step by step
    assert "OK: the compiled step trains like the eager one" in proc.stdout


def test_profile_train_help():
    """--help only: it needs CUDA throughout (device "cuda", torch.cuda.synchronize, CUDA kernel events),
    there is no part of it that runs on a CPU."""
    proc = run_bench("profile_train.py", "--help")
    assert "--compile-mode" in proc.stdout and "launch-bound" in proc.stdout


@pytest.mark.slow
def test_import_times_times_each_row_in_a_fresh_process(tmp_path):
    """One run per row: six fresh interpreters that import torch (about 13 s here, whatever the options)."""
    out = tmp_path / "imports.json"
    run_bench("import_times.py", "--runs", "1", "--json", str(out))
    result = json.loads(out.read_text())
    assert {"import torch", "import pipeline.generate", "import pipeline.score"} <= set(result)
    for row in result.values():
        assert len(row["seconds"]) == 1 and row["seconds"][0] > 0 and row["modules"] > 0


@pytest.mark.parametrize("args, kind", [
    (["1", "2"], "threads"),
    (["2", "--processes", "--switch-interval", "0.001"], "processes"),
])
def test_png_threads_encodes_on_each_pool(args, kind):
    """200 images per pool; the script itself checks that the pool's PNGs equal one thread's."""
    proc = run_bench("png_threads.py", *args, "--n", "200")
    sizes = [a for a in args if a.isdigit()]
    lines = proc.stdout.splitlines()
    assert len(lines) == len(sizes)
    for n, line in zip(sizes, lines):
        assert re.match(rf"\s*{n} {kind}: 200 PNGs in \d+\.\d+ s", line), line


@pytest.fixture
def psutil_installed() -> None:
    """prepare_bench samples memory with psutil, which a GPU machine's image may lack."""
    if importlib.util.find_spec("psutil") is None:
        pytest.skip("psutil is not installed")


def test_prepare_bench_on_a_tiny_annotation_zip(tmp_path, psutil_installed):
    """Eight annotations of two breeds instead of the real 20,580 (one box kept out by its aspect, one outside
    its image): synthesis, prepare() on every core and on one, the naive loop, and the cross-checks."""
    zp = tmp_path / "Annotation.zip"
    with zipfile.ZipFile(zp, "w") as z:
        for i in range(6):
            z.writestr(f"Annotation/n02085620-Chihuahua/n02085620_{i}", voc_xml(120, 90, [(10, 10, 59, 69)]))
        z.writestr("Annotation/n02085782-Japanese_spaniel/n02085782_0",
                   voc_xml(100, 80, [(5, 5, 60, 70), (0, 0, 99, 3)]))  # 100x4: aspect 25
        z.writestr("Annotation/n02085782-Japanese_spaniel/n02085782_1",
                   voc_xml(100, 80, [(5, 5, 60, 70), (200, 200, 220, 220)]))  # outside the photo
    work = tmp_path / "work"
    proc = run_bench("prepare_bench.py", "--annotations-zip", str(zp), "--work", str(work), "--quiet-wait", "0",
                     "--jobs", "1")
    results = json.loads((work / "results.json").read_text())
    checks = results["checks"]
    assert checks["counts_match"] and checks["workers_1_equals_all"]
    assert checks["boxes_found"] == 10 and checks["boxes_kept"] == 8
    assert checks["skipped"] == {"box_outside_image": 1, "aspect_out_of_range": 1}
    assert checks["naive_crops_compared"] == 8 and checks["crops_shape"] == [8, 64, 64, 3]
    assert results["data"]["photos"] == 8 and results["naive"]["scope"] == "all"
    assert results["prepare_all_cores"]["photos_per_s"] > 0 and results["prepare_1_worker"]["photos_per_s"] > 0
    assert "-> OK" in proc.stdout
    assert not list(work.glob("crops_*.npz"))  # the crops saved for the comparison are removed


def test_submission_bench_generates_validates_and_scores(tmp_path):
    """20 images from a 1st-place-size DCGAN, stand-in features, then `pipeline.score --verbose` (cold, then
    warm) on a noise zip: the score runs and the parsing of their step report. Left out: --full-score and
    --phases inception (a 2048-d sqrtm: 20-40 s per score run here) and the full-size math (--no-math, ~25 s)."""
    work = tmp_path / "work"
    proc = run_bench("submission_bench.py", "--model", "dcgan", "--n", "20", "--device", "cpu", "--networks", "standin",
                     "--feature-images", "4", "--no-math", "--work", str(work), "--ref-images", "20",
                     "--phases", "standin", "--warm-runs", "1", "--noise-submission", "--frechet", "eigh")
    results = json.loads((work / "results.json").read_text())
    assert json.loads(proc.stdout) == results
    assert results["n"] == 20 and results["generate_zip_s"] > 0 and results["validate_s"] > 0
    assert results["generate_steps_s"]["total of the steps"] > 0
    assert results["features_standin_img_per_s"] > 0
    with zipfile.ZipFile(work / "images.zip") as z:
        assert len(z.namelist()) == 20
    phases = results["score_phases"]
    assert phases["network"] == "standin" and phases["frechet"] == "eigh" and phases["import_s"] > 0
    assert set(phases) == {"network", "frechet", "import_s", "cold", "warm"}
    for run in ("cold", "warm"):
        assert phases[run]["process_s"] > 0 and phases[run]["frechet_method"]
        assert phases[run]["steps_s"]["total of the steps"] > 0
    assert "reference: features" in phases["cold"]["steps_s"]  # computed cold, read from the cache warm
    assert "reference: features" not in phases["warm"]["steps_s"]


SUITE = BENCH / "gpu_suite.sh"


def test_gpu_suite_is_valid_bash():
    """The suite itself runs only on a GPU machine, where a syntax error would cost lent minutes."""
    proc = subprocess.run(["bash", "-n", str(SUITE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_gpu_suite_without_arguments_prints_its_usage(tmp_path):
    """The one path that needs no GPU: no OUT_DIR, so it stops before nvidia-smi."""
    proc = subprocess.run(["bash", str(SUITE)], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "usage: bash bench/gpu_suite.sh OUT_DIR" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_gpu_suite_refuses_an_unknown_part_before_running_any(tmp_path):
    """A typo in the last part must not cost the lent minutes of the parts before it."""
    proc = subprocess.run(["bash", str(SUITE), str(tmp_path / "out"), "train", "trian"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "unknown part: trian" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_suite_usage_lists_exactly_its_parts():
    """The parts named in the suite's usage, its header and its list of known parts must be those of its case
    branches."""
    text = SUITE.read_text()
    usage = set(re.search(r"\?usage: bash bench/gpu_suite.sh OUT_DIR \[([\w|-]+) \.\.\.\]", text)[1].split("|"))
    header = set(re.search(r"^#\s+parts: (.*)$", text, re.M)[1].split())
    branches = {p for label in re.findall(r"^ {4}([\w|-]+)\)", text, re.M) for p in label.split("|")}
    default = set(re.search(r"parts=\$\{\*:-([\w ]+)\}", text)[1].split())
    known = set(re.search(r'^known=" ([\w -]+) "$', text, re.M)[1].split())
    readme = set(re.search(r"gpu_suite\.sh\s+OUT_DIR \[([\w -]+)\]", (REPO / "README.md").read_text())[1].split())
    assert usage == header == branches == known == readme
    assert default <= branches


def test_gpu_suite_calls_bench_scripts_with_options_they_have():
    """The suite's bench commands run only on a GPU: an option renamed in a script would fail there first."""
    text = SUITE.read_text().replace("\\\n", " ")
    calls = re.findall(r"\$py (bench/\w+\.py)([^|;\n]*)", text)
    assert {script for script, _ in calls} >= {"bench/train_bench.py", "bench/eval_bench.py",
                                                "bench/submission_bench.py", "bench/compile_check.py"}
    for script, args in calls:
        source = (REPO / script).read_text()
        for option in re.findall(r"(?<![\w-])--[a-z][\w-]*", args):
            assert f'"{option}"' in source, f"gpu_suite.sh calls {script} with {option}, which it does not define"


def test_learn_bench_measures_a_model_against_its_data(tmp_path):
    """A tiny DCGAN for a few steps on 24 images: the JSON rows, thumbnail and stand-in FIDs at both ends, grids."""
    import numpy as np

    from pipeline.files import Dataset, save_dataset

    rng = np.random.default_rng(0)
    labels = np.arange(24) % 2
    images = np.clip(np.where(labels[:, None, None, None] == 0, 200, 50) + rng.normal(0, 20, (24, 64, 64, 3)),
                     0, 255).astype(np.uint8)
    save_dataset(tmp_path / "d.npz", Dataset(images, labels, np.array(["bright", "dark"]),
                                             np.array([f"p{i}#0" for i in range(24)])))
    out = tmp_path / "learn"
    proc = run_bench("learn_bench.py", "--models", "dcgan", "--minutes", "0.5", "--images", "16", "--data",
                     str(tmp_path / "d.npz"), "--out", str(out), "--set", "train.epochs=1",
                     "--set", "train.batch_size=8", "--set", "train.dcgan.g_width=4", "--set", "train.dcgan.d_width=4",
                     "--set", "train.sample_every=1")
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["dcgan"] and rows[0]["steps"] == 3
    for end in ("start", "end"):
        assert rows[0][end]["thumbnail_fid"] > 0 and rows[0][end]["standin_fid"] > 0
    assert (out / "dcgan" / "samples" / "last.png").is_file()
    assert "| dcgan | 0.5 | 3 |" in proc.stdout
