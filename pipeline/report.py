"""Stage ``report``: would Kaggle call this submission a memorizer, and which images make it so?

    python -m pipeline.report --submission submissions/images.zip --photos data/prepared/photos64.npz \\
        [--crops data/prepared/dogs64.npz] [--out reports] [--checkpoint models/checkpoint.pt] [--cache data/reference]

Writes ``<out>/memorization.html`` (self-contained: every image inlined as a base64 PNG) and
``<out>/memorization.png`` (the same at a glance):

- the verdict: the memorization distance d (mean over generated images of the ``1 - |cos|`` to the
  nearest reference image, in the feature space of ``score.network``) against ``score.eps``, the MiFID and
  the penalty factor Kaggle would have applied (FID / d instead of FID: 1 / d times worse);
- the generated images closest to a reference image, each beside that image and its distance;
- the histogram of the per-image distances with Kaggle's eps marked (0.1 public board, 0.25 private);
- with ``--checkpoint`` of a conditional model, a sample grid per breed (the most frequent breeds).

It reads the zip and the reference statistics as the score stage does (same validation, same reference
``score.reference``: the whole photos or the crops, same cache ``--cache``/<network>_<reference>.npz), so
after ``dvc repro`` it costs nothing but the picture work. Exit status 0, or 2 with ``error: <problem>``.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import (ConfigError, GenerateConfig, ReportConfig, ScoreConfig, add_config_arguments,
                             config_from_args, load_config, option_overrides)
from pipeline.errors import error_text
from pipeline.files import Dataset, write_bytes, write_text
from pipeline.images import image_grid, png_bytes
from pipeline.metrics.features import FeatureNetwork, FeatureNetworkError, load_network
from pipeline.metrics.mifid import (EPS_PRIVATE, EPS_PUBLIC, feature_statistics, frechet_distance_by, mean_distance,
                                   memorization_neighbours_to, mifid_result)
from pipeline.metrics.scoring import ReferenceStats, not_comparable_note, reference_statistics, submission_features
from pipeline.models import to_pixels
from pipeline.reference_set import comparable_to_kaggle, load_reference
from pipeline.runtime import pick_device
from pipeline.validate import read_zip_images

HTML_NAME = "memorization.html"
PNG_NAME = "memorization.png"
BREED_COLUMNS = 8  # samples per breed in the per-breed grid


@dataclass
class Memorization:
    """The memorization analysis of one submission.

    distances float64 [N]: each generated image's ``1 - |cos|`` to its nearest reference image (NaN: an all-zero
    feature row, which Kaggle dropped); nearest int64 [N]: that image's index in the reference set (-1 for NaN);
    closest int64 [K]: the K generated images with the smallest distances, closest first.
    metrics: fid, distance, distance_thresholded, mifid (as pipeline.metrics.mifid.mifid_result), plus eps,
    memorizer (d < eps), penalty (how many times worse than FID the MiFID is: 1 / d_thr), network,
    comparable_to_kaggle, n_images, below_public / below_private (images whose own distance is below 0.1 / 0.25).
    """

    distances: np.ndarray
    nearest: np.ndarray
    closest: np.ndarray
    metrics: dict


def analyse(features: np.ndarray, stats: ReferenceStats, network: FeatureNetwork, eps: float, chunk: int,
            n_closest: int, frechet: str = "eigh") -> Memorization:
    """The analysis from the generated images' features [N, D] and the cached reference statistics.

    frechet: how the FID's matrix square root is taken (score.frechet), so the page shows the score's FID.
    """
    distances, rows = memorization_neighbours_to(features, stats.normalized, chunk)
    nearest = np.where(rows >= 0, stats.rows[np.maximum(rows, 0)], -1)  # normalised row -> reference image
    mu, sigma = feature_statistics(features)
    fid, method = frechet_distance_by(frechet, mu, sigma, stats.mu, stats.sigma, stats.root)
    result = mifid_result(fid, mean_distance(distances), eps)
    order = np.argsort(np.where(np.isnan(distances), np.inf, distances), kind="stable")
    metrics = {
        **result,
        "eps": eps,
        "memorizer": result["distance"] < eps,
        "penalty": 1.0 / max(result["distance_thresholded"], 1e-15),
        "network": network.name,
        "frechet": method,
        "reference": stats.kind,
        "reference_images": stats.n_images,
        "comparable_to_kaggle": comparable_to_kaggle(network.name, stats.kind),
        "n_images": len(features),
        "below_public": int(np.sum(distances < EPS_PUBLIC)),
        "below_private": int(np.sum(distances < EPS_PRIVATE)),
    }
    return Memorization(distances, nearest, order[:n_closest], metrics)


def verdict(metrics: dict) -> tuple[str, str]:
    """(headline, paragraph): would Kaggle call this a memorizer, and what would it cost."""
    d, eps, fid = metrics["distance"], metrics["eps"], metrics["fid"]
    if metrics["memorizer"]:
        headline = "MEMORIZER"
        text = (f"d = {d:.4g} is below eps = {eps}: Kaggle would have scored MiFID = FID / d = "
                f"{fid:.4g} / {d:.4g} = {metrics['mifid']:.4g}, {metrics['penalty']:.3g} times worse than the FID, "
                "and in 2019 disqualified such submissions by hand.")
    else:
        headline = "Not a memorizer"
        text = (f"d = {d:.4g} is not below eps = {eps}, so no penalty: MiFID = FID = "
                f"{metrics['mifid']:.4g}.")
    n = metrics["n_images"]
    public, private = metrics["below_public"], metrics["below_private"]
    text += (f" {public} of {n} images ({100 * public / n:.1f}%) lie closer than {EPS_PUBLIC} (public eps) to a "
             f"reference image, {private} ({100 * private / n:.1f}%) closer than {EPS_PRIVATE} (private eps); the closest "
             "are shown below.")
    if not metrics["comparable_to_kaggle"]:
        text += f" Note: {not_comparable_note(metrics['network'], metrics['reference'])}."
    return headline, text


# ------------------------------------------------------------------------------------------------- pictures


def pairs_picture(images: np.ndarray, ref: Dataset, m: Memorization, columns: int = 4):
    """The closest generated images, each beside its nearest reference image: a grid of ``columns`` pairs per row."""
    tiles, captions = [], []
    for i in m.closest:
        j = m.nearest[i]
        tiles += [images[i], ref.images[j] if j >= 0 else np.zeros_like(images[i])]
        captions += [f"#{i} d={m.distances[i]:.3f}", str(ref.sources[j]) if j >= 0 else "(zero features)"]
    return image_grid(np.stack(tiles), captions, columns=2 * columns, zoom=1)


def histogram_png(distances: np.ndarray, metrics: dict, width_in: float = 7.0) -> bytes:
    """The histogram of per-image distances, eps 0.1 and 0.25 and the mean d marked: PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    d = distances[~np.isnan(distances)]
    fig, ax = plt.subplots(figsize=(width_in, 3.0), dpi=90)
    top = max(0.3, float(d.max()) * 1.05) if len(d) else 1.0
    ax.hist(d, bins=60, range=(0.0, top), color="#4a78b5")
    marks = ((EPS_PUBLIC, f"eps {EPS_PUBLIC} (public)", "#d62728"), (EPS_PRIVATE, f"eps {EPS_PRIVATE} (private)", "#ff7f0e"),
             (metrics["distance"], f"d = {metrics['distance']:.3f} (mean)", "black"))
    for x, label, colour in marks:
        ax.axvline(x, color=colour, linestyle="--" if colour != "black" else "-", linewidth=1.5, label=label)
    ax.set_xlabel(f"1 - |cos| to the nearest reference image ({metrics['network']} features)")
    ax.set_ylabel("generated images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def summary_png(metrics: dict, histogram: bytes, pairs) -> bytes:
    """Verdict, histogram and closest pairs in one PNG."""
    from PIL import Image, ImageDraw

    from pipeline.images import font

    hist = Image.open(io.BytesIO(histogram)).convert("RGB")
    width = max(hist.width, pairs.width) + 20
    lines = _wrap(": ".join(verdict(metrics)), width - 20, ImageDraw.Draw(Image.new("RGB", (1, 1))), font(13))
    head = 10 + 18 * len(lines) + 10
    out = Image.new("RGB", (width, head + hist.height + pairs.height + 30), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    colour = (190, 20, 20) if metrics["memorizer"] else (20, 120, 40)
    for k, line in enumerate(lines):
        draw.text((10, 10 + 18 * k), line, fill=colour if k == 0 else (0, 0, 0), font=font(13))
    out.paste(hist, (10, head))
    caption = "closest generated images (left) beside their nearest reference image (right)"
    draw.text((10, head + hist.height + 4), caption, fill=(0, 0, 0), font=font(12))
    out.paste(pairs, (10, head + hist.height + 24))
    return png_bytes(out)


def _wrap(text: str, width: int, draw, font) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def breed_grid(checkpoint: dict, n_breeds: int, truncation: float, seed: int = 0, device="cpu"):
    """Samples of the EMA generator, one row per breed (the ``n_breeds`` most frequent in training), or None
    for an unconditional model."""
    import torch

    from pipeline.checkpoint import generator_from
    from pipeline.sampling import truncated_normal

    n_classes = checkpoint["n_classes"]
    if n_classes == 0:
        return None
    counts = np.asarray(checkpoint["extra"].get("label_counts") or np.ones(n_classes))
    breeds = np.argsort(-counts, kind="stable")[:n_breeds]
    G = generator_from(checkpoint).to(device)
    z = truncated_normal((len(breeds) * BREED_COLUMNS, G.z_dim), truncation, torch.Generator().manual_seed(seed))
    y = torch.as_tensor(np.repeat(breeds, BREED_COLUMNS))
    with torch.no_grad():
        pixels = to_pixels(G(z.to(device), y.to(device)))
    names = [str(checkpoint["breeds"][b]).replace("_", " ") for b in breeds]
    captions = [names[r] if c == 0 else "" for r in range(len(breeds)) for c in range(BREED_COLUMNS)]
    return image_grid(pixels, captions, columns=BREED_COLUMNS, zoom=1,
                      title=f"{checkpoint['model']} step {checkpoint['step']}, truncation {truncation}")


# --------------------------------------------------------------------------------------------------- HTML


def _img(data: bytes, alt: str, css: str = "") -> str:
    return (f'<img alt="{html.escape(alt)}" style="{css}" '
            f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">')


def render_html(submission: str, images: np.ndarray, ref: Dataset, m: Memorization, histogram: bytes,
                grid=None) -> str:
    """The self-contained page: verdict, metrics, histogram, closest pairs, per-breed grid."""
    mt = m.metrics
    headline, paragraph = verdict(mt)
    colour = "#b41414" if mt["memorizer"] else "#14782a"
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in (
        ("network", mt["network"] + ("" if mt["comparable_to_kaggle"] else " (not comparable to Kaggle)")),
        ("reference", f"{mt['reference']} ({mt['reference_images']} images)"),
        ("images", mt["n_images"]), ("FID", f"{mt['fid']:.4g}"), ("FID's matrix square root", mt["frechet"]),
        ("d (memorization distance)", f"{mt['distance']:.4g}"),
        ("eps", mt["eps"]), ("d thresholded", f"{mt['distance_thresholded']:.4g}"), ("MiFID", f"{mt['mifid']:.4g}"),
        ("penalty factor (MiFID / FID)", f"{mt['penalty']:.3g}"),
        ("images below 0.1 / 0.25", f"{mt['below_public']} / {mt['below_private']}"),
    ))
    pixel = "image-rendering: pixelated; width: 128px; height: 128px"
    pairs = []
    for rank, i in enumerate(m.closest, 1):
        j = m.nearest[i]
        crop = _img(png_bytes(ref.images[j]), "reference image", pixel) if j >= 0 else "(zero features)"
        source = html.escape(f"{ref.sources[j]} ({ref.breeds[ref.labels[j]]})") if j >= 0 else ""
        flag = " below" if m.distances[i] < mt["eps"] else ""
        pairs.append(f'<tr class="{flag.strip()}"><td>{rank}</td><td>{_img(png_bytes(images[i]), "generated", pixel)}'
                     f"<br>image #{i}</td><td>{crop}<br>{source}</td><td>{m.distances[i]:.4f}</td></tr>")
    breed_part = ""
    if grid is not None:
        breed_part = f"<h2>Samples per breed</h2>{_img(png_bytes(grid), 'samples per breed')}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Memorization report: {html.escape(submission)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1000px; }}
.verdict {{ border-left: 6px solid {colour}; padding: 0.5em 1em; background: #f6f6f6; font-size: 1.1em; }}
.verdict b {{ color: {colour}; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 4px 10px; text-align: left; vertical-align: top; }}
tr.below td:last-child {{ color: #b41414; font-weight: bold; }}
</style></head><body>
<h1>Memorization report</h1>
<p>{html.escape(submission)} against the reference images ({len(ref)} images).</p>
<p class="verdict"><b>{html.escape(headline)}.</b> {html.escape(paragraph)}</p>
<table>{rows}</table>
<h2>Distances to the nearest reference image</h2>
<p>Kaggle's d is the mean of these; a submission is penalised when d is below eps (0.1 on the public
board, 0.25 on the private one, which used another network).</p>
{_img(histogram, "histogram of distances")}
<h2>The {len(m.closest)} generated images closest to a reference image</h2>
<table><tr><th>rank</th><th>generated</th><th>nearest reference image</th><th>1 - |cos|</th></tr>{''.join(pairs)}</table>
{breed_part}
</body></html>
"""


# ------------------------------------------------------------------------------------------------- stage


def build_report(submission: str | Path, photos: str | Path | None, crops: str | Path | None, cfg: ScoreConfig,
                 cache_dir: str | Path, out_dir: str | Path, checkpoint: str | None = None, truncation: float = 0.8,
                 n_closest: int = 16, n_breeds: int = 12, device="cpu", progress: bool = True) -> Memorization:
    """The stage's core: analyse ``submission`` against the reference ``cfg.reference`` (the dataset file
    ``photos`` or ``crops``) and write the HTML page and the PNG into ``out_dir``."""
    images = read_zip_images(submission, cfg.expected_images)
    ck = None
    if checkpoint:  # early: a wrong path fails before any feature is computed
        from pipeline.checkpoint import load_checkpoint

        ck = load_checkpoint(checkpoint)
    network = load_network(cfg.network, cfg.inception_weights)
    ref = load_reference(cfg.reference, photos, crops)
    stats, _ = reference_statistics(ref.images, network, cache_dir, cfg.reference, cfg.batch_size, device, progress)
    features, _ = submission_features(images, network, cache_dir, cfg.batch_size, device, progress)  # score's
    m = analyse(features, stats, network, cfg.eps, cfg.chunk, n_closest, cfg.frechet)
    histogram = histogram_png(m.distances, m.metrics)
    pairs = pairs_picture(images, ref, m)
    grid = breed_grid(ck, n_breeds, truncation, device=device) if ck is not None else None
    out_dir = Path(out_dir)
    write_text(out_dir / HTML_NAME, render_html(str(submission), images, ref, m, histogram, grid))
    write_bytes(out_dir / PNG_NAME, summary_png(m.metrics, histogram, pairs))
    return m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.report",
        description="Memorization report of a submission zip: would Kaggle call it a memorizer, and which images "
        "make it so? Writes a self-contained HTML page and a PNG (the closest generated images beside their nearest "
        "reference images, the histogram of distances with Kaggle's eps, the verdict, samples per breed). Reads the "
        "'score' section of the params (network, eps, ...), the 'report' section and generate.truncation.",
    )
    parser.add_argument("--submission", required=True, metavar="ZIP",
                        help="the submission, e.g. submissions/images.zip")
    parser.add_argument("--photos", metavar="FILE.npz",
                        help="the photo reference (pipeline.reference); used when score.reference is photos")
    parser.add_argument("--crops", metavar="FILE.npz",
                        help="the prepared training set (pipeline.prepare); used when score.reference is crops")
    parser.add_argument("--out", default="reports", metavar="DIR",
                        help=f"folder for {HTML_NAME} and {PNG_NAME} (default: %(default)s)")
    parser.add_argument("--checkpoint", metavar="FILE",
                        help="checkpoint the images came from: adds a sample grid per breed (conditional models)")
    parser.add_argument("--cache", default="data/reference", metavar="DIR",
                        help="cache of reference statistics and submission features, shared with the score stage "
                             "(default: %(default)s)")
    parser.add_argument("--closest", type=int, metavar="K",
                        help="how many of the closest generated images to show (default: report.closest, 16)")
    parser.add_argument("--breeds", type=int, metavar="B",
                        help="rows of the per-breed grid: the B most frequent breeds (default: report.breeds, 12)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_arguments(parser, "score")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        cfg = config_from_args(args, "score")
        gen_cfg: GenerateConfig = load_config("generate", args.params)
        # --closest and --breeds are the report section's keys, checked as params are
        shown: ReportConfig = load_config("report", args.params,
                                          option_overrides(closest=args.closest, breeds=args.breeds))
        try:
            device = pick_device(args.device)
        except RuntimeError as exc:
            raise ConfigError(str(exc)) from None
        m = build_report(args.submission, args.photos, args.crops, cfg, args.cache, args.out, args.checkpoint,
                         gen_cfg.truncation, shown.closest, shown.breeds, device, progress=not args.no_progress)
    except (ValueError, FeatureNetworkError, OSError) as exc:  # ConfigError, SubmissionError, unwritable --out ...
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    print("report: " + ": ".join(verdict(m.metrics)))
    print(f"wrote {Path(args.out) / HTML_NAME} and {Path(args.out) / PNG_NAME} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
