"""The Kaggle kernel: built from the package itself (byte for byte), valid metadata, a run against a fake
/kaggle tree from a folder where the repo's `pipeline` cannot be imported, and push without credentials
or network. No Kaggle account, no network, CPU only."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml

from pipeline import kernel as kn
from pipeline import kernel_run as kr
from pipeline.config import ConfigError, build_config, slugify
from pipeline.validate import validate_zip
from tests.conftest import CREDENTIAL_VARS, REPO, TinyCompetition


# a tiny experiment: the smallest DCGAN, one pass over 24 crops, 12 images
TINY_PARAMS = {
    "data": {"source": "demo"},  # not carried by the kernel
    "prepare": {"workers": 1},
    "train": {"model": "dcgan", "dcgan": {"z_dim": 16, "g_width": 8, "d_width": 8}, "epochs": 1, "batch_size": 8,
              "log_every": 1, "sample_every": 1, "ema_decay": 0.9},
    "generate": {"n": 12, "batch_size": 5},
    "score": {"network": "standin"},
    "kernel": {"title": "Tiny dogs kernel for tests", "time_budget_min": 30, "reserve_min": 5},
}


def tiny_params(**sections) -> dict:
    params = json.loads(json.dumps(TINY_PARAMS))
    for section, values in sections.items():
        params[section] = {**params.get(section, {}), **values}
    return kn.select_params(params, [])


def bundle_of(script: str) -> zipfile.ZipFile:
    """The zip embedded in a built kernel script."""
    text = script.split('BUNDLE = """', 1)[1].split('"""', 1)[0]
    return zipfile.ZipFile(io.BytesIO(base64.b64decode(text)))


def package_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "src" / "pipeline"
    shutil.copytree(kn.PACKAGE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, message", [
    ({"titel": "Dogs!"}, "unknown key(s) kernel.titel"),
    ({"title": "Dog"}, "kernel.title: 'Dog' is too short"),
    ({"slug": "My Dogs"}, "kernel.slug: 'My Dogs' is not a URL slug"),
    ({"username": "me/you"}, "kernel.username: 'me/you' is not a Kaggle user name"),
    ({"kernel_type": "rmarkdown"}, "choose one of script, notebook"),
    ({"time_budget_min": 600}, "kernel.time_budget_min: 600.0 is out of range; it must be between 1.0 and 540.0"),
    ({"time_budget_min": 60, "reserve_min": 60}, "kernel.reserve_min (60.0) must be less than"),
    ({"private": "yes"}, "kernel.private: expected true or false"),
])
def test_kernel_config_errors_name_the_key(values, message):
    with pytest.raises(ConfigError) as info:
        build_config("kernel", values)
    assert message in str(info.value)


def test_slug_is_what_kaggle_derives_from_the_title():
    kaggles_slugify = pytest.importorskip("slugify").slugify  # the kaggle client's own (python-slugify)

    for title in ("Generative Dog Images GAN pipeline", "Dog GANs: BigGAN (v2), 130 epochs!", "Über-Dogs  --  64px"):
        assert slugify(title) == kaggles_slugify(title)
    assert slugify("Dog GANs: BigGAN (v2)") == "dog-gans-biggan-v2"
    assert build_config("kernel", {"title": "My Dogs GAN"}).kernel_slug == "my-dogs-gan"
    assert build_config("kernel", {"title": "My Dogs GAN", "slug": "dogs"}).kernel_slug == "dogs"


def test_params_selection_and_overrides():
    params = kn.select_params(TINY_PARAMS, ["train.epochs=3", "train.dcgan.g_width=4", "kernel.private=false"])
    assert set(params) == set(kr.SECTIONS)  # data is left out: it does not change what the kernel does
    assert params["train"]["epochs"] == 3 and params["train"]["dcgan"]["g_width"] == 4
    assert params["kernel"]["private"] is False
    assert TINY_PARAMS["train"]["epochs"] == 1  # the caller's mapping is not changed
    with pytest.raises(ConfigError, match="name the section"):
        kn.select_params(TINY_PARAMS, ["epochs=3"])
    with pytest.raises(ConfigError, match="name the section"):
        kn.select_params(TINY_PARAMS, ["data.source=kaggle"])
    with pytest.raises(ConfigError, match="train.model: 'stylegan' is not a known model"):
        kn.select_params(TINY_PARAMS, ["train.model=stylegan"])


# --- time budget and inputs (pure) ----------------------------------------------------------------


def test_training_gets_the_budget_less_what_ran_and_the_reserve():
    kernel = build_config("kernel", {"time_budget_min": 100, "reserve_min": 20})
    assert kr.training_budget_min(kernel, build_config("train", {}), elapsed_min=10) == 70
    assert kr.training_budget_min(kernel, build_config("train", {"time_budget_min": 30}), 10) == 30
    assert kr.training_budget_min(kernel, build_config("train", {"time_budget_min": 500}), 10) == 70
    with pytest.raises(kr.KernelRunError, match="no time left to train"):
        kr.training_budget_min(kernel, build_config("train", {}), elapsed_min=85)


def kaggle_tree(root: Path, n_photos: int = 12) -> Path:
    """``root`` laid out like /kaggle: the competition mounted as Kaggle mounts it (all-dogs/all-dogs/,
    annotation/Annotation/), and an empty working/."""
    comp = TinyCompetition(root / "input" / kr.COMPETITION / "tmp")
    comp.images = root / "input" / kr.COMPETITION / "all-dogs" / "all-dogs"
    comp.annotations = root / "input" / kr.COMPETITION / "annotation" / "Annotation"
    comp.images.mkdir(parents=True)
    comp.annotations.mkdir(parents=True)
    shutil.rmtree(comp.root)
    for i in range(n_photos):
        breed = i % 2
        comp.add(f"n0208562{breed}_{i}", f"n0208562{breed}-Breed{breed}", colour=(20 * i, 90 + 100 * breed, 30),
                 boxes=((5, 5, 80, 70), (30, 10, 110, 85)))
    (root / "working").mkdir(parents=True)
    return root


def test_inputs_are_found_in_kaggles_mount_and_elsewhere_under_input(tmp_path):
    root = kaggle_tree(tmp_path / "kaggle", n_photos=2)
    dirs = kr.find_inputs(root / "input")
    assert dirs.images == root / "input" / kr.COMPETITION / "all-dogs" / "all-dogs"
    assert dirs.annotations == root / "input" / kr.COMPETITION / "annotation" / "Annotation"
    moved = tmp_path / "other" / "input" / "competitions" / "dogs-copy"
    moved.parent.mkdir(parents=True)
    shutil.move(root / "input" / kr.COMPETITION, moved)
    assert kr.find_inputs(tmp_path / "other" / "input").images == moved / "all-dogs" / "all-dogs"
    with pytest.raises(kr.KernelRunError, match="competition_sources"):
        kr.find_inputs(root / "input")


# --- build ----------------------------------------------------------------------------------------


def test_the_bundle_is_the_package_and_follows_its_changes(tmp_path):
    params = tiny_params()
    package = package_copy(tmp_path)
    first = kn.build(params, tmp_path / "out", package_dir=package)
    script = first.code_file.read_text()
    with bundle_of(script) as z:
        names = z.namelist()
        assert names == sorted(names) and "pipeline/kernel_run.py" in names and "pipeline/models/dcgan.py" in names
        assert not any("__pycache__" in n or not n.endswith(".py") for n in names)
        for name in names:  # every module exactly as it is on disk
            assert z.read(name) == (package.parent / name).read_bytes(), name
    assert len(names) == len(list(package.rglob("*.py")))

    again = kn.build(params, tmp_path / "out", package_dir=package)
    assert not again.changed and again.code_file.read_text() == script  # nothing changed: same bytes
    assert kn.build(params, tmp_path / "elsewhere", package_dir=package).code_file.read_text() == script

    with open(package / "generate.py", "a") as fh:
        fh.write("\n# a change to a module\n")
    changed = kn.build(params, tmp_path / "out", package_dir=package)
    assert changed.changed and changed.bundle_sha256 != first.bundle_sha256
    with bundle_of(changed.code_file.read_text()) as z:
        assert z.read("pipeline/generate.py").endswith(b"# a change to a module\n")


def test_the_params_are_embedded_and_change_the_kernel(tmp_path):
    built = kn.build(tiny_params(), tmp_path)
    namespace: dict = {}
    exec(built.code_file.read_text().split("\ndef install_bundle")[0], namespace)  # docstring, imports, PARAMS
    assert namespace["PARAMS"] == tiny_params()
    other = kn.build(tiny_params(train={"epochs": 2}), tmp_path)
    assert other.changed and other.bundle_sha256 == built.bundle_sha256


def test_metadata_is_valid_for_kaggle_kernels_push(tmp_path):
    built = kn.build(tiny_params(kernel={"username": "dogfan", "private": False}), tmp_path)
    meta = json.loads((built.folder / kn.METADATA_FILE).read_text())
    assert built.folder == tmp_path / "tiny-dogs-kernel-for-tests"
    assert meta["id"] == "dogfan/tiny-dogs-kernel-for-tests"
    assert meta["title"] == "Tiny dogs kernel for tests" and slugify(meta["title"]) == meta["id"].split("/")[1]
    assert meta["code_file"] == "kernel.py" and (built.folder / meta["code_file"]).is_file()
    assert (meta["language"], meta["kernel_type"]) == ("python", "script")
    assert meta["is_private"] is False and meta["enable_gpu"] is True and meta["enable_internet"] is False
    assert meta["competition_sources"] == ["generative-dog-images"]
    for key in ("dataset_sources", "kernel_sources"):
        assert meta[key] == []
    assert kn.check_metadata(meta, built.folder, need_owner=True) == []
    assert any("enable_internet" in p for p in kn.check_metadata({**meta, "enable_internet": True}, built.folder))
    assert any("is_private" in p for p in kn.check_metadata({**meta, "is_private": "no"}, built.folder))
    assert any("names no Kaggle user" in p for p in kn.check_metadata(
        {**meta, "id": f"{kn.PLACEHOLDER_USER}/tiny-dogs-kernel-for-tests"}, built.folder, need_owner=True))


def test_kaggles_own_client_accepts_the_kernel(tmp_path, monkeypatch):
    """The kaggle package's kernels_push reads and checks the folder and fills its request from it; the
    request is caught before anything is sent."""
    KaggleApi = pytest.importorskip("kaggle.api.kaggle_api_extended").KaggleApi

    built = kn.build(tiny_params(kernel={"username": "dogfan"}), tmp_path)
    sent = []

    class Client:
        def __init__(self):
            self.kernels = SimpleNamespace(kernels_api_client=SimpleNamespace(save_kernel=self.save))

        def save(self, request):
            sent.append(request)
            return SimpleNamespace(error=None, url="https://www.kaggle.com/code/dogfan/x", version_number=1)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    api = KaggleApi()
    monkeypatch.setattr(api, "build_kaggle_client", Client)
    api.kernels_push(str(built.folder))
    (request,) = sent
    assert request.slug == "dogfan/tiny-dogs-kernel-for-tests" and request.new_title == "Tiny dogs kernel for tests"
    assert request.text == built.code_file.read_text()
    assert (request.language, request.kernel_type) == ("python", "script")
    assert request.enable_gpu is True and request.enable_internet is False and request.is_private is True
    assert list(request.competition_data_sources) == ["generative-dog-images"]


def test_a_notebook_kernel_holds_the_same_script(tmp_path):
    script = kn.build(tiny_params(), tmp_path).code_file
    built = kn.build(tiny_params(kernel={"kernel_type": "notebook"}), tmp_path)
    assert built.code_file.name == "kernel.ipynb" and not script.exists()  # the other type's file is removed
    notebook = json.loads(built.code_file.read_text())
    assert notebook["nbformat"] == 4 and [c["cell_type"] for c in notebook["cells"]] == ["markdown", "code"]
    code = kn.notebook_code(built.code_file.read_text())
    assert code == kn.render_script(built.params, kn.bundle_package(), "Tiny dogs kernel for tests")
    assert "'kernel_type': 'notebook'" in code
    assert built.metadata["kernel_type"] == "notebook" and built.metadata["code_file"] == "kernel.ipynb"
    kn.check_built(built)


# --- the kernel on a fake Kaggle ------------------------------------------------------------------


def test_the_kernels_in_training_mifid_scores_against_the_photos(tmp_path, capsys):
    """As the score stage: score.reference photos (the default) reads every photo of the input, whole."""
    root = kaggle_tree(tmp_path / "kaggle")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    summary = kr.run(tiny_params(train={"eval_every": 3, "eval_images": 16}), root, scratch)
    out = capsys.readouterr().out
    photos = len(list(kr.find_inputs(root / "input").images.glob("*.jpg")))
    assert f"photo reference of {photos} photos for the in-training MiFID (0 skipped)" in out
    assert f"against {photos} reference photos" in out and summary["train"]["steps"] == 3
    assert (scratch / "reference" / "standin_photos.npz").is_file()
    assert not (scratch / "reference" / "standin_crops.npz").exists()


def test_the_kernel_runs_on_a_fake_kaggle_without_the_repo(tmp_path):
    root = kaggle_tree(tmp_path / "kaggle")
    built = kn.build(tiny_params(), tmp_path / "kernels")
    elsewhere, scratch = tmp_path / "elsewhere", tmp_path / "tmp"
    elsewhere.mkdir()
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME") and k not in CREDENTIAL_VARS}
    env.update({kr.ROOT_ENV: str(root), "TMPDIR": str(scratch), "CUDA_VISIBLE_DEVICES": "",
                "HOME": str(tmp_path / "home")})
    proc = subprocess.run([sys.executable, str(built.code_file)], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kernel: done" in proc.stdout

    working = root / "working"
    names = sorted(p.name for p in working.iterdir())
    assert names == sorted(kr.OUTPUT_FILES) and len(names) < 500  # no temporary or stray files
    result = validate_zip(working / "images.zip", expected=12)
    assert result.images == 12
    summary = json.loads((working / "run_summary.json").read_text())
    assert summary["params"] == built.params
    assert summary["prepare"]["boxes_kept"] == 24 and summary["prepare"]["breeds"] == 2
    assert summary["train"]["steps"] == summary["train"]["total_steps"] == 3  # 1 epoch of 24 crops, batch 8
    assert not summary["train"]["stopped_by_time_budget"]
    # the epochs fit the budget: the plan is what they ask for (and the submission the same as without a budget)
    train = summary["train"]
    assert train["epochs_asked"] == train["planned_epochs"] == train["epochs_done"] == 1
    assert not summary["train"]["fitted_to_budget"]
    assert 0 < summary["train"]["time_budget_min"] <= 25  # 30 min budget less the 5 min reserve
    assert summary["generate"]["images"] == 12 and summary["outputs"] == names
    assert Path(summary["code"]).is_relative_to(scratch) and summary["code"].endswith("pipeline.zip/pipeline")
    rows = list(csv.DictReader(io.StringIO((working / "losses.csv").read_text())))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and all(float(r["loss_d"]) > 0 for r in rows)
    assert list(scratch.iterdir()) == [] or all(not p.name.startswith("dogs-kernel-") for p in scratch.iterdir())
    assert list(elsewhere.iterdir()) == []
    assert not list(root.joinpath("input").rglob("*.tmp-*"))

    # the stages as `dvc repro` runs them, on the same photos with the same params: the very same submission
    from pipeline import generate, prepare, train

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(built.params))
    dirs, out = kr.find_inputs(root / "input"), tmp_path / "stages"
    assert prepare.main(["--images", str(dirs.images), "--annotations", str(dirs.annotations), "--out",
                         str(out / "dogs64.npz"), "--no-progress", "--params", str(params)]) == 0
    assert train.main(["--data", str(out / "dogs64.npz"), "--out", str(out / "checkpoint.pt"), "--device", "cpu",
                       "--no-progress", "--params", str(params)]) == 0
    assert generate.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(out / "images.zip"),
                          "--device", "cpu", "--no-progress", "--params", str(params)]) == 0
    assert (out / "images.zip").read_bytes() == (working / "images.zip").read_bytes()


def test_a_kernel_with_epochs_auto_trains_what_fits_its_budget(tmp_path, capsys, one_thread):
    """``train.epochs: auto`` needs no train.time_budget_min in a kernel: training gets the kernel's budget (here
    1 min less 0.9 for the rest: 6 s), and run_summary.json says what was planned and done."""
    params = tiny_params(train={"epochs": "auto", "sample_every": 100},
                         kernel={"time_budget_min": 1, "reserve_min": 0.9})
    built = kn.build(params, tmp_path / "kernels")
    capsys.readouterr()
    assert "runs dcgan for as many epochs as fit and generates 12 images within 1 min" in kn._built_summary(built)
    assert kn.kaggle_warnings(params) == []
    root = kaggle_tree(tmp_path / "kaggle")
    (tmp_path / "scratch").mkdir()
    summary = kr.run(params, root, tmp_path / "scratch")
    train = json.loads((root / "working" / "run_summary.json").read_text())["train"]
    assert train == summary["train"] and train["epochs_asked"] == "auto" and train["fitted_to_budget"]
    assert train["steps"] == train["total_steps"] > 0 and not train["stopped_by_time_budget"]
    assert train["planned_epochs"] == train["epochs_done"] == round(train["steps"] * 8 / 24, 3)
    out = capsys.readouterr().out
    assert "for as many epochs as fit, at most" in out and "fitted to the time budget" in out


# --- push -----------------------------------------------------------------------------------------


@pytest.fixture
def params_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(TINY_PARAMS))
    return path


def run_main(*args) -> int:
    return kn.main(list(args))


class FakeApi:
    def __init__(self, user: str | None = "dogfan", exc: BaseException | None = None):
        self.user, self.exc, self.pushed = user, exc, []

    def get_config_value(self, name):
        assert name == "username"
        return self.user

    def kernels_push(self, folder):
        self.pushed.append(json.loads((Path(folder) / kn.METADATA_FILE).read_text()))
        if self.exc is not None:
            raise self.exc
        return SimpleNamespace(error="", url=f"https://www.kaggle.com/code/{self.pushed[-1]['id']}", version_number=4)


@pytest.fixture
def fake_api(monkeypatch):
    def install(**kwargs) -> FakeApi:
        api = FakeApi(**kwargs)
        monkeypatch.setattr(kn.download, "kaggle_api", lambda missing: api)
        return api

    return install


def test_push_prints_the_url_and_how_to_watch(params_file, fake_api, capsys):
    api = fake_api()
    assert run_main("push", "--params", str(params_file)) == 0
    out = capsys.readouterr().out
    kid = "dogfan/tiny-dogs-kernel-for-tests"
    assert api.pushed[0]["id"] == kid  # the user of the credentials fills the id
    assert f"pushed version 4 of {kid}: https://www.kaggle.com/code/{kid}" in out
    assert f"kaggle kernels status {kid}" in out and f"kaggle kernels output {kid}" in out
    meta = json.loads((params_file.parent / "kernels" / "build" / "tiny-dogs-kernel-for-tests" / kn.METADATA_FILE).read_text())
    assert meta["id"] == kid


def test_push_dry_run_sends_nothing(params_file, monkeypatch, capsys):
    monkeypatch.setattr(kn.download, "kaggle_api", lambda missing: pytest.fail("a dry run must not use the API"))
    assert run_main("push", "--dry-run", "--params", str(params_file), "--set", "kernel.username=me") == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "nothing was sent" in out
    assert (params_file.parent / "kernels" / "build" / "tiny-dogs-kernel-for-tests" / "kernel.py").is_file()


def test_push_failures_leave_the_kernel_for_a_manual_upload(params_file, fake_api, capsys):
    folder = params_file.parent / "kernels" / "build" / "tiny-dogs-kernel-for-tests"
    fake_api(exc=requests.exceptions.ConnectionError("no route"))
    assert run_main("push", "--params", str(params_file)) == 2
    err = capsys.readouterr().err
    assert "no internet access" in err and f"kaggle kernels push -p {Path('kernels') / 'build' / folder.name}" in err
    assert "Traceback" not in err and (folder / "kernel.py").is_file()
    fake_api(user=None)
    assert run_main("push", "--params", str(params_file)) == 2
    assert "no Kaggle user name" in capsys.readouterr().err


def test_push_without_credentials_says_what_to_do(no_credentials, params_file, capsys):
    assert run_main("push", "--params", str(params_file)) == 2
    captured = capsys.readouterr()
    assert "no Kaggle credentials found, so the kernel cannot be pushed" in captured.err
    assert "kaggle.json" in captured.err and "kaggle kernels push -p" in captured.err
    assert "Traceback" not in captured.err
    folder = params_file.parent / "kernels" / "build" / "tiny-dogs-kernel-for-tests"
    assert (folder / "kernel.py").is_file() and (folder / kn.METADATA_FILE).is_file()


def test_help_and_bad_params(params_file, capsys):
    for command in ("build", "push"):
        with pytest.raises(SystemExit) as info:
            run_main(command, "--help")
        assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--dry-run" in out and "kernel-metadata.json" in out
    assert run_main("build", "--params", str(params_file), "--set", "kernel.reserve_min=40") == 2
    assert "kernel.reserve_min (40.0) must be less than" in capsys.readouterr().err
    assert run_main("build", "--params", str(params_file), "--title", "abc") == 2
    assert "too short" in capsys.readouterr().err


def test_the_repo_params_build(tmp_path):
    """The committed params.yaml makes a kernel that passes its own checks (what `dvc repro kernel` runs)."""
    built = kn.build(kn.select_params(yaml.safe_load((REPO / "params.yaml").read_text()), []), tmp_path)
    kn.check_built(built)
    assert built.metadata["competition_sources"] == ["generative-dog-images"]


def test_push_without_network_with_kaggles_own_client(no_credentials, params_file, monkeypatch, capsys):
    """Credentials present, kaggle.com unreachable (sockets refused): the real client's failure is explained."""
    monkeypatch.setenv("KAGGLE_USERNAME", "dogfan")
    monkeypatch.setenv("KAGGLE_KEY", "0" * 32)
    assert run_main("push", "--params", str(params_file)) == 2
    err = capsys.readouterr().err
    assert "could not reach kaggle.com" in err and "kaggle kernels push -p" in err and "Traceback" not in err
    meta = json.loads((params_file.parent / "kernels" / "build" / "tiny-dogs-kernel-for-tests" / kn.METADATA_FILE).read_text())
    assert meta["id"] == "dogfan/tiny-dogs-kernel-for-tests"  # the user of the credentials, ready for a manual push


