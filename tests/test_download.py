"""The download stage: credentials and HTTP errors, a faked Kaggle API, --from copies, idempotence,
and never leaving a half-replaced data/raw behind. No network, no Kaggle account."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests

import pipeline.demo_data as demo_data
from pipeline import download as dl
from pipeline.annotations import Box
from pipeline.config import build_config
from pipeline.demo_data import MARKER, jpeg_bytes, synthesize_photo
from pipeline.layout import find_competition_dirs
from tests.conftest import CREDENTIAL_VARS, REPO

ARCHIVE = f"{dl.COMPETITION}.zip"

# photo id -> (breed folder, width, height, box); two breeds as in the competition layout
PHOTOS = {
    "n02085620_7": ("n02085620-Chihuahua", 100, 80, (10, 5, 60, 70)),
    "n02085620_199": ("n02085620-Chihuahua", 90, 120, (5, 10, 80, 110)),
    "n02108915_1": ("n02108915-French_bulldog", 120, 90, (20, 15, 100, 85)),
}


def voc(width: int, height: int, box: tuple[int, int, int, int], name: str = "pug") -> bytes:
    a, b, c, d = box
    return (f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            f"<object><name>{name}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
            f"<ymax>{d}</ymax></bndbox></object></annotation>").encode()


@functools.lru_cache(maxsize=None)
def competition_files() -> dict[str, bytes]:
    """Relative path -> bytes of a tiny competition: all-dogs/<id>.jpg and Annotation/<wnid>-<Breed>/<id>."""
    rng = np.random.default_rng(0)
    files = {}
    for photo_id, (folder, w, h, box) in PHOTOS.items():
        picture = synthesize_photo(w, h, [Box(*box)], folder.split("-", 1)[1], rng)
        files[f"all-dogs/{photo_id}.jpg"] = jpeg_bytes(picture)
        files[f"Annotation/{folder}/{photo_id}"] = voc(w, h, box)
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def zip_bytes(files: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def kaggle_archive() -> bytes:
    """generative-dog-images.zip as Kaggle serves it: all-dogs.zip and Annotation.zip inside."""
    files = competition_files()
    dogs = {k: v for k, v in files.items() if k.startswith("all-dogs/")}
    ann = {k: v for k, v in files.items() if k.startswith("Annotation/")}
    return zip_bytes({"all-dogs.zip": zip_bytes(dogs), "Annotation.zip": zip_bytes(ann, zipfile.ZIP_DEFLATED)})


def tree(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary or set-aside folders the stage might have left beside its output."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def assert_installed(out: Path) -> dict:
    """``out`` holds exactly the tiny competition plus a SOURCE.json; returns the marker."""
    got = tree(out)
    marker = json.loads(got.pop(MARKER))
    assert got == competition_files()
    assert marker["photos"] == 3 and marker["annotation_files"] == 3
    return marker


@pytest.fixture(autouse=True)
def _no_params_file(tmp_path, monkeypatch):
    """Run in an empty folder, so the repo's params.yaml (edited by others) cannot steer the stage."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


KAGGLE = build_config("data", {"source": "kaggle"})


class FakeApi:
    """Stands in for KaggleApi: ``competition_download_files`` writes ``payload`` or raises ``exc``."""

    def __init__(self, payload: bytes = b"", exc: BaseException | None = None):
        self.payload, self.exc, self.calls = payload, exc, []

    def competition_download_files(self, competition, path=None, force=False, quiet=True):
        self.calls.append({"competition": competition, "path": path, "force": force})
        if self.exc is not None:
            raise self.exc
        Path(path, f"{competition}.zip").write_bytes(self.payload)


@pytest.fixture
def fake_api(monkeypatch):
    def install(**kwargs) -> FakeApi:
        api = FakeApi(**kwargs)
        monkeypatch.setattr(dl, "kaggle_api", lambda: api)
        return api

    return install


# --- missing credentials ------------------------------------------------------------------------


