"""Stage ``kernel``: the experiment in params.yaml -> a self-contained Kaggle kernel, and its push.

    python -m pipeline.kernel build              # kernels/build/<slug>/kernel.py + kernel-metadata.json
    python -m pipeline.kernel push [--dry-run]   # build, check, then push with the Kaggle API

The kernel is one file that needs nothing but Kaggle's own image: it carries this project's
``pipeline`` package, zipped from the modules themselves at build time (so it cannot drift from the
code that ``dvc repro`` ran), and the prepare, train, generate and kernel sections of the params
(``params.yaml`` as ``dvc exp run`` left it, plus ``--set`` overrides). On Kaggle it unpacks the
package into a temporary folder (not /kaggle/working, whose files count against the 500-file limit),
imports it from there and calls :func:`pipeline.kernel_run.kernel_main`: prepare -> train ->
generate in one process, ``/kaggle/working/images.zip`` at the end.

The same code and params always give the same bytes, so rebuilding with nothing changed changes
nothing (and the ``kernel`` stage of dvc.yaml stays up to date).
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import io
import json
import pprint
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipeline import download
from pipeline.config import (DEFAULT_PARAMS, DEMO_RECIPE, ConfigError, KernelConfig, apply_overrides, read_params,
                             recipe_of, recipe_title, resolve_section, sample_grid_warning, slugify)
from pipeline.errors import error_text
from pipeline.files import write_text
from pipeline.kernel_run import COMPETITION, OUTPUT_FILES, ROOT_ENV, SECTIONS, epochs_text, kernel_params
from pipeline.plan import AUTO

PACKAGE_DIR = Path(__file__).resolve().parent  # the package that gets bundled
PACKAGE = "pipeline"
DEFAULT_OUT_DIR = Path("kernels") / "build"  # kernels/README.md, in git, stays beside it
METADATA_FILE = "kernel-metadata.json"
CODE_FILES = {"script": "kernel.py", "notebook": "kernel.ipynb"}
PLACEHOLDER_USER = "YOUR-KAGGLE-USERNAME"  # the id's owner when no user name is known at build time
BUNDLE_DATE = (2019, 6, 28, 0, 0, 0)  # every zip member's timestamp: same code, same bytes
BASE64_LINE = 100  # characters per line of the embedded bundle
METADATA_LISTS = ("dataset_sources", "competition_sources", "kernel_sources", "model_sources")
METADATA_BOOLS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")


class KernelError(RuntimeError):
    """The kernel could not be built, checked or pushed; the message says what to do."""


# --- build ----------------------------------------------------------------------------------------


def select_params(params: dict, overrides: list[str]) -> dict:
    """The sections a kernel carries (``SECTIONS``) from a whole params mapping, its recipe applied and then
    ``section.key=value`` overrides, validated (ConfigError on a wrong key or value). Other sections are left out: they do
    not change what the kernel does."""
    grouped: dict[str, list[str]] = {}
    for item in overrides:
        key = item.partition("=")[0].strip()
        section = key.split(".", 1)[0]
        if "." not in key or section not in SECTIONS:
            raise ConfigError(f"--set {item!r}: name the section, one of {', '.join(SECTIONS)}: "
                              "e.g. --set train.epochs=1")
        grouped.setdefault(section, []).append(item)
    selected = {}
    for section in SECTIONS:  # with the recipe's values where params.yaml picks one (config.resolve_section)
        selected[section] = apply_overrides(section, resolve_section(params, section), grouped.get(section, []))
    recipe = recipe_of(params)
    if recipe != DEMO_RECIPE:  # the title names the recipe, so that the kernels of two recipes tell apart on Kaggle
        title = selected["kernel"].get("title") or KernelConfig.title
        selected["kernel"] = dict(selected["kernel"], title=recipe_title(title, recipe))
    kernel_params(selected)
    return selected


def package_files(package_dir: Path) -> list[Path]:
    """Every .py file of the package, sorted (no caches, no hidden files, no data assets)."""
    return sorted(
        p for p in package_dir.rglob("*.py")
        if not any(part.startswith((".", "__pycache__")) for part in p.relative_to(package_dir).parts)
    )


def bundle_package(package_dir: Path = PACKAGE_DIR) -> bytes:
    """The package's .py files as zip bytes, importable with zipimport (members ``pipeline/...``).

    Deterministic: sorted members, one fixed timestamp and mode, fixed compression level.
    """
    files = package_files(package_dir)
    if not any(p.name == "kernel_run.py" and p.parent == package_dir for p in files):
        raise KernelError(f"{package_dir}: not the pipeline package (no kernel_run.py)")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path in files:
            info = zipfile.ZipInfo(f"{PACKAGE}/{path.relative_to(package_dir).as_posix()}", date_time=BUNDLE_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, path.read_bytes(), compresslevel=9)
    return buf.getvalue()


def _base64_lines(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i:i + BASE64_LINE] for i in range(0, len(text), BASE64_LINE))


# The kernel's own code. It only installs the bundle; everything else is the package's (kernel_run.py).
BOOTSTRAP = '''

def install_bundle(scratch):
    """Unpack the embedded pipeline package into ``scratch`` and import it from there (zipimport)."""
    data = base64.b64decode(BUNDLE)
    if hashlib.sha256(data).hexdigest() != BUNDLE_SHA256:
        raise RuntimeError("the embedded pipeline bundle is corrupt; rebuild the kernel")
    path = os.path.join(scratch, "pipeline.zip")
    with open(path, "wb") as fh:
        fh.write(data)
    for name in [m for m in sys.modules if m == "pipeline" or m.startswith("pipeline.")]:
        del sys.modules[name]  # a notebook run twice, or another package of that name: use the bundle's
    sys.path.insert(0, path)
    importlib.invalidate_caches()
    import pipeline
    if not pipeline.__file__.startswith(path):
        raise RuntimeError(f"imported pipeline from {pipeline.__file__}, not from the kernel's bundle")


def main():
    scratch = tempfile.mkdtemp(prefix="dogs-kernel-")  # outside /kaggle/working (500-file limit)
    try:
        install_bundle(scratch)
        from pipeline.kernel_run import kernel_main
        return kernel_main(PARAMS, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
'''


def render_script(params: dict, bundle: bytes, title: str) -> str:
    """The kernel as one Python script: docstring, params, bootstrap, then the bundle (base64)."""
    sha = hashlib.sha256(bundle).hexdigest()
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        members = z.namelist()
    outputs = ",\n".join(f"    {name}" for name in OUTPUT_FILES)
    return (
        f'"""Kaggle kernel for the Generative Dog Images competition, built by `python -m pipeline.kernel build`.\n'
        f"\n"
        f"Do not edit: rebuild it from the project instead. It holds the project's own `pipeline` package\n"
        f"({len(members)} modules, zipped and base64-encoded at the end of this file) and the params of one\n"
        f"experiment (PARAMS). Run on Kaggle (GPU on, internet off, the competition's data added as input), it\n"
        f"reads the photos and boxes under /kaggle/input/{COMPETITION}/, runs prepare -> train -> generate\n"
        f"in this process within kernel.time_budget_min, and writes to /kaggle/working:\n{outputs}.\n"
        f"Set ${ROOT_ENV} to run it against another folder laid out like /kaggle (input/, working/).\n"
        f'"""\n'
        f"\n"
        f"import base64\n"
        f"import hashlib\n"
        f"import importlib\n"
        f"import os\n"
        f"import shutil\n"
        f"import sys\n"
        f"import tempfile\n"
        f"\n"
        f"TITLE = {title!r}\n"
        f"\n"
        f"PARAMS = {pprint.pformat(params, width=100, sort_dicts=True)}\n"
        f"{BOOTSTRAP}\n"
        f"\n"
        f"BUNDLE_SHA256 = {sha!r}\n"
        f'BUNDLE = """\n{_base64_lines(bundle)}\n"""\n'
        f"\n"
        f'if __name__ == "__main__":\n'
        f"    main()\n"
    )


