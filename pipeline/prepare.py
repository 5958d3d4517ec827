"""Stage ``prepare``: competition photos + bounding boxes -> one 64x64 training set.

    python -m pipeline.prepare --images data/raw/all-dogs --annotations data/raw/Annotation \\
        --out data/prepared/dogs64.npz

Every box of every annotated photo becomes one crop (multi-dog photos give several). Bad input
never stops the run: each problem is a counted skip, named in the JSON report written beside the
dataset, together with a PNG grid of random crops to look at.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.annotations import AnnotationError, list_annotation_files, parse_annotation
from pipeline.boxes import BoxLimits, judge_box, plan_crop, reduction_factor
from pipeline.config import PrepareConfig, add_config_arguments, as_dict, config_from_args, ConfigError
from pipeline.errors import error_text
from pipeline.files import Dataset, save_dataset, write_json
from pipeline.layout import IMAGE_SUFFIXES
from pipeline.images import image_grid, save_png
from pipeline.photos import ImageDecodeError, decode_reduced, open_photo, render_crop

# Skip reasons, in report order. Photo-level reasons count photos; box-level ones count boxes.
PHOTO_SKIPS = ("missing_photo", "no_annotation", "corrupt_image", "malformed_xml", "empty_annotation")
BOX_SKIPS = ("zero_area_box", "box_outside_image", "aspect_out_of_range", "box_too_small")


class PrepareError(RuntimeError):
    """Nothing usable was found: the stage cannot produce a dataset."""


@dataclass(frozen=True)
class PhotoTask:
    photo_id: str
    photo_path: str | None  # None: the annotation has no photo
    annotation_path: str
    label: int


@dataclass
class PhotoResult:
    photo_id: str
    crops: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (box index, uint8 [S, S, 3])
    skips: list[tuple[str, str]] = field(default_factory=list)  # (reason, "file: detail")
    boxes_found: int = 0
    read: bool = False  # the photo was decoded


def process_photo(task: PhotoTask, cfg: PrepareConfig) -> PhotoResult:
    """Parse one annotation, decode its photo once (no larger than needed), and crop every kept box."""
    res = PhotoResult(task.photo_id)
    try:
        with open(task.annotation_path, "rb") as fh:
            ann = parse_annotation(fh.read(), task.photo_id, breed="")
    except AnnotationError as exc:
        res.skips.append((exc.reason, f"{task.annotation_path}: {exc}"))
        return res
    except OSError as exc:
        res.skips.append(("malformed_xml", f"{task.annotation_path}: unreadable: {exc}"))
        return res
    res.boxes_found = len(ann.boxes)
    if task.photo_path is None:
        res.skips.append(("missing_photo", f"{task.annotation_path}: no photo {task.photo_id}.jpg"))
        return res
    try:
        with open_photo(task.photo_path) as im:  # closes the file whatever happens below
            width, height = im.size  # the photo, not the XML's <size>, is the authority for clipping
            limits = BoxLimits(cfg.min_aspect, cfg.max_aspect, cfg.min_side)
            plans = []
            for i, box in enumerate(ann.boxes):
                rect, reason = judge_box(box, width, height, limits)
                if reason:
                    res.skips.append((reason, f"{task.annotation_path}: box {i} {box}"))
                else:
                    plans.append((i, plan_crop(rect, width, height, cfg.square, cfg.margin)))
            if not plans:
                return res
            decoded = decode_reduced(im, reduction_factor([p for _, p in plans], cfg.size))
            res.read = True
            scale = (decoded.width / width, decoded.height / height)
            for i, plan in plans:
                res.crops.append((i, render_crop(decoded, plan, scale, cfg.size, cfg.resample)))
    except ImageDecodeError as exc:
        res.crops.clear()
        res.skips.append(("corrupt_image", f"{task.photo_path}: {exc}"))
    return res


def find_tasks(images_dir: Path, annotations_dir: Path) -> tuple[list[PhotoTask], list[str], list[tuple[str, str]], int]:
    """Pair annotation files with photos by id.

    Returns the tasks (sorted by breed folder, then photo id), the breed names (one per annotation
    folder, in folder order), the skips found by pairing (photos without annotation) and the number
    of photos found.
    """
    if not images_dir.is_dir():
        raise PrepareError(f"{images_dir}: photo folder not found. Run `python -m pipeline.download` first, "
                           "or pass --images pointing at the folder holding the .jpg files (all-dogs/).")
    if not annotations_dir.is_dir():
        raise PrepareError(f"{annotations_dir}: annotation folder not found. Pass --annotations pointing at "
                           "Annotation/ (the folder holding the <wnid>-<Breed>/ folders).")
    photos = {
        p.stem: p
        for p in images_dir.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    }
    files = list_annotation_files(annotations_dir)
    breeds = list(dict.fromkeys(f.breed for f in files))
    label_of = {b: i for i, b in enumerate(breeds)}
    tasks, annotated = [], set()
    for f in files:
        annotated.add(f.photo_id)
        path = photos.get(f.photo_id)
        tasks.append(PhotoTask(f.photo_id, str(path) if path else None, str(f.path), label_of[f.breed]))
    skips = [("no_annotation", f"{photos[pid]}: no annotation file for this photo") for pid in sorted(set(photos) - annotated)]
    return tasks, breeds, skips, len(photos)


_worker_cfg: PrepareConfig | None = None


def _init_worker(cfg: PrepareConfig) -> None:
    global _worker_cfg
    _worker_cfg = cfg


def _work(task: PhotoTask) -> PhotoResult:
    assert _worker_cfg is not None
    return process_photo(task, _worker_cfg)


def _results(tasks: list[PhotoTask], cfg: PrepareConfig, workers: int, progress: bool):
    bar = dict(total=len(tasks), unit="photo", desc="prepare", disable=not progress, smoothing=0.05)
    if workers <= 1:
        yield from tqdm((process_photo(t, cfg) for t in tasks), **bar)
        return
    with multiprocessing.get_context().Pool(workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        yield from tqdm(pool.imap(_work, tasks, chunksize=32), **bar)


def prepare(
    images_dir: str | os.PathLike,
    annotations_dir: str | os.PathLike,
    cfg: PrepareConfig,
    progress: bool = True,
) -> tuple[Dataset, dict]:
    """The stage's core: crop every usable box. Returns the dataset and the report (a JSON-able dict).

    Raises :class:`PrepareError` only when no usable box is left; every other problem is a skip.
    """
    t0 = time.perf_counter()
    tasks, breeds, pairing_skips, n_photos = find_tasks(Path(images_dir), Path(annotations_dir))
    if not tasks:
        raise PrepareError(f"{annotations_dir}: no annotation files found under <wnid>-<Breed>/ folders.")
    workers = cfg.workers or os.cpu_count() or 1
    skips: dict[str, list[str]] = collections.defaultdict(list)
    for reason, item in pairing_skips:
        skips[reason].append(item)
    images, labels, sources = [], [], []
    boxes_found = images_read = 0
    for task, res in zip(tasks, _results(tasks, cfg, min(workers, len(tasks)), progress)):
        boxes_found += res.boxes_found
        images_read += res.read
        for reason, item in res.skips:
            skips[reason].append(item)
        for box_index, crop in res.crops:
            images.append(crop)
            labels.append(task.label)
            sources.append(f"{task.photo_id}#{box_index}")
    report = {
        "photos_found": n_photos,
        "annotation_files": len(tasks),
        "images_read": images_read,
        "boxes_found": boxes_found,
        "boxes_kept": len(images),
        "breeds": len(breeds),
        "seconds": round(time.perf_counter() - t0, 2),
        "skipped": {r: len(skips[r]) for r in PHOTO_SKIPS + BOX_SKIPS if skips.get(r)},
        "skips": {r: skips[r] for r in PHOTO_SKIPS + BOX_SKIPS if skips.get(r)},
        "config": as_dict(cfg),
    }
    if not images:
        raise PrepareError(
            f"no usable bounding box in {annotations_dir} with photos in {images_dir} "
            f"(skips: {report['skipped'] or 'none'}). Check that the two folders belong together."
        )
    ds = Dataset(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        breeds=np.asarray(breeds, dtype=str),
        sources=np.asarray(sources, dtype=str),
    )
    return ds, report


def sample_grid(ds: Dataset, seed: int, n: int = 64):
    """A picture of ``n`` random crops, each captioned with its breed."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(ds), size=min(n, len(ds)), replace=False))
    captions = [str(ds.breeds[ds.labels[i]]).replace("_", " ") for i in idx]
    return image_grid(ds.images[idx], captions, columns=8, zoom=2,
                      title=f"{len(idx)} random crops of {len(ds)} ({len(ds.breeds)} breeds)")


