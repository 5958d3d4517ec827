"""Stage ``reference``: the competition photos as Kaggle's scorer read them, the default MiFID reference.

    python -m pipeline.reference --images data/raw/all-dogs --out data/prepared/photos64.npz \\
        [--report data/prepared/photos64.json] [--workers 0]

Every photo, whole, converted to RGB and squashed to 64x64 with LANCZOS (pipeline.reference_set), into
one dataset file that the score, report and train stages read when ``score.reference: photos``. A photo
that cannot be decoded is a counted, named skip, listed in the JSON report written beside the file.
Exit status 0, or 2 with ``error: <problem>`` (no folder, no photos, none decodable).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline.errors import error_text
from pipeline.files import save_dataset, write_json
from pipeline.reference_set import ReferenceError, build_photo_reference

SKIPS_SHOWN = 5  # skipped photos named on the terminal (all of them are in the report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.reference",
        description="Read every competition photo as Kaggle's MiFID scorer did (whole, RGB, squashed to 64x64 "
        "with LANCZOS) into the reference set the score stage compares submissions with (score.reference: photos).",
    )
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of photos: all-dogs/<wnid>_<n>.jpg")
    parser.add_argument("--out", required=True, metavar="FILE.npz", help="reference set to write")
    parser.add_argument("--report", metavar="FILE.json",
                        help="what was read and skipped (default: beside --out, <name>.json)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="processes (default 0: one per CPU core; the pixels do not depend on it)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    out = Path(args.out)
    report_path = Path(args.report) if args.report else out.with_suffix(".json")
    t0 = time.perf_counter()
    try:
        if args.workers < 0:
            raise ReferenceError(f"--workers must be 0 (every core) or more, got {args.workers}")
        ds, report = build_photo_reference(args.images, args.workers, progress=not args.no_progress)
        write_json(report_path, report.as_dict())
        save_dataset(out, ds)  # last: its presence means the report beside it is current
    except (ReferenceError, OSError) as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    print(f"reference: {report.images_read} of {report.photos_found} photos read as Kaggle's scorer read them "
          f"(64x64, LANCZOS, squashed) in {time.perf_counter() - t0:.1f} s")
    for skip in report.skips[:SKIPS_SHOWN]:
        print(f"  skipped (cannot be decoded): {skip}")
    if len(report.skips) > SKIPS_SHOWN:
        print(f"  ... and {len(report.skips) - SKIPS_SHOWN} more skipped photos, listed in {report_path}")
    print(f"wrote {out} ({len(ds)} images, {len(ds.breeds)} breeds) and {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