def render_notebook(script: str, title: str) -> str:
    """The same script as a notebook: a title cell and one code cell holding the script unchanged."""
    lines = script.splitlines(keepends=True)
    notebook = {
        "cells": [
            {"cell_type": "markdown", "metadata": {},
             "source": [f"# {title}\n", "\n", "Built by `python -m pipeline.kernel build`; run all to train and write "
                        "`images.zip`."]},
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": lines},
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def notebook_code(text: str) -> str:
    """The code of a notebook written by :func:`render_notebook` (its code cells, joined)."""
    cells = json.loads(text)["cells"]
    return "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def kernel_metadata(cfg: KernelConfig, username: str) -> dict:
    """kernel-metadata.json for ``kaggle kernels push``: the competition's data in, GPU on, internet off."""
    return {
        "id": f"{username or PLACEHOLDER_USER}/{cfg.kernel_slug}",
        "title": cfg.title,
        "code_file": CODE_FILES[cfg.kernel_type],
        "language": "python",
        "kernel_type": cfg.kernel_type,
        "is_private": cfg.private,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [],
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
    }


def check_metadata(meta: dict, folder: Path, need_owner: bool = False) -> list[str]:
    """What ``kaggle kernels push`` (and this competition) would reject in ``meta``; [] when it is fine.

    ``need_owner``: the id must name a real user, not the build-time placeholder.
    """
    problems = []
    for key in ("id", "title", "code_file", "language", "kernel_type"):
        if not isinstance(meta.get(key), str) or not meta.get(key):
            problems.append(f"{key}: must be a non-empty string")
    for key in METADATA_BOOLS:
        if key in meta and not isinstance(meta[key], bool):
            problems.append(f"{key}: must be true or false, got {meta[key]!r}")
    for key in METADATA_LISTS:
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(s, str) for s in meta[key])):
            problems.append(f"{key}: must be a list of strings")
    if problems:
        return problems
    owner, _, slug = meta["id"].partition("/")
    if not owner or not slug or "/" in slug:
        problems.append(f"id: {meta['id']!r} must be <username>/<kernel-slug>")
    elif need_owner and owner == PLACEHOLDER_USER:
        problems.append(f"id: {meta['id']!r} names no Kaggle user; set kernel.username or pass --username")
    if len(meta["title"]) < 5:
        problems.append("title: Kaggle wants at least 5 characters")
    if meta["language"] != "python":
        problems.append(f"language: {meta['language']!r}, the kernel is Python")
    if meta["kernel_type"] not in CODE_FILES or CODE_FILES[meta["kernel_type"]] != meta["code_file"]:
        problems.append(f"kernel_type {meta['kernel_type']!r} and code_file {meta['code_file']!r} do not match")
    if not (folder / meta["code_file"]).is_file():
        problems.append(f"code_file: {folder / meta['code_file']} does not exist")
    if COMPETITION not in meta.get("competition_sources", []):
        problems.append(f"competition_sources: must hold {COMPETITION!r}, or the kernel has no data")
    if meta.get("enable_internet", True):
        problems.append("enable_internet: must be false; the competition ran kernels without internet")
    if not meta.get("enable_gpu", False):
        problems.append("enable_gpu: must be true; training on 2 CPU cores would not finish in 9 hours")
    return problems


