"""A local leaderboard of scored submissions, and where a score would have stood in 2019.

``<dir>/leaderboard.csv`` gets one row per score run (never rewritten in place: read, append, write the
whole file atomically); ``leaderboard.md`` (a table sorted by MiFID) and ``leaderboard.png`` (MiFID of
each run, log scale) are regenerated from it every time.

Only rows scored with a network that Kaggle used (``inception``) are comparable to the 2019 public
board: for those the row says where the MiFID would have ranked among the 497 submissions that the
organisers labelled real generative models (``non-mem``), shipped in
``pipeline/assets/kaggle2019_public_nonmem.csv`` (public MiFID, sorted; best 12.46, median 61.6).
Stand-in rows are marked as not comparable and get no rank and no reference lines.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.files import atomic_path, write_bytes, write_text

PUBLIC_NONMEM_CSV = Path(__file__).resolve().parents[1] / "assets" / "kaggle2019_public_nonmem.csv"
COLUMNS = (
    "time", "model", "params", "network", "comparable_to_kaggle", "n_images", "eps",
    "fid", "frechet", "distance", "mifid", "memorizer", "kaggle_2019_rank",
)
UNKNOWN = "unknown"
NOT_COMPARABLE = "not comparable (stand-in network)"

# checkpoint keys that tell runs apart, in the order they are printed
TRAIN_KEYS = ("conditional", "loss", "batch_size", "epochs", "lr_g", "lr_d", "augment", "ema_decay")


# ----------------------------------------------------------------------------------------- the 2019 board


@functools.lru_cache(maxsize=None)
def public_nonmem_scores(path: str | os.PathLike = PUBLIC_NONMEM_CSV) -> np.ndarray:
    """float64 [497]: public MiFID of the 2019 real generative models, sorted ascending."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    scores = np.sort(np.array([float(r["public_mifid"]) for r in rows], dtype=np.float64))
    scores.setflags(write=False)  # cached: nobody may change it
    return scores


def public_board_summary() -> tuple[float, float]:
    """(best, median) public MiFID of the 2019 real generative models: (12.46..., 61.6...)."""
    scores = public_nonmem_scores()
    return float(scores[0]), float(np.median(scores))


def kaggle_rank(mifid: float, scores: np.ndarray | None = None) -> tuple[int, int]:
    """(rank, out of): where ``mifid`` would have placed among ``scores`` (lower is better).

    The rank is 1 + the number of scores strictly better, so a tie takes the better place; the field
    counts the new score too: 1 .. 498 against the 497 real generative models of 2019.
    """
    scores = public_nonmem_scores() if scores is None else np.asarray(scores, dtype=np.float64)
    if math.isnan(mifid):
        raise ValueError("a NaN MiFID has no rank")
    return 1 + int(np.count_nonzero(scores < mifid)), len(scores) + 1


def rank_text(mifid: float, scores: np.ndarray | None = None) -> str:
    """E.g. ``"would rank 120 of 498"``."""
    rank, total = kaggle_rank(mifid, scores)
    return f"would rank {rank} of {total}"


# ------------------------------------------------------------------------------------------------- rows


def describe_checkpoint(payload: dict[str, Any]) -> tuple[str, str]:
    """(model name, short params string) from a loaded checkpoint (see pipeline.checkpoint)."""
    model = str(payload.get("model") or UNKNOWN)
    parts = []
    if "step" in payload:
        total = payload.get("total_steps")
        parts.append(f"step {payload['step']}" + (f"/{total}" if total else ""))
    options = payload.get("model_options") or {}
    if options:
        parts.append(" ".join(f"{k}={v}" for k, v in options.items()))
    train = payload.get("train_config") or {}
    picked = [f"{k}={train[k]!r}" if isinstance(train[k], str) else f"{k}={train[k]}" for k in TRAIN_KEYS if k in train]
    if picked:
        parts.append(" ".join(picked))
    return model, "; ".join(parts) or UNKNOWN


def _num(x: float) -> str:
    return repr(float(x))


def make_row(metrics: dict[str, Any], model: str = UNKNOWN, params: str = UNKNOWN,
             when: datetime | None = None) -> dict[str, str]:
    """One leaderboard row from the score stage's metrics (keys network, comparable_to_kaggle, n_images,
    eps, fid, frechet, distance, mifid, memorizer)."""
    when = when or datetime.now().astimezone()
    comparable = bool(metrics["comparable_to_kaggle"])
    return {
        "time": when.isoformat(timespec="seconds"),
        "model": model or UNKNOWN,
        "params": params or UNKNOWN,
        "network": str(metrics["network"]),
        "comparable_to_kaggle": str(comparable).lower(),
        "n_images": str(int(metrics["n_images"])),
        "eps": _num(metrics["eps"]),
        "fid": _num(metrics["fid"]),
        "frechet": str(metrics["frechet"]),  # the method that gave the FID (sqrtm: Kaggle's)
        "distance": _num(metrics["distance"]),
        "mifid": _num(metrics["mifid"]),
        "memorizer": str(bool(metrics["memorizer"])).lower(),
        "kaggle_2019_rank": rank_text(float(metrics["mifid"])) if comparable else NOT_COMPARABLE,
    }


