"""PASCAL-VOC XML annotations of the Stanford Dogs photos -> box records. Pure: no image I/O.

Layout (competition and Stanford Dogs alike): ``Annotation/<wnid>-<Breed>/<wnid>_<n>`` (no file
extension), one ``<object>`` per dog, each with a ``<bndbox>``. Coordinates are 0-based *inclusive*
pixel indices (``xmax`` reaches width - 1, never width), not VOC's 1-based convention.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class AnnotationError(ValueError):
    """An annotation file that cannot be used at all.

    ``reason`` is ``malformed_xml`` (not XML, or a required field missing or not a number) or
    ``empty_annotation`` (an empty file, or XML without any ``<object>``).
    """

    def __init__(self, message: str, reason: str = "malformed_xml"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Box:
    """A bounding box in 0-based inclusive pixel indices, as written in the XML."""

    xmin: int
    ymin: int
    xmax: int
    ymax: int


@dataclass(frozen=True)
class Annotation:
    photo_id: str  # "<wnid>_<n>", the photo's file name without ".jpg"
    breed: str  # from the folder name, e.g. "Chihuahua"
    width: int  # as written in <size>; the photo itself is the authority when they differ
    height: int
    boxes: tuple[Box, ...]


def breed_of_folder(folder_name: str) -> str:
    """``"n02085620-Chihuahua"`` -> ``"Chihuahua"``; a folder without a wnid prefix is its own name."""
    wnid, sep, breed = folder_name.partition("-")
    return breed if sep and wnid.startswith("n") else folder_name


def _int_field(node: ET.Element, tag: str, where: str) -> int:
    text = node.findtext(tag)
    if text is None or not text.strip():
        raise AnnotationError(f"<{tag}> missing in {where}")
    try:
        # Some VOC writers emit "123.0"; a box coordinate is still a whole pixel index.
        return int(round(float(text)))
    except (ValueError, OverflowError):  # OverflowError: 1e999 is infinity, which no integer holds
        raise AnnotationError(f"<{tag}> is not a finite number in {where}: {text.strip()[:40]!r}") from None


def parse_annotation(xml_text: str | bytes, photo_id: str, breed: str) -> Annotation:
    """Parse one VOC XML document.

    Raises :class:`AnnotationError` for malformed XML, a missing ``<size>`` or a document with no
    ``<object>`` at all. Boxes are returned as written, even degenerate ones: judging them is the job
    of :mod:`pipeline.boxes`, so that each rejected box is counted under its own reason.
    """
    if not xml_text.strip():
        raise AnnotationError("empty file", reason="empty_annotation")
    try:
        root = ET.fromstring(xml_text)
    except (ET.ParseError, LookupError, ValueError) as exc:  # LookupError: an encoding Python does not know
        raise AnnotationError(f"malformed XML: {exc}") from None
    size = root.find("size")
    if size is None:
        raise AnnotationError("no <size> element")
    width, height = _int_field(size, "width", "<size>"), _int_field(size, "height", "<size>")
    boxes = []
    for i, obj in enumerate(root.iter("object")):
        bb = obj.find("bndbox")
        if bb is None:
            raise AnnotationError(f"<object> {i} has no <bndbox>")
        where = f"<object> {i}"
        boxes.append(Box(*(_int_field(bb, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))))
    if not boxes:
        raise AnnotationError("no <object> boxes", reason="empty_annotation")
    return Annotation(photo_id=photo_id, breed=breed, width=width, height=height, boxes=tuple(boxes))


@dataclass(frozen=True)
class AnnotationFile:
    path: Path
    photo_id: str
    breed: str


def list_annotation_files(annotation_dir: str | os.PathLike) -> list[AnnotationFile]:
    """All annotation files under ``Annotation/<wnid>-<Breed>/``, sorted by breed folder, then photo id.

    Hidden files (``.DS_Store`` and the like) are ignored.
    """
    root = Path(annotation_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: annotation folder not found")
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        breed = breed_of_folder(folder.name)
        for f in sorted(folder.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                photo_id = f.name[: -len(".xml")] if f.name.endswith(".xml") else f.name
                found.append(AnnotationFile(path=f, photo_id=photo_id, breed=breed))
    return found


def read_annotation_zip(path: str | os.PathLike) -> Iterator[tuple[str, bytes, Annotation]]:
    """Each annotation of a zip of ``Annotation/<wnid>-<Breed>/<wnid>_<n>`` files, in name order: (the breed
    folder's name, the file's bytes, the parsed annotation). AnnotationError for a file that does not parse."""
    with zipfile.ZipFile(path) as z:
        for name in sorted(n for n in z.namelist() if not n.endswith("/")):
            folder, photo_id = Path(name).parent.name, Path(name).name
            text = z.read(name)
            yield folder, text, parse_annotation(text, photo_id, breed_of_folder(folder))