def test_missing_credentials_say_what_to_do(no_credentials, _no_params_file, capsys):
    work = _no_params_file
    rc = dl.main(["--out", str(work / "raw"), "--set", "source=kaggle"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "kaggle.json" in err and "--from" in err and "KAGGLE_USERNAME" in err
    assert "Traceback" not in err
    assert out == ""  # the kaggle package's own long help text is swallowed
    assert list(work.iterdir()) == []  # neither raw/ nor download/ was created


def test_missing_credentials_in_a_subprocess(tmp_path, kaggle_installed):
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "sub"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.download", "--out", "raw", "--set", "source=kaggle"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "kaggle.json" in proc.stderr and "--from" in proc.stderr
    assert proc.stdout == ""
    assert list(work.iterdir()) == []


def test_cached_archive_needs_no_credentials(no_credentials, _no_params_file):
    """An archive already in the cache is used without asking the kaggle package for anything."""
    work = _no_params_file
    (work / "download").mkdir()
    (work / "download" / ARCHIVE).write_bytes(kaggle_archive())
    assert dl.main(["--out", str(work / "raw"), "--set", "source=kaggle"]) == 0
    assert_installed(work / "raw")


# --- HTTP errors ----------------------------------------------------------------------------------


def http_error(status: int) -> requests.exceptions.HTTPError:
    response = requests.models.Response()
    response.status_code = status
    response.url = f"https://www.kaggle.com/api/v1/competitions/data/download-all/{dl.COMPETITION}"
    return requests.exceptions.HTTPError(f"{status} Error", response=response)


@pytest.mark.parametrize(
    "status, must_contain",
    [
        (401, ["401", "credentials", "kaggle.json"]),
        (403, ["403", "https://www.kaggle.com/competitions/generative-dog-images/rules", "Accept"]),
        (404, ["404", "not found", dl.COMPETITION]),
        (500, ["HTTP 500", "Try again later"]),
    ],
)
def test_http_errors_are_explained(status, must_contain):
    msg = dl.explain_http_error(http_error(status))
    for part in must_contain:
        assert part in msg
    if status != 403:
        assert dl.RULES_URL not in msg


@pytest.mark.parametrize("exc", [requests.exceptions.ConnectionError("no route"),
                                 requests.exceptions.ReadTimeout("slow")])
def test_no_network_is_explained(exc):
    msg = dl.explain_http_error(exc)
    assert "could not reach kaggle.com" in msg and type(exc).__name__ in msg
    assert f"--from {ARCHIVE}" in msg


def test_other_errors_are_named():
    assert dl.explain_http_error(requests.exceptions.HTTPError("boom")).startswith("the download failed: HTTPError")
    assert "ValueError: odd" in dl.explain_http_error(ValueError("odd"))


# --- downloading with a fake API ----------------------------------------------------------------


def test_download_installs_kaggle_layout_and_caches_the_archive(tmp_path, fake_api):
    api = fake_api(payload=kaggle_archive())
    out, cache = tmp_path / "data" / "raw", tmp_path / "data" / "cache"
    marker, did = dl.obtain(KAGGLE, out, cache_dir=cache)
    assert did
    assert marker == assert_installed(out)
    assert marker["source"] == "kaggle" and marker["competition"] == dl.COMPETITION
    # downloaded into a private folder inside the cache, then moved into place
    assert len(api.calls) == 1 and api.calls[0]["competition"] == dl.COMPETITION
    assert Path(api.calls[0]["path"]).parent == cache and Path(api.calls[0]["path"]) != cache
    assert sorted(p.name for p in cache.iterdir()) == [ARCHIVE]
    assert (cache / ARCHIVE).read_bytes() == kaggle_archive()
    assert leftovers(out.parent) == []

    marker2, did2 = dl.obtain(KAGGLE, out, cache_dir=cache)  # current: nothing to do
    assert not did2 and marker2 == marker and len(api.calls) == 1
    _, did3 = dl.obtain(KAGGLE, out, cache_dir=cache, force=True)  # rebuilt from the cached archive
    assert did3 and len(api.calls) == 1
    assert_installed(out)
    _, did4 = dl.obtain(KAGGLE, out, cache_dir=cache, force=True, redownload=True)
    assert did4 and len(api.calls) == 2
    assert_installed(out)
    assert leftovers(out.parent) == [] and sorted(p.name for p in cache.iterdir()) == [ARCHIVE]


def test_main_download_default_cache_beside_out(_no_params_file, fake_api, capsys):
    work = _no_params_file
    api = fake_api(payload=kaggle_archive())
    args = ["--out", str(work / "data" / "raw"), "--set", "source=kaggle"]
    assert dl.main(args) == 0
    assert (work / "data" / "download" / ARCHIVE).is_file()
    assert_installed(work / "data" / "raw")
    assert dl.main(args) == 0
    assert "already complete" in capsys.readouterr().out
    assert len(api.calls) == 1


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def corrupted(data: bytes) -> bytes:
    """One byte flipped inside the stored all-dogs.zip member: the central directory is fine, a CRC is not."""
    b = bytearray(data)
    b[len(b) // 3] ^= 0xFF
    return bytes(b)


@pytest.mark.parametrize("damage", [truncated, corrupted])
def test_damaged_download_is_never_taken_for_complete(tmp_path, fake_api, damage):
    out, cache = tmp_path / "raw", tmp_path / "cache"
    api = fake_api(payload=damage(kaggle_archive()))
    with pytest.raises(dl.DownloadError, match="zip archive|corrupt"):
        dl.obtain(KAGGLE, out, cache_dir=cache)
    assert not out.exists()
    assert list(cache.rglob("*")) == []  # no archive, no temporary download folder
    assert leftovers(tmp_path) == []
    # the next attempt downloads again (nothing stale was cached) and succeeds
    api.payload = kaggle_archive()
    _, did = dl.obtain(KAGGLE, out, cache_dir=cache)
    assert did and len(api.calls) == 2
    assert_installed(out)


def test_failed_download_keeps_the_previous_data(tmp_path, fake_api):
    src = tmp_path / "copy"
    write_tree(src, competition_files())
    out, cache = tmp_path / "raw", tmp_path / "cache"
    dl.obtain(KAGGLE, out, local=str(src))
    before = tree(out)
    fake_api(payload=truncated(kaggle_archive()))
    with pytest.raises(dl.DownloadError):
        dl.obtain(KAGGLE, out, cache_dir=cache)
    assert tree(out) == before
    assert leftovers(tmp_path) == []


def test_no_network_during_download(tmp_path, fake_api, capsys):
    out, cache = tmp_path / "raw", tmp_path / "cache"
    fake_api(exc=requests.exceptions.ConnectionError("Failed to establish a new connection"))
    with pytest.raises(dl.DownloadError, match="could not reach kaggle.com") as info:
        dl.obtain(KAGGLE, out, cache_dir=cache)
    assert "--from" in str(info.value)
    assert not out.exists() and list(cache.rglob("*")) == []
    assert dl.main(["--out", str(out), "--cache", str(cache), "--set", "source=kaggle"]) == 2
    assert "could not reach kaggle.com" in capsys.readouterr().err


def test_rules_not_accepted_during_download(tmp_path, fake_api, capsys):
    fake_api(exc=http_error(403))
    assert dl.main(["--out", str(tmp_path / "raw"), "--cache", str(tmp_path / "c"), "--set", "source=kaggle"]) == 2
    err = capsys.readouterr().err
    assert dl.RULES_URL in err and "Traceback" not in err
    assert not (tmp_path / "raw").exists()


# --- --from a copy on disk ------------------------------------------------------------------------


def kaggle_mount(root: Path) -> Path:
    """/kaggle/input/generative-dog-images as a notebook sees it: all-dogs/all-dogs/, annotation/Annotation/."""
    for rel, data in competition_files().items():
        top, rest = rel.split("/", 1)
        nested = f"all-dogs/all-dogs/{rest}" if top == "all-dogs" else f"annotation/Annotation/{rest}"
        (root / nested).parent.mkdir(parents=True, exist_ok=True)
        (root / nested).write_bytes(data)
    return root


def test_from_kaggle_notebook_mount(tmp_path, capsys):
    src = kaggle_mount(tmp_path / "input" / dl.COMPETITION)
    src_before = tree(src)
    out = tmp_path / "data" / "raw"
    assert dl.main(["--out", str(out), "--from", str(src)]) == 0
    marker = assert_installed(out)
    assert marker["source"] == "local" and marker["path"] == str(src.resolve())
    assert tree(src) == src_before  # the source is left as it was
    assert "wrote" in capsys.readouterr().out
    assert dl.main(["--out", str(out), "--from", str(src)]) == 0
    assert "already complete" in capsys.readouterr().out
    assert leftovers(out.parent) == []


def test_from_the_competition_zip(tmp_path):
    archive = tmp_path / ARCHIVE
    archive.write_bytes(kaggle_archive())
    out = tmp_path / "not" / "yet" / "raw"  # parent folders do not exist yet
    assert dl.main(["--out", str(out), "--from", str(archive)]) == 0
    assert_installed(out)
    assert leftovers(out.parent) == [] and sorted(p.name for p in out.parent.iterdir()) == ["raw"]
    assert archive.read_bytes() == kaggle_archive()


def test_local_copy_from_params(tmp_path, _no_params_file, monkeypatch):
    monkeypatch.setattr(dl, "kaggle_api", lambda: pytest.fail("must not download when data.local_copy is set"))
    src = kaggle_mount(tmp_path / "mount")
    (_no_params_file / "params.yaml").write_text(f"data:\n  source: kaggle\n  local_copy: {src}\n")
    out = tmp_path / "raw"
    assert dl.main(["--out", str(out)]) == 0
    assert assert_installed(out)["source"] == "local"


@pytest.mark.parametrize("missing", ["all-dogs", "Annotation"])
def test_from_a_folder_without_the_competition(tmp_path, capsys, missing):
    src = tmp_path / "half"
    write_tree(src, {k: v for k, v in competition_files().items() if not k.startswith(missing + "/")})
    out = tmp_path / "raw"
    assert dl.main(["--out", str(out), "--from", str(src)]) == 2
    err = capsys.readouterr().err
    assert f"could not find {missing}/" in err and "Traceback" not in err
    other = "Annotation/" if missing == "all-dogs" else "all-dogs/"
    assert f"find {other}" not in err and f"or {other}" not in err  # only what is really missing is named
    assert not out.exists() and leftovers(tmp_path) == []


def test_from_nothing_or_not_a_zip(tmp_path, capsys):
    out = tmp_path / "raw"
    assert dl.main(["--out", str(out), "--from", str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    bogus = tmp_path / "dogs.zip"
    bogus.write_bytes(b"<html>Please sign in</html>")
    assert dl.main(["--out", str(out), "--from", str(bogus)]) == 2
    assert "not a complete zip archive" in capsys.readouterr().err
    assert not out.exists() and leftovers(tmp_path) == []


def test_from_a_zip_with_a_broken_inner_zip(tmp_path, capsys):
    archive = tmp_path / ARCHIVE
    archive.write_bytes(zip_bytes({"all-dogs.zip": b"<html>not a zip</html>", "Annotation.zip": b"nor this"}))
    out = tmp_path / "raw"
    assert dl.main(["--out", str(out), "--from", str(archive)]) == 2
    assert "zip" in capsys.readouterr().err
    assert not out.exists() and leftovers(tmp_path) == []


# --- the demo source: idempotent, seed-sensitive -------------------------------------------------


@pytest.fixture
def small_demo(tmp_path, monkeypatch):
    """build_demo on 3 annotations instead of the shipped 295 (same code, faster)."""
    asset = tmp_path / "demo_annotations.zip"
    asset.write_bytes(zip_bytes({f"Annotation/{folder}/{pid}": voc(w, h, box)
                                 for pid, (folder, w, h, box) in PHOTOS.items()}))
    monkeypatch.setattr(dl, "build_demo", functools.partial(demo_data.build_demo, annotations_zip=asset))


def test_demo_with_the_shipped_annotations(tmp_path, capsys):
    out = tmp_path / "raw"
    assert dl.main(["--out", str(out)]) == 0
    assert "demo data is synthesized" in capsys.readouterr().out
    marker = json.loads((out / MARKER).read_text())
    assert marker == {"source": "demo", "seed": 0, "photos": 295, "boxes": 380}
    assert len(list((out / "all-dogs").glob("*.jpg"))) == 295
    dirs = find_competition_dirs(out)
    assert dirs.images == out / "all-dogs" and dirs.annotations == out / "Annotation"


def digest(folder: Path) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in tree(folder).items()}


def test_demo_is_idempotent_and_follows_seed_and_force(tmp_path, small_demo, capsys):
    out = tmp_path / "raw"
    photo = out / "all-dogs" / "n02085620_7.jpg"
    old = 1_000_000_000
    assert dl.main(["--out", str(out)]) == 0
    first = digest(out)
    assert len([k for k in first if k.startswith("all-dogs/")]) == 3
    os.utime(photo, ns=(old, old))

    capsys.readouterr()
    assert dl.main(["--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out
    marker, did = dl.obtain(build_config("data", {}), out)
    assert not did and marker["seed"] == 0
    assert photo.stat().st_mtime_ns == old and digest(out) == first

    assert dl.main(["--out", str(out), "--set", "demo_seed=1"]) == 0  # another seed: rebuilt
    second = digest(out)
    assert json.loads((out / MARKER).read_text())["seed"] == 1
    assert second["all-dogs/n02085620_7.jpg"] != first["all-dogs/n02085620_7.jpg"]
    assert {k: v for k, v in second.items() if k.startswith("Annotation/")} == \
           {k: v for k, v in first.items() if k.startswith("Annotation/")}

    os.utime(photo, ns=(old, old))
    assert dl.main(["--out", str(out), "--set", "demo_seed=1", "--force"]) == 0
    assert photo.stat().st_mtime_ns != old
    assert digest(out) == second  # same seed, same bytes
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("bad_marker", [None, "{not json", '{"source": "demo", "seed": 7}'])
def test_folder_without_a_matching_marker_is_rebuilt(tmp_path, small_demo, bad_marker):
    out = tmp_path / "raw"
    write_tree(out, {"all-dogs/stray.jpg": b"half", "junk.txt": b"x"})
    if bad_marker is not None:
        (out / MARKER).write_text(bad_marker)
    _, did = dl.obtain(build_config("data", {}), out)
    assert did
    assert not (out / "junk.txt").exists() and not (out / "all-dogs" / "stray.jpg").exists()
    assert json.loads((out / MARKER).read_text())["seed"] == 0


# --- a failure midway never leaves a half-replaced folder -----------------------------------------


def fail_on_call(n: int, real, exc: BaseException):
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= n:
            raise exc
        return real(*args, **kwargs)

    return wrapper


def test_demo_build_failing_midway_keeps_the_old_folder(tmp_path, small_demo, monkeypatch):
    out = tmp_path / "raw"
    dl.obtain(build_config("data", {}), out)
    before = tree(out)
    monkeypatch.setattr(demo_data, "jpeg_bytes", fail_on_call(2, demo_data.jpeg_bytes, RuntimeError("killed")))
    with pytest.raises(RuntimeError, match="killed"):
        dl.obtain(build_config("data", {"demo_seed": 5}), out)
    assert tree(out) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "where, call, exc",
    [
        ("_link_or_copy", 2, RuntimeError("killed")),  # second photo
        ("_link_or_copy", 5, OSError(28, "No space left on device")),  # among the annotations
        ("write_json", 1, RuntimeError("killed")),  # everything copied, the marker not written
    ],
)
def test_install_failing_midway_keeps_the_old_folder(tmp_path, monkeypatch, where, call, exc):
    old_src, new_src = tmp_path / "old", kaggle_mount(tmp_path / "new")
    write_tree(old_src, {k.replace("n02108915_1", "n02108915_2"): v for k, v in competition_files().items()})
    out = tmp_path / "data" / "raw"
    dl.obtain(KAGGLE, out, local=str(old_src))
    before = tree(out)
    assert "all-dogs/n02108915_2.jpg" in before
    monkeypatch.setattr(dl, where, fail_on_call(call, getattr(dl, where), exc))
    with pytest.raises(type(exc)):
        dl.obtain(KAGGLE, out, local=str(new_src))
    assert tree(out) == before
    assert leftovers(out.parent) == [] and sorted(p.name for p in out.parent.iterdir()) == ["raw"]


def test_zip_install_failing_midway_keeps_the_old_folder(tmp_path, fake_api, monkeypatch):
    src = kaggle_mount(tmp_path / "mount")
    out = tmp_path / "data" / "raw"
    dl.obtain(KAGGLE, out, local=str(src))
    before = tree(out)
    fake_api(payload=kaggle_archive())
    monkeypatch.setattr(dl, "_link_or_copy", fail_on_call(3, dl._link_or_copy, RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        dl.obtain(KAGGLE, out, cache_dir=tmp_path / "cache")
    assert tree(out) == before
    assert leftovers(out.parent) == [] and sorted(p.name for p in out.parent.iterdir()) == ["raw"]


# --- layout ---------------------------------------------------------------------------------------


def make(root: Path, *files: str) -> Path:
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    return root


def test_layout_flat(tmp_path):
    root = make(tmp_path, "all-dogs/n1_1.jpg", "Annotation/n1-pug/n1_1")
    dirs = find_competition_dirs(root)
    assert dirs.images == root / "all-dogs" and dirs.annotations == root / "Annotation"


def test_layout_kaggle_notebook_mount(tmp_path):
    root = make(tmp_path, "all-dogs/all-dogs/n1_1.jpg", "annotation/Annotation/n1-pug/n1_1")
    dirs = find_competition_dirs(root)
    assert dirs.images == root / "all-dogs" / "all-dogs"
    assert dirs.annotations == root / "annotation" / "Annotation"


def test_layout_extracted_archive_and_lower_case(tmp_path):
    root = make(tmp_path, "x/all-dogs/all-dogs/n1_1.PNG", "x/Annotation/annotation/n1-pug/n1_1")
    dirs = find_competition_dirs(root)
    assert dirs.images == root / "x" / "all-dogs" / "all-dogs"
    assert dirs.annotations == root / "x" / "Annotation" / "annotation"


def test_layout_prefers_the_shallowest_and_skips_hidden(tmp_path):
    root = make(tmp_path, "all-dogs/n1_1.jpg", "backup/all-dogs/n1_1.jpg", "Annotation/n1-pug/n1_1",
                ".cache/Annotation/n2-beagle/n2_1")
    dirs = find_competition_dirs(root)
    assert dirs.images == root / "all-dogs" and dirs.annotations == root / "Annotation"
    hidden = make(tmp_path / "h", ".git/all-dogs/n1_1.jpg", "Annotation/n1-pug/n1_1")
    with pytest.raises(FileNotFoundError, match="all-dogs/"):
        find_competition_dirs(hidden)


def test_layout_depth_limit(tmp_path):
    root = make(tmp_path, "a/b/c/all-dogs/n1_1.jpg", "a/b/c/Annotation/n1-pug/n1_1")
    assert find_competition_dirs(root, max_depth=4).images == root / "a" / "b" / "c" / "all-dogs"
    with pytest.raises(FileNotFoundError, match="within 3 folder levels"):
        find_competition_dirs(root, max_depth=3)


def test_layout_missing(tmp_path):
    no_photos = make(tmp_path / "p", "all-dogs/readme.txt", "Annotation/n1-pug/n1_1")
    with pytest.raises(FileNotFoundError) as info:
        find_competition_dirs(no_photos)
    assert "all-dogs/ (the photos)" in str(info.value) and "Annotation/ (the boxes)" not in str(info.value)

    no_breeds = make(tmp_path / "b", "all-dogs/n1_1.jpg", "Annotation/n1_1", "Annotation/notes/x")
    with pytest.raises(FileNotFoundError) as info:
        find_competition_dirs(no_breeds)
    assert "Annotation/ (the boxes)" in str(info.value) and "all-dogs/ (the photos)" not in str(info.value)

    empty = tmp_path / "e"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"all-dogs/ \(the photos\) or Annotation/ \(the boxes\)"):
        find_competition_dirs(empty)
    with pytest.raises(FileNotFoundError, match="folder not found"):
        find_competition_dirs(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="folder not found"):
        find_competition_dirs(make(tmp_path / "f", "file.zip") / "file.zip")
