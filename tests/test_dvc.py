"""The DVC pipeline end to end on a throw-away copy of the repo: `dvc repro` builds the demo data and the
prepared set, a second run does nothing, a params change reruns only what depends on it, and
`dvc exp run -S ...` works.

Only the stages up to ``prepare`` are reproduced (`dvc repro prepare`): the ``train`` stage trains a GAN
for minutes, far beyond what a test may take, and is covered by its own tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.files import load_dataset

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DVC = BIN / "dvc"
PREPARED = ("data/prepared/dogs64.npz", "data/prepared/report.json", "data/prepared/grid.png")
IDENTITY = {"user.email": "tests@example.com", "user.name": "tests"}


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "DVC_")) and k != "PYTHONPATH"}
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # the stages' `python` is this venv's
        HOME=str(home),  # no global git or dvc config of the machine's user
        GIT_CONFIG_NOSYSTEM="1",
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(tmp / "dvc-site-cache"),
        DVC_GLOBAL_CONFIG_DIR=str(home / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(home / "dvc-system"),
    )
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 120) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}"
    return out


def git(ws: Path, env: dict[str, str], *args: str) -> str:
    ident = [x for k, v in IDENTITY.items() for x in ("-c", f"{k}={v}")]
    return run(["git", *ident, *args], ws, env)


@pytest.fixture
def workspace(tmp_path) -> tuple[Path, dict[str, str]]:
    """The repo's tracked and untracked-but-not-ignored files, copied and committed in a fresh git repo."""
    if not DVC.exists():
        pytest.skip(f"{DVC} not found: dvc is not installed in this environment")
    if shutil.which("git") is None:
        pytest.skip("git not found")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    ws = tmp_path / "repo"
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():  # tracked files deleted in the working tree are skipped
            (ws / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, ws / rel)
    assert (ws / "dvc.yaml").is_file() and (ws / ".dvc" / "config").is_file()
    assert not (ws / "data").exists()  # data/ is ignored: nothing prepared is carried over
    env = _env(tmp_path)
    git(ws, env, "init", "-q")
    for key, value in IDENTITY.items():  # for the commits `dvc exp run` makes itself
        git(ws, env, "config", key, value)
    git(ws, env, "add", "-A")
    git(ws, env, "commit", "-q", "--no-gpg-sign", "-m", "copy of the repo")
    return ws, env


def dvc(ws: Path, env: dict[str, str], *args: str) -> str:
    return run([str(DVC), *args], ws, env, timeout=180)


def mtimes(ws: Path, *paths: str) -> dict[str, int]:
    return {p: (ws / p).stat().st_mtime_ns for p in paths}


def report(ws: Path) -> dict:
    return json.loads((ws / "data/prepared/report.json").read_text())


def set_param(ws: Path, section: str, key: str, value: str) -> None:
    """Change one value in params.yaml in place, keeping its comments."""
    path = ws / "params.yaml"
    text, n = re.subn(rf"(?m)^(  {key}:[ \t]*)[^ \t#\n]+", rf"\g<1>{value}", path.read_text(), count=1)
    assert n == 1, f"{key} not found in params.yaml"
    path.write_text(text)
    assert str(yaml.safe_load(text)[section][key]) == value


def test_repro_then_nothing_then_only_what_changed(workspace):
    ws, env = workspace
    out = dvc(ws, env, "repro", "prepare")
    assert "Running stage 'download'" in out and "Running stage 'prepare'" in out
    for rel in PREPARED:
        assert (ws / rel).is_file(), f"{rel} missing after dvc repro\n{out}"
    ds = load_dataset(ws / "data/prepared/dogs64.npz")
    assert ds.images.shape[1:] == (64, 64, 3) and len(ds) == report(ws)["boxes_kept"] > 0
    with Image.open(ws / "data/prepared/grid.png") as grid:
        assert grid.format == "PNG"
    assert json.loads((ws / "data/raw/SOURCE.json").read_text())["source"] == "demo"
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert {"download", "prepare"} <= set(lock["stages"])

    watched = ("data/raw/SOURCE.json", "data/raw/all-dogs", *PREPARED)
    before = mtimes(ws, *watched)
    out = dvc(ws, env, "repro", "prepare")
    assert "Running stage" not in out
    assert "Stage 'download' didn't change" in out and "Stage 'prepare' didn't change" in out
    assert "Data and pipelines are up to date" in out
    assert mtimes(ws, *watched) == before

    margin = yaml.safe_load((ws / "params.yaml").read_text())["prepare"]["margin"]
    new_margin = "0.1" if float(margin) != 0.1 else "0.2"
    set_param(ws, "prepare", "margin", new_margin)
    raw_before = mtimes(ws, "data/raw/SOURCE.json", "data/raw/all-dogs")
    old_images = ds.images
    out = dvc(ws, env, "repro", "prepare")
    assert "Stage 'download' didn't change" in out and "Running stage 'download'" not in out
    assert "Running stage 'prepare'" in out
    assert mtimes(ws, "data/raw/SOURCE.json", "data/raw/all-dogs") == raw_before
    assert report(ws)["config"]["margin"] == float(new_margin)
    new_images = load_dataset(ws / "data/prepared/dogs64.npz").images
    assert new_images.shape == old_images.shape and not np.array_equal(new_images, old_images)
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert lock["stages"]["prepare"]["params"]["params.yaml"]["prepare.margin"] == float(new_margin)


