"""Where the competition files are: finds ``all-dogs`` and ``Annotation`` however they are nested.

Kaggle's archive nests zips (``all-dogs.zip``, ``Annotation.zip``), a Kaggle notebook mounts them
as ``/kaggle/input/generative-dog-images/all-dogs/all-dogs/`` and ``.../annotation/Annotation/``,
and a hand-made copy may be flat. All of them are found by looking for the folders themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class CompetitionDirs:
    images: Path  # holds <wnid>_<n>.jpg
    annotations: Path  # holds <wnid>-<Breed>/<wnid>_<n>


def _has_photos(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return any(e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES) for e in it)


def _has_breed_folders(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return any(e.is_dir() and e.name.startswith("n") and "-" in e.name for e in it)


def find_competition_dirs(root: str | os.PathLike, max_depth: int = 4) -> CompetitionDirs:
    """Search ``root`` (up to ``max_depth`` levels) for the photo folder and the annotation folder.

    The photo folder is the shallowest folder named ``all-dogs`` that directly holds images; the
    annotation folder is the shallowest folder named ``Annotation`` (any case) that holds breed
    folders. Raises FileNotFoundError naming what is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: folder not found")
    images = annotations = None
    level = [root]
    for _ in range(max_depth + 1):
        nxt = []
        for folder in level:
            name = folder.name.lower()
            if images is None and name == "all-dogs" and _has_photos(folder):
                images = folder
            if annotations is None and name == "annotation" and _has_breed_folders(folder):
                annotations = folder
            try:
                nxt.extend(sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))
            except PermissionError:
                continue
        if images is not None and annotations is not None:
            return CompetitionDirs(images, annotations)
        level = nxt
    missing = [n for n, v in (("all-dogs/ (the photos)", images), ("Annotation/ (the boxes)", annotations)) if v is None]
    raise FileNotFoundError(
        f"{root}: could not find {' or '.join(missing)} within {max_depth} folder levels. "
        "Expected the competition layout: all-dogs/<wnid>_<n>.jpg and Annotation/<wnid>-<Breed>/<wnid>_<n>."
    )