def read_rows(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a leaderboard CSV; no file: our columns and no rows."""
    path = Path(path)
    if not path.is_file():
        return list(COLUMNS), []
    with open(path, newline="") as fh:
        # DictReader gives None for the cells of a row cut short and keeps extra cells under the key None: a
        # row damaged by hand becomes empty cells (shown as "?") rather than a crash, and its extras are dropped
        reader = csv.DictReader(fh, restval="")
        rows = [{k: v for k, v in r.items() if k is not None} for r in reader]
        found = list(reader.fieldnames or [])
    # a file from an older version keeps its extra columns after ours
    return list(COLUMNS) + [c for c in found if c not in COLUMNS], rows


def write_rows(path: str | os.PathLike, columns: list[str], rows: list[dict[str, str]]) -> None:
    """Write the whole CSV at ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------------------------------------- renders


def _float(row: dict[str, str], key: str) -> float:
    try:
        return float(row.get(key) or "nan")
    except ValueError:
        return math.nan


def _comparable(row: dict[str, str]) -> bool:
    return row.get("comparable_to_kaggle", "").lower() == "true"


def _fmt(x: float, digits: int = 2) -> str:
    if math.isnan(x):
        return "?"
    return f"{x:.{digits}f}" if abs(x) < 1e5 else f"{x:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: list[dict[str, str]]) -> str:
    """The leaderboard as a markdown table: comparable rows first, each group sorted by MiFID."""
    best, median = public_board_summary()
    order = sorted(rows, key=lambda r: (not _comparable(r), math.isnan(_float(r, "mifid")), _float(r, "mifid")))
    lines = [
        "# Local leaderboard",
        "",
        f"MiFID of every scored submission, lower is better. Only rows scored with the `inception` network "
        f"can be set beside Kaggle's 2019 public board (497 real generative models: best {best:.2f}, median "
        f"{median:.1f}), and even those only roughly (the reference is the prepared crops, not Kaggle's whole "
        "photos: see the README, \"How close to Kaggle's scorer\"). `standin` rows are NOT "
        "comparable to Kaggle's numbers, only to each other. Regenerated from leaderboard.csv by each score run.",
        "",
        "| # | MiFID | FID | distance d | network | 2019 public board | model | params | n | time |",
        "| ---: | ---: | ---: | ---: | --- | --- | --- | --- | ---: | --- |",
    ]
    for i, r in enumerate(order, 1):
        d = _fmt(_float(r, "distance"), 4)
        if r.get("memorizer", "").lower() == "true":
            d += f" **memorizer** (< eps {r.get('eps', '?')})"
        network = r.get("network", "?") if _comparable(r) else f"{r.get('network', '?')} (not comparable to Kaggle)"
        rank = r.get("kaggle_2019_rank", "") if _comparable(r) else "n/a"
        fid = _fmt(_float(r, "fid"))
        if r.get("frechet") and r["frechet"] != "sqrtm":  # rows of older files have no method: they are sqrtm
            fid += f" ({r['frechet']})"
        cells = [str(i), _fmt(_float(r, "mifid")), fid, d, network, rank,
                 r.get("model", ""), r.get("params", ""), r.get("n_images", ""), r.get("time", "")]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_plot(rows: list[dict[str, str]]) -> bytes:
    """PNG bytes: MiFID of each run in file (time) order, log scale, one panel per network.

    The 2019 public-board best and median are drawn only in the panels of comparable networks.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    best, median = public_board_summary()
    networks = sorted({r.get("network", "?") for r in rows}, key=lambda n: (n != "inception", n))
    fig = Figure(figsize=(6.5 * max(1, len(networks)), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    if not networks:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no scored submissions yet", ha="center", va="center")
        ax.set_axis_off()
    for i, name in enumerate(networks):
        ax = fig.add_subplot(1, len(networks), i + 1)
        mine = [r for r in rows if r.get("network", "?") == name]
        comparable = any(_comparable(r) for r in mine)
        x = np.arange(1, len(mine) + 1)
        y = np.array([_float(r, "mifid") for r in mine])
        memo = np.array([r.get("memorizer", "").lower() == "true" for r in mine])
        shown = np.isfinite(y) & (y > 0)  # a log axis cannot show 0 or a negative MiFID
        ax.plot(x[shown], y[shown], "-", color="0.7", zorder=1)
        ax.scatter(x[shown & ~memo], y[shown & ~memo], color="tab:blue", zorder=2, label="MiFID")
        if (shown & memo).any():
            ax.scatter(x[shown & memo], y[shown & memo], color="tab:red", marker="x", zorder=3,
                       label="memorizer (penalised)")
        if shown.any() or comparable:  # a log axis with nothing positive on it is an error in matplotlib
            ax.set_yscale("log")
        if comparable:
            ax.axhline(best, color="tab:green", ls="--", label=f"2019 public best {best:.2f}")
            ax.axhline(median, color="tab:orange", ls="--", label=f"2019 public median {median:.1f}")
            ax.set_title(f"{name}: comparable to Kaggle's 2019 public board")
        else:
            ax.set_title(f"{name}: NOT comparable to Kaggle's numbers")
        if (~shown).any():
            ax.text(0.01, 0.01, f"{int((~shown).sum())} run(s) with MiFID <= 0 or NaN not shown",
                    transform=ax.transAxes, fontsize=8, color="tab:red")
        ax.set_xlabel("score run (oldest first)")
        ax.set_ylabel("MiFID (log scale, lower is better)")
        ax.set_xticks(x if len(x) <= 20 else np.linspace(1, len(x), 10).round().astype(int))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def update_leaderboard(directory: str | os.PathLike, row: dict[str, str]) -> dict[str, Path]:
    """Append ``row`` to ``directory``/leaderboard.csv and regenerate leaderboard.md and .png."""
    directory = Path(directory)
    paths = {k: directory / f"leaderboard.{k}" for k in ("csv", "md", "png")}
    columns, rows = read_rows(paths["csv"])
    rows.append(row)
    # both renders before any write: a row they choke on leaves all three files as they were
    markdown, picture = render_markdown(rows), render_plot(rows)
    write_rows(paths["csv"], columns, rows)
    write_text(paths["md"], markdown)
    write_bytes(paths["png"], picture)
    return paths