def test_exp_run_with_a_changed_param(workspace):
    ws, env = workspace
    dvc(ws, env, "repro", "prepare")
    git(ws, env, "add", "-A")
    git(ws, env, "commit", "-q", "--no-gpg-sign", "--allow-empty", "-m", "lock")  # the copied lock may be current
    square = "expand" if report(ws)["config"]["square"] != "expand" else "pad"
    out = dvc(ws, env, "exp", "run", "-S", f"prepare.square={square}", "prepare")
    assert "Ran experiment(s)" in out
    assert "Running stage 'prepare'" in out and "Running stage 'download'" not in out
    assert report(ws)["config"]["square"] == square
    assert yaml.safe_load((ws / "params.yaml").read_text())["prepare"]["square"] == square
    refs = run(["git", "for-each-ref", "refs/exps"], ws, env)
    assert refs.strip(), "dvc exp run recorded no experiment"


def test_a_recipe_is_one_param_that_dvc_tracks_and_an_override_wins(workspace):
    """`dvc exp run -S recipe=fifth-place` prepares as the recipe says (boxes squared by growing the short side,
    none under 64 px); `dvc exp show` tells the recipe and its file's values; `-S prepare.min_side=32` on top of
    the recipe wins over its 64."""
    ws, env = workspace
    dvc(ws, env, "repro", "prepare")
    git(ws, env, "add", "-A")
    git(ws, env, "commit", "-q", "--no-gpg-sign", "--allow-empty", "-m", "lock")
    out = dvc(ws, env, "exp", "run", "-n", "fifth", "-S", "recipe=fifth-place", "prepare")
    assert "Running stage 'prepare'" in out and "prepare: recipe fifth-place (recipes/fifth-place.yaml)" in out
    assert (report(ws)["config"]["square"], report(ws)["config"]["min_side"]) == ("expand", 64)
    out = dvc(ws, env, "exp", "run", "-n", "fifth-32", "-S", "recipe=fifth-place", "-S", "prepare.min_side=32",
              "prepare")
    assert "params.yaml overrides it: prepare.min_side: 32 (the recipe: 64)" in out
    assert (report(ws)["config"]["square"], report(ws)["config"]["min_side"]) == ("expand", 32)
    shown = json.loads(dvc(ws, env, "exp", "show", "--json"))
    experiments = {exp["name"]: exp["data"]["params"] for row in shown for exp in (row.get("experiments") or [])
                   for exp in exp.get("revs", [])}
    for name, min_side in (("fifth", 0), ("fifth-32", 32)):
        params = experiments[name]
        assert params["params.yaml"]["data"]["recipe"] == "fifth-place"
        assert params["params.yaml"]["data"]["prepare"]["min_side"] == min_side
        assert params["recipes/fifth-place.yaml"]["data"]["prepare"]["min_side"] == 64


def test_the_demo_is_scored_against_every_photo_as_kaggle_did(workspace):
    """`dvc repro score` on the demo (a few training steps): the score's reference is the photos, all of them."""
    ws, env = workspace
    set_param(ws, "train", "epochs", "0.2")
    out = run([str(DVC), "repro", "score"], ws, env, timeout=600)
    assert "Running stage 'reference'" in out and "Running stage 'score'" in out
    photos = [p for p in (ws / "data/raw/all-dogs").iterdir() if p.suffix == ".jpg"]
    built = json.loads((ws / "data/prepared/photos64.json").read_text())
    assert built["photos_found"] == built["images_read"] == len(photos) > 0 and built["skipped"] == 0
    score = json.loads((ws / "metrics/score.json").read_text())
    assert score["reference"] == "photos" and score["reference_images"] == len(photos)
    assert score["network"] == "standin" and score["comparable_to_kaggle"] is False
    assert score["n_images"] == 10_000 and score["frechet"] in ("eigh", "sqrtm (eigh fallback)")
    assert (ws / "data/reference/standin_photos.npz").is_file()
    # the seams: an edit to the annotation parser or the box geometry reruns download (the demo draws its photos
    # from annotations) and prepare, never train, generate or score: no 9-hour training for an XML fix
    for module, users in (("pipeline/annotations.py", {"download", "prepare"}), ("pipeline/boxes.py", {"prepare"})):
        original = (ws / module).read_text()
        (ws / module).write_text(original + "\n# an edit\n")
        changed = set(json.loads(run([str(DVC), "status", "--json"], ws, env)))
        (ws / module).write_text(original)
        assert users <= changed, (module, changed)
        assert not changed & {"train", "generate", "score"}, (module, changed)  # (kernel bundles every module)
