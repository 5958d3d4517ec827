"""Small pictures for the README, cut from the outputs of the demo run (`dvc repro`).

    .venv/bin/python scripts/docs_pictures.py [LIVE_DIR]   # writes docs/*.png

docs/learn_*.png are the last sample grids of `bench/learn_bench.py` (bench/out/learn/). docs/mifid.png needs a
run with the in-training MiFID on; its dvclive folder is LIVE_DIR (default dvclive/):
    python -m pipeline.train --data data/prepared/dogs64.npz --out /tmp/run/ck.pt --live /tmp/run/live \
        --set train.eval_every=25

The real outputs (models/samples/progress.gif, submissions/walk.gif, reports/memorization.png, ...) are
megabytes: GIFs of noisy 64x64 pictures compress poorly. The README shows stills of a few tiles instead,
as 128-colour PNGs of a few dozen KB each. docs/memorizer.png is the report of a fake submission made of
1,000 training crops (reports/memorizer/). Pictures whose source is missing are skipped with a note.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.images import even_subsample, font, png_bytes  # noqa: E402
from pipeline.files import write_bytes  # noqa: E402
from pipeline.training.monitor import sample_files  # noqa: E402

DOCS = REPO / "docs"
COLOURS = 128
# where image_grid puts things (pipeline/images.py): 4 px padding, 20 px title, 14 px captions
PAD, TITLE, CAPTION = 4, 20, 14


def save_small(path: Path, picture: Image.Image) -> None:
    write_bytes(path, png_bytes(picture.convert("RGB").quantize(COLOURS)))
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size / 1024:.0f} KB)")


def labelled_rows(strips: list[Image.Image], labels: list[str], label_width: int = 70) -> Image.Image:
    """Strips stacked top to bottom, each with a label on its left."""
    width = label_width + max(s.width for s in strips)
    out = Image.new("RGB", (width, sum(s.height + PAD for s in strips) + PAD), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    y = PAD
    for strip, label in zip(strips, labels):
        out.paste(strip, (label_width, y))
        draw.text((PAD, y + strip.height // 2 - 6), label, fill=(0, 0, 0), font=font(11))
        y += strip.height + PAD
    return out


def progress_strip(samples: Path, steps: int = 5, tiles: int = 8) -> Image.Image | None:
    """The first breed row of the sample grid at ``steps`` points of training, tiles at 64 px."""
    files = sample_files(samples)
    if not files:
        return None
    chosen = [files[i] for i in even_subsample(len(files), steps)]
    strips = []
    for _, path in chosen:
        with Image.open(path) as grid:  # zoom 2: 128 px tiles
            row = grid.convert("RGB").crop((PAD, TITLE + PAD, PAD + tiles * (128 + PAD), TITLE + PAD + 128))
        strips.append(row.reduce(2))
    return labelled_rows(strips, [f"step {step}" for step, _ in chosen])


def walk_strip(walk_gif: Path, walks: tuple[int, ...] = (0, 1, 8, 9), frames: int = 9) -> Image.Image | None:
    """Walks of the walk GIF (top-row ones: latent walks; bottom-row ones: breed walks) as rows, time to the
    right: ``frames`` frames evenly spread, first and last in."""
    if not walk_gif.is_file():
        return None
    with Image.open(walk_gif) as gif:
        pictures = []
        for i in range(gif.n_frames):
            gif.seek(i)
            pictures.append(gif.convert("RGB"))
    columns = (pictures[0].width - PAD) // (64 + PAD)
    strips, labels = [], []
    for w in walks:
        r, c = divmod(w, columns)
        x, y = PAD + c * (64 + PAD), TITLE + PAD + r * (64 + CAPTION + PAD)
        tiles = [pictures[i].crop((x, y, x + 64, y + 64)) for i in even_subsample(len(pictures), frames)]
        strip = Image.new("RGB", (frames * (64 + 2), 64), (255, 255, 255))
        for j, tile in enumerate(tiles):
            strip.paste(tile, (j * 66, 0))
        strips.append(strip)
        labels.append("latent walk" if r == 0 else "breed walk")
    return labelled_rows(strips, labels, label_width=80)


def grid_rows(path: Path, rows: int = 4) -> Image.Image | None:
    """The title and the first ``rows`` breed rows of a sample grid (zoom 2: 128 px tiles), at half size."""
    if not path.is_file():
        return None
    with Image.open(path) as grid:
        grid = grid.convert("RGB")
        return grid.crop((0, 0, grid.width, TITLE + PAD + rows * (128 + CAPTION + PAD))).reduce(2)


def shrunk(path: Path, width: int) -> Image.Image | None:
    if not path or not path.is_file():
        return None
    with Image.open(path) as im:
        im = im.convert("RGB")
        return im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)


def memorizer_report(n: int = 1000) -> Path | None:
    """The memorization report of a 'submission' made of training crops (random picks, some repeated): what a
    memorizer looks like. Returns its PNG."""
    import zipfile

    import numpy as np

    from pipeline.config import build_config
    from pipeline.files import atomic_path, load_dataset
    from pipeline.report import PNG_NAME, build_report

    reference = REPO / "data" / "prepared" / "dogs64.npz"
    if not reference.is_file():
        return None
    crops = load_dataset(reference).images
    picks = np.random.default_rng(0).integers(0, len(crops), n)
    out = REPO / "reports" / "memorizer"
    with atomic_path(out / "copies.zip") as tmp, zipfile.ZipFile(tmp, "w") as z:
        for i, k in enumerate(picks):
            z.writestr(f"{i:05d}.png", png_bytes(crops[k]))
    # a memorizer of training crops, shown against the crops it copies
    cfg = build_config("score", {"network": "standin", "expected_images": n, "reference": "crops"})
    build_report(out / "copies.zip", None, reference, cfg, REPO / "data" / "reference", out, progress=False)
    return out / PNG_NAME


def mifid_plot(live: Path) -> Image.Image | None:
    """MiFID (and FID) of the in-training evaluations logged by dvclive in ``live``, the best one marked."""
    import csv
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    series = {}
    for name in ("mifid", "fid"):
        path = live / "plots" / "metrics" / "eval" / f"{name}.tsv"
        if not path.is_file():
            return None
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        series[name] = ([int(r["step"]) for r in rows], [float(r[name]) for r in rows])
    fig, ax = plt.subplots(figsize=(6.4, 2.8), dpi=90)
    steps, mifid = series["mifid"]
    ax.plot(steps, mifid, "o-", label="MiFID")
    ax.plot(*series["fid"], "--", color="grey", label="FID")
    best = int(min(range(len(mifid)), key=mifid.__getitem__))
    ax.plot([steps[best]], [mifid[best]], "*", color="#d62728", markersize=14, label=f"best.pt (step {steps[best]})")
    ax.set_xlabel("step")
    ax.set_ylabel("stand-in MiFID")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue()))


def main() -> int:
    live = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "dvclive"
    memorizer = memorizer_report()
    made = {
        "mifid.png": mifid_plot(live),
        "progress.png": progress_strip(REPO / "models" / "samples"),
        "walk.png": walk_strip(REPO / "submissions" / "walk.gif"),
        "memorizer.png": shrunk(memorizer, 640) if memorizer else None,
        "submission.png": shrunk(REPO / "submissions" / "images_grid.png", 440),
        **{f"learn_{m}.png": grid_rows(REPO / "bench" / "out" / "learn" / m / "samples" / "last.png")
           for m in ("dcgan", "progan", "biggan")},
    }
    needs = {  # what makes each picture's source
        "mifid.png": f"a training run with train.eval_every > 0 whose dvclive folder is given as LIVE_DIR (not {live}); "
                     "see this script's docstring",
        "progress.png": "the demo (dvc repro)",
        "walk.png": "python -m pipeline.generate --checkpoint models/checkpoint.pt --walk submissions/walk.gif",
        "memorizer.png": "the demo (dvc repro)",
        "submission.png": "the demo (dvc repro)",
        **{f"learn_{m}.png": f"bench/learn_bench.py (its {m} run in bench/out/learn)" for m in ("dcgan", "progan", "biggan")},
    }
    for name, picture in made.items():
        if picture is None:
            print(f"skipped docs/{name}: its source is not there; it needs {needs[name]}")
        else:
            save_small(DOCS / name, picture)
    return 0


if __name__ == "__main__":
    sys.exit(main())
