"""Check a submission zip the way Kaggle's scorer did, before anything is uploaded or scored.

    python -m pipeline.validate images.zip [--expected 10000]

The scorer accepted one zip holding exactly 10,000 PNG images, each 64x64 RGB, and rejected
anything else. This stage stops at the FIRST problem and names it, in this order:

1. the path is not a file, or the file is not a zip archive;
2. the zip holds no files (folder entries are not files);
3. the number of files is not the expected one;
4. for each member, in archive order: its bytes do not start with the PNG signature; it cannot be
   read from the zip (CRC or compression error) or its PNG header cannot be parsed; its size is not
   64x64; its mode is not RGB; it is truncated or corrupt (a chunk CRC fails, IEND is missing, or its
   pixels cannot be decoded).

Size and mode come from the PNG header, so they are checked before the (costlier) full decode;
that also means an oversized image is reported as such instead of being decoded. The members are
checked on a few threads (PNG decoding releases the GIL), in blocks taken in archive order, so the
problem reported is still the first one.

Exit status 0 with a one-line summary when the zip is valid, 2 with ``error: <problem>`` otherwise.
"""

from __future__ import annotations

import argparse
import io
import os
import struct
import sys
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.files import COMPETITION_SIZE
from pipeline.images import codec_threads

EXPECTED_IMAGES = 10_000  # the competition's count (COMPETITION.md); score.expected_images defaults to it
IMAGE_SIZE = (COMPETITION_SIZE, COMPETITION_SIZE)  # (width, height)
IMAGE_MODE = "RGB"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # the 8 bytes every PNG file starts with (PNG spec, section 5.2)
IEND_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the closing chunk, CRC included
CHECK_BLOCK = 64  # members per task of the thread pool: fewer tasks, less Python per image


class SubmissionError(ValueError):
    """The zip would be rejected by the scorer; the message names the first problem found."""


@dataclass(frozen=True)
class ValidationResult:
    """A zip that passed every check.

    path:      the zip
    images:    number of PNG members (== the expected count)
    size:      (width, height) of every image, (64, 64)
    mode:      PIL mode of every image, "RGB"
    zip_bytes: size of the zip file on disk, in bytes
    seconds:   wall time the validation took
    pixels:    uint8 [N, 64, 64, 3], the decoded images in archive order, when asked for (else None)
    """

    path: Path
    images: int
    size: tuple[int, int]
    mode: str
    zip_bytes: int
    seconds: float
    pixels: np.ndarray | None = None

    def summary(self) -> str:
        w, h = self.size
        return f"valid: {self.images} PNG images, {w}x{h} {self.mode}, {self.zip_bytes / 1e6:.1f} MB"


def check_chunks(data: bytes) -> None:
    """Raise ``SyntaxError`` unless every chunk of the PNG file ``data``, from the signature to IEND, is whole,
    has a 4-letter type and a matching CRC (PNG spec, section 5.3).

    PIL's ``verify()`` checks the same from the first IDAT on (the chunks before it are checked when the
    header is read), but it leaves the image unusable, so the pixels would have to be parsed a second time.
    """
    view = memoryview(data)
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 12 > len(data):  # length, type and CRC: 12 bytes
            raise SyntaxError(f"truncated PNG file: chunk at byte {pos} is cut")
        (length,) = struct.unpack_from(">I", data, pos)
        ctype = data[pos + 4:pos + 8]
        end = pos + 8 + length
        if not ctype.isalpha():
            raise SyntaxError(f"broken PNG file: chunk type {ctype!r} at byte {pos}")
        if end + 4 > len(data):
            raise SyntaxError(f"truncated PNG file: chunk {ctype.decode()} needs {length} bytes")
        if zlib.crc32(view[pos + 4:end]) != struct.unpack_from(">I", data, end)[0]:
            raise SyntaxError(f"broken PNG file: bad checksum of chunk {ctype.decode()}")
        if ctype == b"IEND":
            return
        pos = end + 4


def check_png(name: str, data: bytes) -> np.ndarray:
    """Raise :class:`SubmissionError` unless ``data`` is a complete 64x64 RGB PNG; ``name`` is for messages.

    Returns its pixels, uint8 [64, 64, 3] (they are decoded for the check anyway).
    """
    if not data.startswith(PNG_SIGNATURE):
        head = data[:8]
        raise SubmissionError(
            f"{name}: not a PNG image (its first bytes are {head!r}, a PNG starts with {PNG_SIGNATURE!r}). "
            "Save every image with PIL's format='PNG', whatever its file name says."
        )
    try:
        with warnings.catch_warnings():
            # an absurd declared size is reported as a size problem below, not as a bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=["PNG"])
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise SubmissionError(f"{name}: corrupt PNG, its header cannot be read ({exc}).") from None
    with im:
        if im.size != IMAGE_SIZE:
            w, h = im.size
            raise SubmissionError(
                f"{name}: image is {w}x{h} (width x height), every image must be "
                f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}. Resize before saving."
            )
        if im.mode != IMAGE_MODE:
            raise SubmissionError(
                f"{name}: image mode is {im.mode}, every image must be {IMAGE_MODE} (3 channels, 8 bits each). "
                f"Save it with image.convert('{IMAGE_MODE}')."
            )
        if IEND_CHUNK not in data:
            raise SubmissionError(f"{name}: truncated PNG, it ends before its closing IEND chunk.")
        try:
            # every chunk's CRC (a file with flipped bytes can pass load()); then the pixels: a truncated or
            # corrupt IDAT stream fails load()
            check_chunks(data)
            im.load()
            return np.asarray(im)
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
            raise SubmissionError(f"{name}: truncated or corrupt PNG, it cannot be fully decoded ({exc}).") from None


