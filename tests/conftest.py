"""Shared test fixtures: the real annotation files beside the repo, and tiny data sets built here."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_ANNOTATIONS = REPO.parent / "shared" / "data" / "stanford-dogs-annotations"


@pytest.fixture(scope="session")
def shared_annotations() -> Path:
    """../shared/data/stanford-dogs-annotations (real Stanford Dogs XML, no photos)."""
    if not (SHARED_ANNOTATIONS / "Annotation.zip").is_file():
        pytest.skip(f"{SHARED_ANNOTATIONS} is not here (it sits beside the repo in CI)")
    return SHARED_ANNOTATIONS


def voc_xml(width: int, height: int, boxes: list[tuple[int, int, int, int]], name: str = "pug") -> str:
    objects = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax>"
        "</bndbox></object>"
        for a, b, c, d in boxes
    )
    return f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>{objects}</annotation>"


class TinyCompetition:
    """A competition-layout folder: root/all-dogs/<id>.jpg and root/Annotation/<wnid>-<Breed>/<id>."""

    def __init__(self, root: Path):
        self.root = root
        self.images = root / "all-dogs"
        self.annotations = root / "Annotation"
        self.images.mkdir(parents=True, exist_ok=True)
        self.annotations.mkdir(parents=True, exist_ok=True)

    def add(self, photo_id: str, breed_folder: str, size=(120, 90), boxes=((10, 10, 59, 69),),
            colour=(200, 30, 30), xml: str | None = None, photo: bool = True, mode: str = "RGB") -> None:
        folder = self.annotations / breed_folder
        folder.mkdir(exist_ok=True)
        (folder / photo_id).write_text(xml if xml is not None else voc_xml(*size, list(boxes)))
        if photo:
            im = Image.new("RGB", size, colour)
            if mode != "RGB":
                im = im.convert(mode)
            im.save(self.images / f"{photo_id}.jpg", quality=95)


@pytest.fixture
def tiny(tmp_path) -> TinyCompetition:
    return TinyCompetition(tmp_path / "raw")


def solid(size, colour) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.uint8), (size[1], size[0], 3)).copy()


# every variable through which the kaggle client finds credentials or a config folder
CREDENTIAL_VARS = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME",
                   "KAGGLE_KERNEL_RUN_TYPE")


def _is_kaggle_module(name: str) -> bool:
    return name == "kaggle" or name.startswith("kaggle.")


@pytest.fixture
def kaggle_installed() -> None:
    """Skips where the kaggle package is not installed (the GPU machines' image)."""
    if "kaggle" not in sys.modules and importlib.util.find_spec("kaggle") is None:
        pytest.skip("the kaggle package is not installed")


@pytest.fixture
def dvclive_installed() -> None:
    """Skips where dvclive is not installed (the GPU machines' image). ``importorskip("dvclive")`` is not
    enough: run from the repo root, the train stage's own ``dvclive/`` output folder imports as an empty
    namespace package, so look for the class the train stage uses."""
    try:
        from dvclive import Live  # noqa: F401
    except ImportError:
        pytest.skip("dvclive is not installed")


@pytest.fixture
def no_credentials(tmp_path, monkeypatch, kaggle_installed):
    """The real kaggle package with no credentials: HOME is an empty folder, no KAGGLE_* variable is set,
    the package is imported afresh (its config folder is fixed at import time), and any socket connection
    fails. Yields the empty HOME. Skips where the kaggle package is not installed (the GPU machines)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)

    def refuse(*args, **kwargs):
        raise OSError("tests must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    saved = {k: v for k, v in sys.modules.items() if _is_kaggle_module(k)}
    for k in saved:
        del sys.modules[k]
    yield home
    for k in [k for k in sys.modules if _is_kaggle_module(k)]:
        del sys.modules[k]
    sys.modules.update(saved)


@pytest.fixture
def one_thread():
    """One CPU thread for runs that time themselves: on a machine shared with other work, two threads wait on each
    other and a step now and then takes 10 to 100 times its time, which no plan can foresee."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