def summary(report: dict) -> str:
    lines = [
        f"prepare: {report['boxes_kept']} crops from {report['images_read']} photos "
        f"({report['boxes_found']} boxes in {report['annotation_files']} annotation files, "
        f"{report['breeds']} breeds) in {report['seconds']} s"
    ]
    for reason, count in report["skipped"].items():
        first = report["skips"][reason][0]
        lines.append(f"  skipped {count:6d} {reason:20s} e.g. {first}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.prepare",
        description="Crop every bounding box of the dog photos into one 64x64 training set (.npz), "
        "with a JSON report of what was kept and skipped and a PNG grid of random crops.",
    )
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of photos: all-dogs/<wnid>_<n>.jpg")
    parser.add_argument("--annotations", required=True, metavar="DIR",
                        help="folder of annotations: Annotation/<wnid>-<Breed>/<wnid>_<n>")
    parser.add_argument("--out", required=True, metavar="FILE.npz", help="dataset to write")
    parser.add_argument("--report", metavar="FILE.json", help="report to write (default: beside --out, report.json)")
    parser.add_argument("--grid", metavar="FILE.png", help="sample grid to write (default: beside --out, grid.png)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser, "prepare")
    args = parser.parse_args(argv)
    out = Path(args.out)
    report_path = Path(args.report) if args.report else out.with_name("report.json")
    grid_path = Path(args.grid) if args.grid else out.with_name("grid.png")
    try:
        cfg = config_from_args(args, "prepare")
        ds, report = prepare(args.images, args.annotations, cfg, progress=not args.no_progress)
        grid = sample_grid(ds, cfg.grid_seed)  # before anything is written
        # The dataset is written last: its presence means the report and grid beside it are current.
        write_json(report_path, report)
        save_png(grid_path, grid)
        save_dataset(out, ds)
    except (ConfigError, PrepareError, OSError) as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    print(summary(report))
    print(f"wrote {out} ({len(ds)} images), {report_path}, {grid_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