@dataclass(frozen=True)
class BuiltKernel:
    folder: Path  # kernels/build/<slug>/
    code_file: Path
    metadata: dict
    params: dict
    bundle_sha256: str
    modules: int
    changed: bool  # False: the files were already exactly these

    @property
    def kernel_id(self) -> str:
        return self.metadata["id"]


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text(path, text)
    return True


def write_metadata(folder: Path, meta: dict) -> bool:
    return _write_if_changed(folder / METADATA_FILE, json.dumps(meta, indent=2) + "\n")


def build(params: dict, out_dir: Path = DEFAULT_OUT_DIR, username: str = "",
          package_dir: Path = PACKAGE_DIR) -> BuiltKernel:
    """Write ``out_dir/<slug>/`` (the kernel and its metadata) from already selected ``params``
    (:func:`select_params`). ``username`` overrides kernel.username for the id."""
    cfg = kernel_params(params).kernel
    bundle = bundle_package(package_dir)
    script = render_script(params, bundle, cfg.title)
    code = script if cfg.kernel_type == "script" else render_notebook(script, cfg.title)
    folder = out_dir / cfg.kernel_slug
    folder.mkdir(parents=True, exist_ok=True)
    code_file = folder / CODE_FILES[cfg.kernel_type]
    changed = _write_if_changed(code_file, code)
    for other in set(CODE_FILES.values()) - {code_file.name}:  # left by a build of the other kernel_type
        if (folder / other).is_file():
            (folder / other).unlink()
            changed = True
    meta = kernel_metadata(cfg, username or cfg.username)
    changed = write_metadata(folder, meta) or changed
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        modules = len(z.namelist())
    return BuiltKernel(folder, code_file, meta, params, hashlib.sha256(bundle).hexdigest(), modules, changed)