@pytest.mark.parametrize("capability, expected", [((6, 0), "float16"), ((7, 5), "float16"), ((8, 0), None),
                                                  ((9, 0), None)])
def test_precision_auto_is_fp16_on_kaggles_p100(monkeypatch, capability, expected):
    """P100 (6.0) and T4 (7.5) have no native bf16 (torch.cuda.is_bf16_supported() says yes there by default:
    emulation, so it must not decide) nor TF32: fp16. Ampere and newer: fp32 with TF32 (None)."""
    import torch

    from pipeline.runtime import pick_amp_dtype

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_amp_dtype("auto", torch.device("cuda", 0)) == (expected and getattr(torch, expected))
    assert pick_amp_dtype("auto", torch.device("cpu")) is None


def test_build_warns_about_settings_that_fail_or_waste_time_on_kaggle(tmp_path, params_file, capsys):
    assert kn.kaggle_warnings(tiny_params(train={"sample_every": 100})) == []
    assert "train.sample_every 1 draws about 2,766" in kn.kaggle_warnings(tiny_params())[0]  # 22126 / 8
    risky = tiny_params(train={"eval_every": 500, "compile": True, "epochs": 130, "sample_every": 6},
                        score={"network": "inception"}, generate={"precision": "bf16"})
    warnings = "\n".join(kn.kaggle_warnings(risky))
    assert "score.inception_weights" in warnings and "compute capability 7.0" in warnings
    assert "generate.precision bf16" in warnings
    assert "train.sample_every 6 draws about 59,925 sample grids" in warnings  # 130 * 22126 / 8 / 6
    slugged = kn.build(tiny_params(train={"sample_every": 100}, kernel={"slug": "tiny-dogs"}), tmp_path)
    assert slugged.folder.name == "tiny-dogs" and slugged.metadata["id"].endswith("/tiny-dogs")
    kn.check_built(slugged)  # Kaggle only warns; so does the build
    assert "kernel.slug 'tiny-dogs' is not the slug of the title" in kn.kaggle_warnings(slugged.params)[0]
    fine = tiny_params(train={"eval_every": 500, "sample_every": 100}, score={"network": "inception",
                                                         "inception_weights": "/kaggle/input/fid/pt_inception.pth"})
    assert kn.kaggle_warnings(fine) == []
    assert run_main("build", "--params", str(params_file), "--set", "train.compile=true") == 0
    assert "warning: train.compile" in capsys.readouterr().out


def test_loss_log_stands_in_for_dvclive(capsys):
    log = kr.LossLog(heartbeat_s=0.0)
    for step, (d, g) in ((10, (1.5, 0.25)), (20, (1.0, 0.5))):
        log.step = step
        log.log_metric("train/loss_d", d)
        log.log_metric("train/loss_g", g)
    log.step = 20
    log.log_metric("eval/mifid", 97.0)
    log.log_image("samples.png", None)
    log.end()
    assert kr.losses_csv(log.rows) == "step,eval_mifid,loss_d,loss_g\n10,,1.5,0.25\n20,97,1,0.5\n"
    assert "step 20: loss_d 1.000, loss_g 0.500" in capsys.readouterr().out
    png = kr.losses_png(log.rows, "test")
    assert png is not None and png.startswith(b"\x89PNG")
    assert kr.losses_png({}, "none") is None


def test_a_kernel_for_another_image_size_does_not_build():
    with pytest.raises(ConfigError, match="prepare.size: 32; the kernel trains and submits 64x64"):
        kn.kernel_params(tiny_params(prepare={"size": 32}))
