"""Stage ``download``: put the raw competition files in ``data/raw/{all-dogs,Annotation}``.

    python -m pipeline.download --out data/raw                  # as params.yaml's data.source says
    python -m pipeline.download --out data/raw --from DIR_OR_ZIP # a copy already on disk

``data.source: demo`` (the default) builds the offline demo set (:mod:`pipeline.demo_data`);
``data.source: kaggle`` fetches ``generative-dog-images`` with the kaggle package's API, or copies
``data.local_copy`` / ``--from`` (a folder such as ``/kaggle/input/generative-dog-images``, or the
downloaded zip). The output folder is replaced only once complete, and carries a ``SOURCE.json``
marker, written last; a rerun that asks for the same source finds the marker and does nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from pipeline.config import ConfigError, DataConfig, add_config_arguments, config_from_args
from pipeline.demo_data import MARKER, build_demo
from pipeline.files import replace_dir, write_json
from pipeline.layout import find_competition_dirs

COMPETITION = "generative-dog-images"
RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"


class DownloadError(RuntimeError):
    """The raw data could not be obtained; the message says what to do."""


GET_CREDENTIALS = """Create an API token on https://www.kaggle.com/settings (section "API") and either save the downloaded
kaggle.json as ~/.kaggle/kaggle.json (chmod 600), or export KAGGLE_USERNAME and KAGGLE_KEY (or
KAGGLE_API_TOKEN)"""  # how to get credentials; what follows it (".", ", then ...") is the caller's


def no_credentials(cannot: str, then: str) -> str:
    """The message for missing credentials: what ``cannot`` be done, how to get them, and ``then`` (the rest of
    the sentence: what to do next)."""
    return f"no Kaggle credentials found, so {cannot}.\n{GET_CREDENTIALS}{then}"


NO_CREDENTIALS = no_credentials(
    "the competition data cannot be downloaded",
    f""". Alternatively use a copy already on disk: `python -m pipeline.download --from DIR`