def validate_zip(path: str | os.PathLike, expected: int = EXPECTED_IMAGES, keep_pixels: bool = False) -> ValidationResult:
    """Check the submission zip at ``path``; return what it holds or raise :class:`SubmissionError`.

    expected:    the number of images required (10,000 on Kaggle; smaller in tests and demos).
    keep_pixels: also return the decoded images (``result.pixels``), so a scorer reads the zip once.
    """
    if expected < 1:
        raise ValueError(f"expected must be at least 1, got {expected}")
    t0 = time.perf_counter()
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise SubmissionError(f"{path}: not a file ({what}). Pass the path of the submission zip, e.g. images.zip.")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise SubmissionError(f"{path}: not a zip archive ({exc}). The submission must be one .zip of PNG files.") \
            from None
    except OSError as exc:
        raise SubmissionError(f"{path}: cannot be read ({exc}).") from None
    with zf:
        members = [info for info in zf.infolist() if not info.is_dir()]
        if not members:
            raise SubmissionError(f"{path}: the zip is empty (no files). It must hold {expected} PNG images.")
        names: set[str] = set()
        for info in members:
            if info.filename in names:  # unzipping keeps one of them, so the images would be fewer than counted
                raise SubmissionError(f"{path}: {info.filename} appears twice in the zip; every image needs a name "
                                      "of its own (unzipping would keep only one of them).")
            names.add(info.filename)
        if len(members) != expected:
            raise SubmissionError(
                f"{path}: the zip holds {len(members)} files, it must hold exactly {expected} PNG images "
                f"({'too many' if len(members) > expected else 'too few'}; folder entries are not counted)."
            )
        datas: list[bytes] = []
        unreadable = None
        for info in members:
            try:
                datas.append(zf.read(info))
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                # bad CRC, broken deflate stream, unsupported compression or encryption: reported only if
                # every member before it is a good PNG (the first problem wins)
                unreadable = SubmissionError(f"{info.filename}: cannot be read from {path} ({exc}).")
                break
    pixels = np.empty((len(datas), IMAGE_SIZE[1], IMAGE_SIZE[0], 3), np.uint8) if keep_pixels else None

    def check_block(start: int) -> None:
        for i in range(start, min(start + CHECK_BLOCK, len(datas))):
            image = check_png(members[i].filename, datas[i])
            if pixels is not None:
                pixels[i] = image

    with codec_threads() as pool:
        # map hands the results back in order: the first block that raises is the first problem's block
        for _ in pool.map(check_block, range(0, len(datas), CHECK_BLOCK)):
            pass
    if unreadable is not None:
        raise unreadable
    return ValidationResult(
        path=path,
        images=len(members),
        size=IMAGE_SIZE,
        mode=IMAGE_MODE,
        zip_bytes=path.stat().st_size,
        seconds=time.perf_counter() - t0,
        pixels=pixels,
    )


def read_zip_images(path: str | os.PathLike, expected: int | None = None) -> np.ndarray:
    """Validate a submission zip and return its PNGs in archive order, uint8 [N, 64, 64, 3], in one read.

    expected: the number of images the zip must hold (None: however many it has). Raises SubmissionError.
    """
    if expected is None:
        try:
            with zipfile.ZipFile(path) as zf:
                expected = max(1, sum(not info.is_dir() for info in zf.infolist()))
        except (OSError, zipfile.BadZipFile):
            expected = 1  # validate_zip names the problem

    return validate_zip(path, expected, keep_pixels=True).pixels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.validate",
        description="Check a submission zip as Kaggle's scorer did: exactly N files, each a complete "
        "64x64 RGB PNG. Exits 0 and prints a summary when valid; exits 2 naming the first problem otherwise.",
    )
    parser.add_argument("zip", metavar="ZIP", help="the submission zip, e.g. images.zip")
    parser.add_argument("--expected", type=int, default=EXPECTED_IMAGES, metavar="N",
                        help="number of images required (default: %(default)s, as on Kaggle)")
    args = parser.parse_args(argv)
    if args.expected < 1:
        parser.error(f"--expected must be at least 1, got {args.expected}")
    try:
        result = validate_zip(args.zip, args.expected)
    except SubmissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.summary()} ({result.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
