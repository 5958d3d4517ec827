"""Atomic file writes and the prepared-dataset file format.

Every output of every stage goes through :func:`atomic_path`: data is written to a temporary
file in the destination folder and renamed over the destination only once it is complete, so a
killed run leaves either the old file or the new one, never a half-written file that a later stage
would trust. Rename within one folder is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

TMP_MARK = ".tmp-"  # temporary files are named ".<final name>.tmp-<random>"; .gitignore and .dvcignore skip them

# mkstemp and mkdtemp make owner-only (0600, 0700) files and folders; outputs get the modes that a plain
# open() or mkdir() would give instead. The umask can only be read by setting it: done once, at import.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


def _temp_beside(final: Path) -> Path:
    """A new empty temporary file in ``final``'s folder (made if needed), named ".<final name>.tmp-<random>".
    IsADirectoryError when ``final`` is a folder: the rename over it would fail only after all the work."""
    if final.is_dir():
        raise IsADirectoryError(errno.EISDIR, "this is a folder; give a file name", str(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}{TMP_MARK}", dir=final.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds.

    On an exception the temporary file is removed and ``final`` is left untouched.
    """
    final = Path(final)
    tmp = _temp_beside(final)
    try:
        yield tmp
        # fsync so that the rename never exposes a file whose data is still in flight after a crash
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_writable(final: str | os.PathLike) -> None:
    """Fail now, rather than after hours of work, when ``final`` could not be written: it is a folder, or its
    folder cannot be made or written. Makes the folder and a temporary file in it (removed at once).

    Raises OSError (IsADirectoryError, PermissionError, ...) naming the path.
    """
    _temp_beside(Path(final)).unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def replace_dir(new: Path, final: Path) -> None:
    """Put the complete folder ``new`` at ``final``, removing what was there.

    The old folder is first renamed aside, so at every moment ``final`` is either the old complete
    folder, absent, or the new complete one: never a mix.
    """
    new.chmod(DIR_MODE)  # made by mkdtemp: owner-only until now
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{new.name[-8:]}")
        final.rename(old)
    try:
        new.rename(final)
    except OSError:
        if old is not None:
            old.rename(final)  # put the old folder back rather than leave nothing
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class Dataset:
    """The prepared training set: one crop per kept bounding box.

    images:  uint8 [N, 64, 64, 3], RGB
    labels:  int64 [N], index into ``breeds``
    breeds:  str [B], breed names (B = 120 on the competition data)
    sources: str [N], "<photo id>#<box index>", e.g. "n02085620_7#0"
    """

    images: np.ndarray
    labels: np.ndarray
    breeds: np.ndarray
    sources: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[3] != 3:
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (n,) or self.sources.shape != (n,):
            raise ValueError(
                f"labels {self.labels.shape} and sources {self.sources.shape} must both be [{n}]"
            )
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.breeds)):
            raise ValueError(f"labels must index into the {len(self.breeds)} breeds")

    def __len__(self) -> int:
        return len(self.images)


def save_dataset(path: str | os.PathLike, ds: Dataset) -> None:
    """Write ``ds`` to ``path`` (.npz, uncompressed: 22k crops load in well under a second)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object, so numpy does not append ".npz" to the temp name
            np.savez(
                fh,
                images=ds.images,
                labels=ds.labels.astype(np.int64),
                breeds=np.asarray(ds.breeds, dtype=str),
                sources=np.asarray(ds.sources, dtype=str),
            )


COMPETITION_SIZE = 64  # Kaggle's images are 64x64: every model generates that size and the score compares it


def require_competition_size(ds: Dataset, path: str | os.PathLike, use: str) -> None:
    """ValueError unless ``ds`` (read from ``path``) holds 64x64 crops, the only size ``use`` works with."""
    h, w = ds.images.shape[1:3]
    if (h, w) != (COMPETITION_SIZE, COMPETITION_SIZE):
        raise ValueError(
            f"{path} holds {w}x{h} crops, but {use} needs {COMPETITION_SIZE}x{COMPETITION_SIZE} ones (the competition's "
            f"size). Prepare it again with prepare.size: {COMPETITION_SIZE}."
        )


def load_dataset(path: str | os.PathLike) -> Dataset:
    """Read a dataset written by :func:`save_dataset`; a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no prepared dataset here. Run `python -m pipeline.prepare` (or `dvc repro prepare`) first."
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"images", "labels", "breeds", "sources"} - set(z.files)
            if missing:
                raise ValueError(f"missing arrays {sorted(missing)}")
            return Dataset(z["images"], z["labels"], z["breeds"], z["sources"])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # BadZipFile: a truncated file
        raise ValueError(
            f"{path} is not a dataset written by pipeline.prepare or pipeline.reference ({exc}). Delete it and "
            "rerun the stage that writes it (dvc repro)."
        ) from exc