(e.g. /kaggle/input/{COMPETITION}), or run everything offline on the demo data (data.source: demo).""")

RULES_NOT_ACCEPTED = f"""Kaggle refused the download (HTTP 403): this account has not accepted the rules of the
competition. Sign in, open {RULES_URL}, click "I Understand and Accept", then run this again.
(A 403 can also mean the token lacks permission; a fresh kaggle.json from https://www.kaggle.com/settings fixes that.)"""

BAD_CREDENTIALS = """Kaggle rejected the credentials (HTTP 401). Create a new API token on https://www.kaggle.com/settings
and replace ~/.kaggle/kaggle.json (or KAGGLE_USERNAME / KAGGLE_KEY) with it."""

NO_NETWORK = f"""could not reach kaggle.com ({{detail}}). This machine seems to have no internet access.
Download {COMPETITION}.zip on a machine that has it (`kaggle competitions download {COMPETITION}`, or the
"Download All" button on the competition's Data page), copy it here and run
`python -m pipeline.download --from {COMPETITION}.zip`; or run offline on the demo data (data.source: demo)."""


def kaggle_api(missing: str = NO_CREDENTIALS):
    """An authenticated ``KaggleApi``. Imported here, not at module level: the kaggle package
    authenticates when imported, and older releases raise at import time without credentials.

    ``missing`` is the message of the DownloadError raised without credentials (the kernel stage says
    what it could not do instead)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as exc:
        raise DownloadError(f"the kaggle package is not installed ({exc}); run `pip install -r requirements.txt`.") from None
    except (OSError, SystemExit):  # kaggle < 1.7 raised OSError at import without kaggle.json
        raise DownloadError(missing) from None
    api = KaggleApi()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its own long help text; ours says the same shorter
            api.authenticate()
    except (SystemExit, OSError, ValueError):
        raise DownloadError(missing) from None
    return api


def explain_http_error(exc: BaseException) -> str:
    """A one-paragraph explanation of a failed Kaggle API call."""
    import requests

    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 401:
            return BAD_CREDENTIALS
        if status == 403:
            return RULES_NOT_ACCEPTED
        if status == 404:
            return f"Kaggle says competition {COMPETITION!r} was not found (HTTP 404); check the kaggle package version."
        return f"Kaggle answered HTTP {status}: {exc}. Try again later."
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return NO_NETWORK.format(detail=type(exc).__name__)
    return f"the download failed: {type(exc).__name__}: {exc}"


def fetch_archive(cache_dir: Path, force: bool = False) -> Path:
    """Download the competition archive into ``cache_dir`` and return its path.

    The file is downloaded into a private temporary folder and moved into the cache only after its
    zip structure checks out, so an interrupted download is never taken for a complete one.
    """
    final = cache_dir / f"{COMPETITION}.zip"
    if final.is_file() and not force:
        return final
    api = kaggle_api()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download.tmp-", dir=cache_dir))
    try:
        try:
            api.competition_download_files(COMPETITION, path=str(tmp), force=True, quiet=False)
        except Exception as exc:  # the kaggle client raises requests' exceptions and its own
            raise DownloadError(explain_http_error(exc)) from None
        archives = list(tmp.glob("*.zip"))
        if len(archives) != 1:
            raise DownloadError(f"the download left {[p.name for p in tmp.iterdir()]} instead of one zip archive.")
        check_zip(archives[0])
        os.replace(archives[0], final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def check_zip(path: Path, remedy: str = "delete it and download again") -> None:
    """Raise DownloadError unless ``path`` is a complete zip archive (central directory and CRCs); the
    message ends with ``remedy`` (a downloaded archive: download it again; a file the user named: check it)."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"{path} is not a complete zip archive ({exc}); {remedy}.") from None
    if bad is not None:
        raise DownloadError(f"{path}: member {bad} is corrupt; {remedy}.")


def extract_nested(archive: Path, dest: Path, remedy: str = "delete it and download again") -> None:
    """Extract ``archive`` into ``dest``, then every zip found inside it, into a folder of its name. ``remedy``:
    what a message about a broken ``archive`` tells the user to do."""
    check_zip(archive, remedy)
    with zipfile.ZipFile(archive) as z:
        z.extractall(dest)
    for inner in sorted(dest.rglob("*.zip")):
        check_zip(inner)
        with zipfile.ZipFile(inner) as z:
            z.extractall(inner.with_suffix(""))
        inner.unlink()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # same file system: no second copy of 800 MB of photos
    except OSError:
        shutil.copy2(src, dst)


def install_raw(source_root: Path, out: Path, marker: dict) -> dict:
    """Copy the competition folders found under ``source_root`` into ``out`` (all-dogs/, Annotation/).

    Built in a temporary folder beside ``out``, marker written last, then renamed into place.
    """
    dirs = find_competition_dirs(source_root)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        shutil.copytree(dirs.images, tmp / "all-dogs", copy_function=_link_or_copy)
        shutil.copytree(dirs.annotations, tmp / "Annotation", copy_function=_link_or_copy)
        marker = dict(marker)
        marker["photos"] = sum(1 for _ in (tmp / "all-dogs").iterdir())
        marker["annotation_files"] = sum(1 for p in (tmp / "Annotation").rglob("*") if p.is_file())
        write_json(tmp / MARKER, marker)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return marker


def read_marker(out: Path) -> dict | None:
    try:
        return json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None


def wanted_marker(cfg: DataConfig, local: str) -> dict:
    """What SOURCE.json says when ``out`` holds what ``cfg`` (and ``--from``) ask for."""
    if cfg.source == "demo" and not local:
        return {"source": "demo", "seed": cfg.demo_seed}
    if local:
        return {"source": "local", "path": str(Path(local).resolve())}
    return {"source": "kaggle", "competition": COMPETITION}


def is_current(out: Path, wanted: dict) -> bool:
    have = read_marker(out)
    return have is not None and all(have.get(k) == v for k, v in wanted.items())


def obtain(
    cfg: DataConfig,
    out: Path,
    local: str = "",
    cache_dir: Path | None = None,
    force: bool = False,
    redownload: bool = False,
) -> tuple[dict, bool]:
    """The stage's core. Returns (the marker of what ``out`` now holds, whether anything was done).

    ``force`` rebuilds ``out`` even when its marker says it is current; ``redownload`` also fetches
    the archive again instead of reusing the one in ``cache_dir``.
    """
    wanted = wanted_marker(cfg, local)
    if not force and is_current(out, wanted):
        return read_marker(out), False
    if wanted["source"] == "demo":
        return build_demo(out, seed=cfg.demo_seed), True
    if wanted["source"] == "local":
        src = Path(local)
        if not src.exists():
            raise DownloadError(f"{local} (--from, or data.local_copy in params.yaml): no such file or folder.")
        if src.is_file():
            with tempfile.TemporaryDirectory(prefix=".extract.tmp-", dir=out.parent if out.parent.exists() else None) as t:
                extract_nested(src, Path(t), remedy="give the competition's zip (generative-dog-images.zip) or a "
                               "folder holding all-dogs/ and Annotation/")
                return install_raw(Path(t), out, wanted), True
        return install_raw(src, out, wanted), True
    archive = fetch_archive(cache_dir or out.parent / "download", force=redownload)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".extract.tmp-", dir=out.parent) as t:
        extract_nested(archive, Path(t))
        return install_raw(Path(t), out, wanted), True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.download",
        description="Put the raw competition files in OUT/all-dogs/ and OUT/Annotation/: the offline demo set "
        "(data.source: demo), or the real photos (data.source: kaggle) downloaded with the Kaggle API or "
        "copied from --from. Does nothing when OUT already holds what is asked for.",
    )
    parser.add_argument("--out", default="data/raw", metavar="DIR", help="folder to fill (default: %(default)s)")
    parser.add_argument("--from", dest="local", default="", metavar="DIR_OR_ZIP",
                        help="use a copy already on disk (a folder holding all-dogs/ and Annotation/ at any depth, "
                        "e.g. /kaggle/input/generative-dog-images, or the competition zip); overrides data.local_copy")
    parser.add_argument("--cache", metavar="DIR", help="where the downloaded archive is kept (default: OUT/../download)")
    parser.add_argument("--force", action="store_true", help="rebuild OUT even if it already holds what is asked for")
    parser.add_argument("--redownload", action="store_true",
                        help="download the archive again instead of reusing the one in --cache")
    add_config_arguments(parser, "data")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        cfg = config_from_args(args, "data")
        local = args.local or (cfg.local_copy if cfg.source == "kaggle" else "")
        marker, did = obtain(cfg, out, local, Path(args.cache) if args.cache else None, args.force, args.redownload)
    except (ConfigError, DownloadError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only folder: say so, without a traceback
        print(f"error: could not write {out}: {exc}. Free some space or pick another --out.", file=sys.stderr)
        return 2
    counts = ", ".join(f"{k} {marker[k]}" for k in ("photos", "annotation_files", "boxes") if k in marker)
    print(f"{'wrote' if did else 'already complete:'} {out} ({marker.get('source')}; {counts})")
    if marker.get("source") == "demo":
        print("note: demo data is synthesized; results on it mean nothing about real dogs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