def check_built(built: BuiltKernel, need_owner: bool = False) -> None:
    """Raise KernelError unless the metadata would be accepted and the code file compiles and carries a
    bundle that decodes to the pipeline package."""
    problems = check_metadata(built.metadata, built.folder, need_owner)
    text = built.code_file.read_text(encoding="utf-8")
    source = notebook_code(text) if built.code_file.suffix == ".ipynb" else text
    try:
        constants = {
            node.targets[0].id: node.value
            for node in ast.parse(source, str(built.code_file)).body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        }
        data = base64.b64decode(ast.literal_eval(constants["BUNDLE"]))
        if hashlib.sha256(data).hexdigest() != ast.literal_eval(constants["BUNDLE_SHA256"]):
            problems.append("the embedded bundle does not match its checksum")
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if f"{PACKAGE}/kernel_run.py" not in z.namelist():
                problems.append("the embedded bundle lacks pipeline/kernel_run.py")
    except (SyntaxError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        problems.append(f"{built.code_file}: not a kernel this module built ({type(exc).__name__}: {exc})")
    if problems:
        raise KernelError(f"{built.folder} would not work on Kaggle:\n  " + "\n  ".join(problems))


REAL_BOXES = 22_126  # boxes in the competition's annotations (COMPETITION.md): the real data set's size


def kaggle_warnings(params: dict) -> list[str]:
    """Settings that work here but would hurt, or fail, in a Kaggle kernel (no internet, a P100 or T4)."""
    cfg = kernel_params(params)
    warnings = []
    if cfg.train.eval_every > 0 and cfg.score.network == "inception" and not cfg.score.inception_weights.startswith(
            "/kaggle/input/"):
        warnings.append("train.eval_every > 0 scores with the Inception network, whose weights a kernel cannot "
                        "download (no internet): add them to the kernel as a dataset and set score.inception_weights "
                        "to their /kaggle/input/... path, or set train.eval_every 0")
    if cfg.kernel.slug and cfg.kernel.slug != slugify(cfg.kernel.title):
        warnings.append(f"kernel.slug {cfg.kernel.slug!r} is not the slug of the title "
                        f"({slugify(cfg.kernel.title)!r}); "
                        "Kaggle links the two and may keep another title (leave kernel.slug empty)")
    if cfg.train.compile:
        warnings.append("train.compile: torch.compile's GPU code generator needs compute capability 7.0; Kaggle's "
                        "P100 has 6.0 and would fail")
    if cfg.train.precision == "bf16":
        warnings.append("train.precision bf16: Kaggle's P100 and T4 have no native bf16; use auto (fp16 there)")
    if cfg.generate.precision == "bf16":
        warnings.append("generate.precision bf16: Kaggle's P100 and T4 have no native bf16 (it is for AMX CPUs); "
                        "use fp32")
    # epochs: auto trains what fits the budget, unknown before the run: no estimate
    grids = (sample_grid_warning(cfg.train.epochs * REAL_BOXES / cfg.train.batch_size, cfg.train.sample_every)
             if cfg.train.epochs != AUTO else None)
    if grids:
        warnings.append(f"{grids} (on the real data)")
    return warnings


# --- push -----------------------------------------------------------------------------------------


def manual_upload(built: BuiltKernel) -> str:
    """How to push the built kernel by hand."""
    return (
        f"The kernel is built in {built.folder}/ ({built.code_file.name} and {METADATA_FILE}). To send it yourself:\n"
        f"  kaggle kernels push -p {built.folder}   (id with your user name, on a machine with internet)\n"
        f"or on kaggle.com: Create -> New Notebook -> File -> Import Notebook ({built.code_file.name}); Add Input ->\n"
        f"Competitions -> Generative Dog Images; accelerator GPU, internet off; Save Version -> Save & Run All."
    )


NO_CREDENTIALS = download.no_credentials("the kernel cannot be pushed", ", then run `python -m pipeline.kernel push` again.")

NO_USER = """no Kaggle user name: set kernel.username in params.yaml (or pass --username), or use credentials that
name the user (kaggle.json's "username", or KAGGLE_USERNAME)."""


def explain_push_error(exc: BaseException) -> str:
    """One paragraph on a failed push."""
    import requests

    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return f"could not reach kaggle.com ({type(exc).__name__}): this machine seems to have no internet access."
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 401:
            return download.BAD_CREDENTIALS
        if status == 403:
            return ("Kaggle refused the push (HTTP 403): the id's user is not the user of the credentials, or the "
                    "competition's rules are not accepted (https://www.kaggle.com/competitions/"
                    f"{COMPETITION}/rules).")
        return f"Kaggle answered HTTP {status}: {exc}."
    if isinstance(exc, ValueError):  # the kaggle client's own checks of the metadata
        return f"the kaggle client refused the kernel: {exc}"
    return f"the push failed: {type(exc).__name__}: {exc}"


def kernel_url(kernel_id: str) -> str:
    return f"https://www.kaggle.com/code/{kernel_id}"


def push(built: BuiltKernel, username: str = "", api_factory=None) -> dict:
    """Push ``built`` with the Kaggle API; returns {"id", "url", "version"}.

    The user is ``username`` (kernel.username or --username), else the one the credentials name; the
    metadata's id is rewritten with it before the push.
    """
    try:
        api = (api_factory or download.kaggle_api)(NO_CREDENTIALS)
    except download.DownloadError as exc:
        raise KernelError(f"{exc}\n{manual_upload(built)}") from None
    user = username or str(api.get_config_value("username") or "")
    if not user:
        raise KernelError(f"{NO_USER}\n{manual_upload(built)}")
    meta = dict(built.metadata, id=f"{user}/{built.kernel_id.split('/', 1)[1]}")
    write_metadata(built.folder, meta)
    problems = check_metadata(meta, built.folder, need_owner=True)
    if problems:
        raise KernelError("kernel-metadata.json would be refused:\n  " + "\n  ".join(problems))
    try:
        response = api.kernels_push(str(built.folder))
    except Exception as exc:  # the kaggle client raises requests' exceptions and its own
        raise KernelError(f"{explain_push_error(exc)}\n{manual_upload(built)}") from None
    error = getattr(response, "error", None)
    if error:
        raise KernelError(f"Kaggle refused the kernel: {error}\n{manual_upload(built)}")
    return {"id": meta["id"], "url": getattr(response, "url", None) or kernel_url(meta["id"]),
            "version": getattr(response, "version_number", None) or getattr(response, "versionNumber", None)}


def watch_instructions(kernel_id: str) -> str:
    return (
        f"  watch:  kaggle kernels status {kernel_id}\n"
        f"  log:    kaggle kernels logs {kernel_id}\n"
        f"  output: kaggle kernels output {kernel_id} -p submissions/kaggle   (images.zip, run_summary.json, ...)\n"
        f"  score:  python -m pipeline.validate submissions/kaggle/images.zip, then python -m pipeline.score "
        f"--submission submissions/kaggle/images.zip --photos data/prepared/photos64.npz ..."
    )


# --- command line ---------------------------------------------------------------------------------


def _built_summary(built: BuiltKernel) -> str:
    cfg = kernel_params(built.params)
    state = "wrote" if built.changed else "unchanged:"
    return (f"{state} {built.code_file} ({built.code_file.stat().st_size / 1e3:.0f} kB: {built.modules} modules of "
            f"pipeline, sha256 {built.bundle_sha256[:12]})\n"
            f"  runs {cfg.train.model} for {epochs_text(cfg.train.epochs)} and generates {cfg.generate.n} images "
            f"within {cfg.kernel.time_budget_min:g} min\n"
            f"  {built.folder / METADATA_FILE}: id {built.kernel_id}")


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", metavar="FILE",
                        help=f"params file of the experiment (default: {DEFAULT_PARAMS}, or the built-in defaults "
                        "where there is none)")
    common.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help=f"override one key of the sections the kernel carries ({', '.join(SECTIONS)}), "
                        "repeatable, e.g. --set train.epochs=130 --set kernel.private=false")
    common.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR), metavar="DIR",
                        help="the kernel goes to DIR/<slug>/ (default: %(default)s)")
    common.add_argument("--title", help="kernel title (default: kernel.title); the URL slug is derived from it")
    common.add_argument("--username", help="Kaggle user owning the kernel (default: kernel.username, else at push "
                        "time the user of your Kaggle credentials)")
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.kernel",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python -m pipeline.kernel build                          # kernels/build/<slug>/ from params.yaml\n"
        "  python -m pipeline.kernel build --set train.epochs=130   # the same with one change\n"
        "  python -m pipeline.kernel push --dry-run                 # build and check, send nothing\n"
        "  python -m pipeline.kernel push                           # build, push, print the URL\n"
        f"  {ROOT_ENV}=/tmp/fake-kaggle python kernels/build/<slug>/kernel.py  # run it here against a fake /kaggle",
        description="Build the Kaggle kernel of the current experiment (params.yaml) and push it. The kernel is "
        "one self-contained file carrying this project's pipeline package and the experiment's params; on Kaggle "
        "it trains and writes /kaggle/working/images.zip.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{build,push}")
    commands.add_parser("build", parents=[common], help="write DIR/<slug>/ (kernel and kernel-metadata.json)",
                        description="Write DIR/<slug>/: the kernel (script or notebook) and kernel-metadata.json. "
                        "Nothing is sent anywhere; the same code and params give the same bytes.")
    push_parser = commands.add_parser(
        "push", parents=[common], help="build, then push with the Kaggle API and say how to watch the run",
        description="Build the kernel, check it, and push it with the Kaggle API (needs kaggle.json or "
        "KAGGLE_USERNAME/KAGGLE_KEY, and internet). Prints the kernel's URL and how to follow the run and "
        "download its output. Without credentials or network the built kernel stays in DIR/<slug>/ for a manual "
        "upload.")
    push_parser.add_argument("--dry-run", action="store_true", help="build and check, do not push")
    args = parser.parse_args(argv)
    try:
        params = select_params(read_params(args.params), args.set)
        if args.title is not None:
            params["kernel"] = dict(params["kernel"], title=args.title)
        if args.username is not None:
            params["kernel"] = dict(params["kernel"], username=args.username)
        kernel_params(params)  # the title and user name from the command line are checked too
        built = build(params, Path(args.out_dir))
        check_built(built)
        print(_built_summary(built))
        for warning in kaggle_warnings(params):
            print(f"warning: {warning}")
        if args.command == "build" or args.dry_run:
            if built.kernel_id.startswith(f"{PLACEHOLDER_USER}/"):
                print("note: kernel.username is empty, so the id names no user; `python -m pipeline.kernel push` "
                      "uses the user of your Kaggle credentials (or set kernel.username to push by hand).")
            if args.command == "push":
                print(f"dry run: {built.folder} is ready to push; nothing was sent.")
            return 0
        pushed = push(built, kernel_params(params).kernel.username)
    except (ConfigError, KernelError, OSError) as exc:  # OSError: an --out-dir that cannot be written
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    version = f"version {pushed['version']} of " if pushed["version"] else ""
    print(f"pushed {version}{pushed['id']}: {pushed['url']}")
    print(watch_instructions(pushed["id"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
