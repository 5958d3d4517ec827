"""The reference set a submission is scored against, as Kaggle's scorer built it.

Two kinds (``score.reference``):

``photos`` (the default: what the organisers' scorer did)
    every photo of ``all-dogs/`` whole, not cropped: opened with PIL, converted to RGB, resized to 64x64
    with ``Image.ANTIALIAS`` (today's ``Image.LANCZOS``), so a non-square photo is squashed, not cropped.
    :func:`build_photo_reference` reads them once (the ``reference`` stage) into a :class:`Dataset`
    (``sources``: photo ids; ``breeds``: the WordNet ids of the file names) at ``data/prepared/photos64.npz``.
``crops``
    the prepared training set, one crop per bounding box (``data/prepared/dogs64.npz``): closer to what the
    generators learn from, but not what Kaggle compared with, so its numbers are not the board's.

Photos are decoded at full size: PIL's reduced-size JPEG decoding (``draft``, which prepare uses for
crops) gives 64x64 pixels up to 92 levels off (BENCHMARKS.md, "Kaggle's reference").
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.errors import ImageDecodeError
from pipeline.files import COMPETITION_SIZE, Dataset, load_dataset, require_competition_size
from pipeline.layout import IMAGE_SUFFIXES

REFERENCE_KINDS = ("photos", "crops")
UNKNOWN_BREED = "unknown"  # the breed of a photo whose file name has no "<wnid>_" prefix


def comparable_to_kaggle(network: str, reference: str) -> bool:
    """Whether a score can be set beside Kaggle's 2019 public board: only Kaggle's network (``inception``)
    against Kaggle's reference (``photos``)."""
    return network == "inception" and reference == "photos"


class ReferenceError(ValueError):
    """No usable reference: a missing folder or file, no photos, or none that decodes."""


def kaggle_photo_pixels(path: str | os.PathLike, size: int = COMPETITION_SIZE) -> np.ndarray:
    """One reference image as Kaggle's scorer made it: uint8 [size, size, 3].

    ``Image.open(path).convert("RGB").resize((size, size), LANCZOS)``: grayscale, CMYK and palette photos
    become RGB, and the whole photo is squashed to a square. Raises :class:`ImageDecodeError` for a photo
    that does not decode whole.
    """
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from None


def list_photos(folder: str | os.PathLike) -> list[Path]:
    """The photos of ``folder`` (``IMAGE_SUFFIXES``, not recursive), sorted by name; ReferenceError if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReferenceError(f"{folder}: no such folder of photos. Run `dvc repro download` (or point --images at "
                             "the competition's all-dogs folder).")
    photos = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
    if not photos:
        raise ReferenceError(f"{folder} holds no photos ({', '.join(IMAGE_SUFFIXES)}): it is not the all-dogs folder, "
                             "or the download is incomplete.")
    return photos


@dataclass
class PhotoReport:
    """What building the photo reference read and skipped (skips: "<file>: <why>", in file order)."""

    photos_found: int = 0
    images_read: int = 0
    skips: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"photos_found": self.photos_found, "images_read": self.images_read,
                "skipped": len(self.skips), "skips": self.skips}


def _read(path: Path) -> tuple[np.ndarray | None, str]:
    """(pixels or None, "" or why not): a worker's job, so that one bad photo is a skip, not a crash."""
    try:
        return kaggle_photo_pixels(path), ""
    except ImageDecodeError as exc:
        return None, str(exc)


def _pixels(photos: list[Path], workers: int, progress: bool):
    bar = dict(total=len(photos), unit="photo", desc="reference photos", disable=not progress, smoothing=0.05)
    if workers <= 1:
        yield from tqdm(map(_read, photos), **bar)
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        yield from tqdm(pool.imap(_read, photos, chunksize=64), **bar)


def breed_of(photo_id: str) -> str:
    """The WordNet id a competition photo's name starts with: "n02085620_7" -> "n02085620"."""
    wnid, sep, _ = photo_id.partition("_")
    return wnid if sep and wnid else UNKNOWN_BREED


def build_photo_reference(folder: str | os.PathLike, workers: int = 0,
                          progress: bool = True) -> tuple[Dataset, PhotoReport]:
    """Every photo of ``folder`` as Kaggle's scorer read it: (Dataset of uint8 [M, 64, 64, 3], report).

    workers: processes (0 = one per CPU core; the pixels do not depend on it). A photo that cannot be
    decoded is a counted, named skip; ReferenceError when the folder has no photos or none decodes.
    """
    photos = list_photos(folder)
    workers = workers or os.cpu_count() or 1
    report = PhotoReport(photos_found=len(photos))
    images, ids = [], []
    for path, (pixels, why) in zip(photos, _pixels(photos, min(workers, len(photos)), progress)):
        if pixels is None:
            report.skips.append(f"{path}: {why}")
            continue
        images.append(pixels)
        ids.append(path.stem)
    report.images_read = len(images)
    if not images:
        raise ReferenceError(f"none of the {len(photos)} photos in {folder} could be decoded "
                             f"(first: {report.skips[0]}); the folder is damaged: download it again.")
    breeds = sorted({breed_of(i) for i in ids})
    index = {b: k for k, b in enumerate(breeds)}
    ds = Dataset(np.stack(images), np.array([index[breed_of(i)] for i in ids], dtype=np.int64),
                 np.array(breeds, dtype=str), np.array(ids, dtype=str))
    return ds, report


def load_reference(kind: str, photos: str | os.PathLike | None, crops: str | os.PathLike | None) -> Dataset:
    """The reference set of ``kind`` (``REFERENCE_KINDS``): the photo reference at ``photos`` (written by the
    ``reference`` stage) or the prepared crops at ``crops``; uint8 64x64 images either way."""
    if kind not in REFERENCE_KINDS:
        raise ReferenceError(f"unknown reference {kind!r}; choose one of: {', '.join(REFERENCE_KINDS)}")
    path = photos if kind == "photos" else crops
    if not path:
        option, stage = ("--photos", "reference") if kind == "photos" else ("--crops", "prepare")
        raise ReferenceError(f"score.reference is {kind}, but no {kind} file was given: pass {option} FILE.npz "
                             f"(written by `python -m pipeline.{stage}`)")
    path = Path(path)
    if kind == "photos" and not path.is_file():
        raise FileNotFoundError(f"{path}: no photo reference here. Run `python -m pipeline.reference` (or "
                                "`dvc repro reference`) first, or set score.reference: crops.")
    ds = load_dataset(path)
    require_competition_size(ds, path, f"a {kind} reference for 64x64 submissions")
    if len(ds) < 2:
        raise ReferenceError(f"{path} holds {len(ds)} image(s); a reference needs at least 2 for a covariance")
    return ds
