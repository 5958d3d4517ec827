"""Demo data: a small offline data set in the competition's layout, so the chain runs anywhere.

    python -m pipeline.demo_data --out data/raw

Writes ``<out>/Annotation/<wnid>-<Breed>/<wnid>_<n>`` (295 real Stanford Dogs annotations of 12
breeds, 380 boxes, shipped in ``pipeline/assets/demo_annotations.zip``) and ``<out>/all-dogs/*.jpg``:
synthesized photos of exactly the annotated sizes, with a cartoon "dog" drawn in every box in its
breed's colours. They exist so that every stage can be run and tested without a Kaggle account;
anything trained or scored on them says nothing about real dogs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.annotations import Box, read_annotation_zip
from pipeline.files import replace_dir, write_json

ASSET = Path(__file__).parent / "assets" / "demo_annotations.zip"
MARKER = "SOURCE.json"  # written last into a raw-data folder: its presence means the folder is complete


def breed_colours(breed: str) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB colours (coat, markings) derived from the breed name, the same on every machine."""
    digest = hashlib.sha256(breed.encode()).digest()
    coat = np.frombuffer(digest[:3], np.uint8).astype(np.int32) // 2 + 96
    marks = np.frombuffer(digest[3:6], np.uint8).astype(np.int32) // 3
    return coat, marks


def synthesize_photo(width: int, height: int, boxes: list[Box], breed: str, rng: np.random.Generator) -> Image.Image:
    """A ``width`` x ``height`` RGB picture: a smooth textured background and a cartoon dog per box.

    The background mixes low-frequency colour with fine grain so that the JPEG has the size and the
    decoding cost of a photo, not of a flat drawing.
    """
    w, h = max(1, width), max(1, height)
    low = rng.integers(40, 216, size=(3, 4, 3), dtype=np.uint8)
    background = np.asarray(Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.normal(0.0, 10.0, size=(max(1, h // 2), max(1, w // 2), 1)).astype(np.float32)
    grain = np.asarray(Image.fromarray(grain[..., 0]).resize((w, h), Image.Resampling.BILINEAR))[..., None]
    picture = Image.fromarray(np.clip(background + grain, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    coat, marks = breed_colours(breed)
    for box in boxes:
        x0, y0, x1, y1 = box.xmin, box.ymin, max(box.xmin, box.xmax), max(box.ymin, box.ymax)
        bw, bh = x1 - x0 + 1, y1 - y0 + 1
        jitter = rng.integers(-12, 13, size=3)
        body = tuple(int(c) for c in np.clip(coat + jitter, 0, 255))
        dark = tuple(int(c) for c in marks)
        # body, then head in the upper part of the box, ears, eyes and nose
        draw.ellipse((x0, y0 + bh * 0.35, x1, y1), fill=body)
        hx0, hx1 = x0 + bw * 0.25, x0 + bw * 0.75
        draw.ellipse((hx0, y0, hx1, y0 + bh * 0.55), fill=body, outline=dark, width=max(1, bw // 60))
        draw.ellipse((hx0 - bw * 0.06, y0, hx0 + bw * 0.12, y0 + bh * 0.35), fill=dark)
        draw.ellipse((hx1 - bw * 0.12, y0, hx1 + bw * 0.06, y0 + bh * 0.35), fill=dark)
        eye = max(1.0, bw * 0.035)
        for ex in (x0 + bw * 0.4, x0 + bw * 0.6):
            draw.ellipse((ex - eye, y0 + bh * 0.2 - eye, ex + eye, y0 + bh * 0.2 + eye), fill=(15, 15, 15))
        draw.ellipse((x0 + bw * 0.46, y0 + bh * 0.32, x0 + bw * 0.54, y0 + bh * 0.38), fill=(10, 10, 10))
    return picture


def jpeg_bytes(picture: Image.Image, quality: int = 75) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def build_demo(out: str | Path, seed: int = 0, annotations_zip: Path = ASSET) -> dict:
    """Write the demo data set into ``out`` (replacing it) and return a summary.

    Built in a temporary folder beside ``out`` and renamed into place, so ``out`` is never half-built.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        photos = boxes = 0
        for folder, text, ann in read_annotation_zip(annotations_zip):
            (tmp / "Annotation" / folder).mkdir(parents=True, exist_ok=True)
            (tmp / "Annotation" / folder / ann.photo_id).write_bytes(text)
            picture = synthesize_photo(ann.width, ann.height, list(ann.boxes), ann.breed, rng)
            (tmp / "all-dogs").mkdir(exist_ok=True)
            (tmp / "all-dogs" / f"{ann.photo_id}.jpg").write_bytes(jpeg_bytes(picture))
            photos += 1
            boxes += len(ann.boxes)
        summary = {"source": "demo", "seed": seed, "photos": photos, "boxes": boxes}
        write_json(tmp / MARKER, summary)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.demo_data",
        description="Build the offline demo data set (real annotations of 12 breeds, synthesized photos) "
        "in the competition's layout: OUT/all-dogs/*.jpg and OUT/Annotation/<wnid>-<Breed>/.",
    )
    parser.add_argument("--out", default="data/raw", metavar="DIR", help="folder to write (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthesized photos (default: %(default)s)")
    args = parser.parse_args(argv)
    summary = build_demo(args.out, args.seed)
    print(f"demo data: {summary['photos']} synthesized photos, {summary['boxes']} boxes in {args.out} "
          "(demo only: results on it mean nothing about real dogs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
