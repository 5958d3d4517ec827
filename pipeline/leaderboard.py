"""The local leaderboard: every scored submission, ranked, and where it would have stood in 2019.

    python -m pipeline.leaderboard [--dir submissions] [--no-experiments] [--all-commits]

Two sources make the board:

- ``<dir>/leaderboard.csv``: one row per run of the score command in this folder, by hand or by ``dvc repro``
  (never rewritten in place: read, append, write the whole file atomically);
- every experiment DVC knows (``dvc exp show --json``: the workspace, HEAD and the experiments based on it;
  ``--all-commits``: the whole history, slower): their ``metrics/score.json`` travels with each experiment,
  so queued and ``--temp`` experiments, which run in other folders, are on the board too.

The same submission (pixels hash), scored the same way (network, reference, eps, Frechet method), is one
row: the experiment's, which has a name. ``leaderboard.md`` (a table sorted by MiFID) and ``leaderboard.png``
(MiFID of each row, log scale) are rendered from both; the score stage renders them after each score.

Only rows scored with Kaggle's network (``inception``) against Kaggle's reference (``photos``: every
training photo, whole) are comparable to the 2019 public board: for those the row says where the MiFID
would have ranked among the 497 submissions that the organisers labelled real generative models
(``non-mem``), shipped in ``pipeline/assets/kaggle2019_public_nonmem.csv`` (public MiFID, sorted; best
12.46, median 61.6). Stand-in rows and rows against the prepared crops get no rank and no reference lines.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import math
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.files import atomic_path, write_bytes, write_text
from pipeline.reference_set import comparable_to_kaggle as comparable

PUBLIC_NONMEM_CSV = Path(__file__).resolve().parent / "assets" / "kaggle2019_public_nonmem.csv"
COLUMNS = (
    "time", "source", "model", "params", "network", "reference", "reference_images", "comparable_to_kaggle",
    "n_images", "eps", "fid", "frechet", "distance", "mifid", "memorizer", "kaggle_2019_rank", "submission_sha256",
)
UNKNOWN = "unknown"
SCORE_RUN = "score run"  # the source of a row the score command appended to the CSV
NOT_COMPARABLE = "not comparable (stand-in network)"
NOT_COMPARABLE_CROPS = "not comparable (crops reference)"
METRICS_FILE = "metrics/score.json"  # where each DVC experiment keeps its score
DVC_TIMEOUT_S = 120.0
# the same submission scored the same way: one row
SAME_SCORE = ("submission_sha256", "network", "reference", "eps", "frechet")

# checkpoint keys that tell runs apart, in the order they are printed
TRAIN_KEYS = ("conditional", "loss", "batch_size", "epochs", "lr_g", "lr_d", "augment", "lecam_weight", "ema_decay")


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
    recipe = (payload.get("extra") or {}).get("recipe")
    if recipe:  # the recipe first: what a reader of the board compares
        parts.append(f"recipe {recipe}")
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


def rank_or_why_not(mifid: float, network: str, reference: str) -> str:
    """``"would rank R of 498"`` for a comparable score, else why it has no rank."""
    if comparable(network, reference):
        return rank_text(mifid)
    return NOT_COMPARABLE if network != "inception" else NOT_COMPARABLE_CROPS


def make_row(metrics: dict[str, Any], model: str = UNKNOWN, params: str = UNKNOWN,
             when: datetime | str | None = None, source: str = SCORE_RUN) -> dict[str, str]:
    """One leaderboard row from the score stage's metrics (``metrics/score.json``: network, reference,
    reference_images, n_images, eps, fid, frechet, distance, mifid, memorizer, submission_sha256).

    Metrics of older versions lack the reference (it was the crops then), its size and the hash: their cells
    say so ("crops", "", "")."""
    if not isinstance(when, str):
        when = (when or datetime.now().astimezone()).isoformat(timespec="seconds")
    network, reference = str(metrics["network"]), str(metrics.get("reference") or "crops")
    return {
        "time": when,
        "source": source,
        "model": model or UNKNOWN,
        "params": params or UNKNOWN,
        "network": network,
        "reference": reference,
        "reference_images": str(metrics.get("reference_images", "")),
        "comparable_to_kaggle": str(comparable(network, reference)).lower(),
        "n_images": str(int(metrics["n_images"])),
        "eps": _num(metrics["eps"]),
        "fid": _num(metrics["fid"]),
        "frechet": str(metrics.get("frechet") or "sqrtm"),  # the method that gave the FID (sqrtm: Kaggle's)
        "distance": _num(metrics["distance"]),
        "mifid": _num(metrics["mifid"]),
        "memorizer": str(bool(metrics["memorizer"])).lower(),
        "kaggle_2019_rank": rank_or_why_not(float(metrics["mifid"]), network, reference),
        "submission_sha256": str(metrics.get("submission_sha256") or ""),
    }


class DamagedLeaderboard(OSError):
    """leaderboard.csv cannot be read as a CSV (undecodable bytes, not a file, unreadable).

    An OSError so that callers guarding their file writes (the score stage) report it in one line; the
    file is never rewritten then, so whatever it held can still be repaired by hand."""


def read_rows(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a leaderboard CSV; no file: our columns and no rows.

    Raises DamagedLeaderboard when the file is there but cannot be read as a CSV."""
    path = Path(path)
    if not path.exists():
        return list(COLUMNS), []
    try:
        with open(path, newline="") as fh:
            # DictReader gives None for the cells of a row cut short and keeps extra cells under the key None: a
            # row damaged by hand becomes empty cells (shown as "?") rather than a crash, its extras are dropped
            reader = csv.DictReader(fh, restval="")
            rows = [{k: v for k, v in r.items() if k is not None} for r in reader]
            found = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DamagedLeaderboard(f"{path} is not a readable leaderboard CSV ({exc}); repair it or move it "
                                 "aside (a new one is started then)") from None
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
    return comparable(row.get("network", ""), row.get("reference") or "crops")


def _fmt(x: float, digits: int = 2) -> str:
    if math.isnan(x):
        return "?"
    return f"{x:.{digits}f}" if abs(x) < 1e5 else f"{x:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: list[dict[str, str]], notes: list[str] | None = None) -> str:
    """The leaderboard as a markdown table: comparable rows first, each group sorted by MiFID.

    notes: lines shown under the explanation (e.g. why the experiments are missing)."""
    best, median = public_board_summary()
    order = sorted(rows, key=lambda r: (not _comparable(r), math.isnan(_float(r, "mifid")), _float(r, "mifid")))
    lines = [
        "# Local leaderboard",
        "",
        f"MiFID of every scored submission, lower is better: the score runs of leaderboard.csv and every DVC "
        f"experiment's metrics/score.json (`python -m pipeline.leaderboard` renders this page). Only rows scored "
        f"with the `inception` network against the `photos` reference (Kaggle's: every training photo, whole) "
        f"can be set beside Kaggle's 2019 public board (497 real generative models: best {best:.2f}, median "
        f"{median:.1f}). Rows against the `crops` reference and `standin` rows are NOT comparable to Kaggle's "
        "numbers, only to rows scored the same way.",
        *(f"\n> {note}" for note in notes or []),
        "",
        "| # | MiFID | FID | distance d | network | reference | 2019 public board | model | params | source | time |",
        "| ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate(order, 1):
        d = _fmt(_float(r, "distance"), 4)
        if r.get("memorizer", "").lower() == "true":
            d += f" **memorizer** (< eps {r.get('eps', '?')})"
        network = r.get("network", "?") if _comparable(r) else f"{r.get('network', '?')} (not comparable to Kaggle)"
        reference = r.get("reference") or "crops"
        if r.get("reference_images"):
            reference += f" ({r['reference_images']})"
        rank = r.get("kaggle_2019_rank", "") if _comparable(r) else "n/a"
        fid = _fmt(_float(r, "fid"))
        if r.get("frechet") and r["frechet"] != "eigh":  # the default method is not repeated on every row
            fid += f" ({r['frechet']})"
        cells = [str(i), _fmt(_float(r, "mifid")), fid, d, network, reference, rank, r.get("model", ""),
                 r.get("params", ""), r.get("source") or SCORE_RUN, r.get("time", "")]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_plot(rows: list[dict[str, str]]) -> bytes:
    """PNG bytes: MiFID of each row in board order, log scale, one panel per network and reference.

    The 2019 public-board best and median are drawn only in the panel of ``inception`` against ``photos``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    best, median = public_board_summary()

    def panel(r: dict[str, str]) -> str:
        return f"{r.get('network', '?')}, {r.get('reference') or 'crops'}"

    networks = sorted({panel(r) for r in rows}, key=lambda n: (n != "inception, photos", n))
    fig = Figure(figsize=(6.5 * max(1, len(networks)), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    if not networks:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no scored submissions yet", ha="center", va="center")
        ax.set_axis_off()
    for i, name in enumerate(networks):
        ax = fig.add_subplot(1, len(networks), i + 1)
        mine = [r for r in rows if panel(r) == name]
        kaggles = any(_comparable(r) for r in mine)
        x = np.arange(1, len(mine) + 1)
        y = np.array([_float(r, "mifid") for r in mine])
        memo = np.array([r.get("memorizer", "").lower() == "true" for r in mine])
        shown = np.isfinite(y) & (y > 0)  # a log axis cannot show 0 or a negative MiFID
        ax.plot(x[shown], y[shown], "-", color="0.7", zorder=1)
        ax.scatter(x[shown & ~memo], y[shown & ~memo], color="tab:blue", zorder=2, label="MiFID")
        if (shown & memo).any():
            ax.scatter(x[shown & memo], y[shown & memo], color="tab:red", marker="x", zorder=3,
                       label="memorizer (penalised)")
        if shown.any() or kaggles:  # a log axis with nothing positive on it is an error in matplotlib
            ax.set_yscale("log")
        if kaggles:
            ax.axhline(best, color="tab:green", ls="--", label=f"2019 public best {best:.2f}")
            ax.axhline(median, color="tab:orange", ls="--", label=f"2019 public median {median:.1f}")
            ax.set_title(f"{name}: comparable to Kaggle's 2019 public board")
        else:
            ax.set_title(f"{name}: NOT comparable to Kaggle's numbers")
        if (~shown).any():
            ax.text(0.01, 0.01, f"{int((~shown).sum())} run(s) with MiFID <= 0 or NaN not shown",
                    transform=ax.transAxes, fontsize=8, color="tab:red")
        ax.set_xlabel("row (score runs, then experiments)")
        ax.set_ylabel("MiFID (log scale, lower is better)")
        ax.set_xticks(x if len(x) <= 20 else np.linspace(1, len(x), 10).round().astype(int))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ DVC experiments


def find_repo(start: str | os.PathLike) -> Path | None:
    """The nearest folder at or above ``start`` that holds a ``.dvc`` folder (a DVC project), or None."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def dvc_exp_show(repo: Path, all_commits: bool = False) -> list[dict]:
    """``dvc exp show --json`` in ``repo``, parsed. Raises RuntimeError with a one-line reason when dvc is
    missing, fails or times out.

    By default DVC lists the workspace, HEAD and every experiment based on HEAD (queued, running, failed,
    finished, --temp): the board of the work in hand, in under a second. ``all_commits`` adds every commit
    and its experiments, which grows with the history, so it is asked for (``--all-commits``), not default.

    Safe while ``dvc repro`` or ``dvc exp run`` runs in the same project, the score stage's own call included:
    checked with dvc 3.67, ``dvc exp show --json`` exits 0 while ``dvc status`` fails with "is busy, it is
    being blocked by ... dvc repro" (it reads git and the files, not the rwlock); an output being rebuilt
    then shows as a metrics error (FileNotFoundError), which is skipped."""
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["--all-commits"] if all_commits else [])]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    try:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=DVC_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`dvc exp show` took over {DVC_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise RuntimeError(f"cannot run dvc ({exc})") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        raise RuntimeError(f"`dvc exp show` failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")
    try:
        entries = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"`dvc exp show --json` printed no JSON ({exc})") from None
    if not isinstance(entries, list):
        raise RuntimeError("`dvc exp show --json` printed something other than a list of revisions")
    return entries


def _row_of(entry: dict, source: str) -> dict[str, str] | None:
    """The leaderboard row of one revision of ``dvc exp show --json``; None if it has no usable score."""
    if entry.get("error"):
        return None
    data = entry.get("data") or {}
    score = ((data.get("metrics") or {}).get(METRICS_FILE) or {}).get("data")
    if not isinstance(score, dict):
        return None  # queued, running or failed, or a revision from before the score stage
    train = ((data.get("params") or {}).get("params.yaml") or {}).get("data", {}).get("train") or {}
    model = score.get("model") or train.get("model") or UNKNOWN
    try:
        return make_row(score, str(model), str(score.get("params") or UNKNOWN), data.get("timestamp") or "", source)
    except (KeyError, TypeError, ValueError):
        return None  # a score.json of another shape: not a row


def experiment_rows(entries: list[dict]) -> list[dict[str, str]]:
    """Rows of every revision of ``dvc exp show --json`` whose ``metrics/score.json`` holds a score.

    The JSON is a list of baselines (the workspace, then commits: ``{"rev", "name", "data": {"timestamp",
    "params", "metrics"}, "experiments": [{"name", "executor", "revs": [revision, ...]}]}``); an experiment
    is a revision under its baseline's ``experiments``. Sources: ``workspace``, ``commit <rev> (<branch>)``,
    ``experiment <name>``."""
    rows = []
    for base in entries:
        rev = str(base.get("rev") or "")
        if rev == "workspace":
            source = "workspace"
        else:
            source = f"commit {rev[:7]}" + (f" ({base['name']})" if base.get("name") else "")
        row = _row_of(base, source)
        if row is not None:
            rows.append(row)
        for group in base.get("experiments") or []:
            for exp in group.get("revs") or []:
                name = exp.get("name") or group.get("name") or str(exp.get("rev") or "")[:7]
                row = _row_of(exp, f"experiment {name}")
                if row is not None:
                    rows.append(row)
    return rows


def _priority(row: dict[str, str]) -> int:
    """Which of two rows of the same score stays: a named experiment, then a commit, the workspace, a score run."""
    source = row.get("source") or SCORE_RUN
    return next((p for p, prefix in enumerate(("experiment", "commit", "workspace")) if source.startswith(prefix)), 3)


def merge_rows(rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], int]:
    """(rows with each score once, how many duplicates were dropped). Two rows are the same score when they
    share ``SAME_SCORE`` (the same pixels scored the same way); rows without a pixel hash are all kept."""
    kept: dict[tuple, dict[str, str]] = {}
    out: list[dict[str, str] | tuple] = []
    for row in rows:
        if not row.get("submission_sha256"):
            out.append(row)
            continue
        key = tuple(row.get(k, "") for k in SAME_SCORE)
        if key not in kept:
            kept[key] = row
            out.append(key)
        elif _priority(row) < _priority(kept[key]):
            kept[key] = {**row, "time": row.get("time") or kept[key].get("time", "")}
    merged = [kept[item] if isinstance(item, tuple) else item for item in out]
    return merged, len(rows) - len(merged)


def board_rows(directory: str | os.PathLike, experiments: bool = True, all_commits: bool = False,
               csv_rows: list[dict[str, str]] | None = None) -> tuple[list[dict[str, str]], list[str], dict[str, int]]:
    """(the merged rows of ``directory``/leaderboard.csv and of the DVC experiments, notes, counts).

    experiments: ask DVC (the project holding ``directory``); a failure is a note, never an error.
    csv_rows: the CSV's rows when already read (default: read them; a damaged CSV is a note too)."""
    notes = []
    if csv_rows is not None:
        rows = list(csv_rows)
    else:
        try:
            rows = read_rows(Path(directory) / "leaderboard.csv")[1]
        except DamagedLeaderboard as exc:
            rows = []
            notes.append(f"score runs: none shown ({exc})")
    counts = {"score_runs": len(rows), "experiments": 0}
    if experiments:
        repo = find_repo(directory)
        if repo is None:
            notes.append(f"experiments: none shown ({Path(directory).resolve()} is not inside a DVC project)")
        else:
            try:
                found = experiment_rows(dvc_exp_show(repo, all_commits))
            except RuntimeError as exc:
                notes.append(f"experiments: none shown ({exc}); the board holds the score runs of leaderboard.csv")
            else:
                counts["experiments"] = len(found)
                rows = rows + found
    merged, counts["merged"] = merge_rows(rows)
    return merged, notes, counts


def render(directory: str | os.PathLike, rows: list[dict[str, str]], notes: list[str],
           csv_rows: tuple[list[str], list[dict[str, str]]] | None = None) -> dict[str, Path]:
    """Write ``directory``/leaderboard.md and .png from ``rows``, and the CSV from ``csv_rows`` (columns, rows)
    when given. Everything is rendered before anything is written: a row the renders choke on leaves every
    file as it was."""
    directory = Path(directory)
    paths = {k: directory / f"leaderboard.{k}" for k in ("csv", "md", "png")}
    markdown, picture = render_markdown(rows, notes), render_plot(rows)
    if csv_rows is not None:
        write_rows(paths["csv"], *csv_rows)
    write_text(paths["md"], markdown)
    write_bytes(paths["png"], picture)
    return paths


def update_leaderboard(directory: str | os.PathLike, row: dict[str, str],
                       experiments: bool = True) -> dict[str, Path]:
    """Append ``row`` to ``directory``/leaderboard.csv and render leaderboard.md and .png from the CSV and
    every DVC experiment (``experiments``)."""
    columns, rows = read_rows(Path(directory) / "leaderboard.csv")
    rows.append(row)
    merged, notes, _ = board_rows(directory, experiments, csv_rows=rows)
    return render(directory, merged, notes, (columns, rows))


def summary(rows: list[dict[str, str]], counts: dict[str, int]) -> str:
    """What the board holds and its best row, in two lines."""
    text = (f"leaderboard: {len(rows)} rows ({counts['score_runs']} score runs in leaderboard.csv, "
            f"{counts['experiments']} from DVC experiments, {counts['merged']} duplicates merged)")
    scored = [r for r in rows if math.isfinite(_float(r, "mifid"))]
    if scored:
        best = min(scored, key=lambda r: (not _comparable(r), _float(r, "mifid")))
        text += (f"\n  best: MiFID {_float(best, 'mifid'):.4g} ({best.get('network')}, {best.get('reference') or 'crops'}"
                 f"; {best.get('source') or SCORE_RUN}; {best.get('model')})")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.leaderboard",
        description="Render the local leaderboard (leaderboard.md and leaderboard.png) from the score runs in "
        "leaderboard.csv and the score of every DVC experiment (dvc exp show), each submission once.",
        epilog="A damaged leaderboard.csv or a dvc that cannot answer leaves its rows out with a note (on stderr "
        "and in leaderboard.md) and the rest is rendered: exit 0. Exit 2 only when nothing can be written.",
    )
    parser.add_argument("--dir", default="submissions", metavar="DIR",
                        help="folder of leaderboard.csv, where leaderboard.md/.png go (default: %(default)s)")
    parser.add_argument("--no-experiments", action="store_true", help="only the score runs of leaderboard.csv")
    parser.add_argument("--all-commits", action="store_true",
                        help="also every commit's score and its experiments (dvc exp show --all-commits; slower)")
    args = parser.parse_args(argv)
    rows, notes, counts = board_rows(args.dir, not args.no_experiments, args.all_commits)
    try:
        paths = render(args.dir, rows, notes)
    except OSError as exc:
        print(f"error: cannot write the leaderboard in {args.dir}: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(summary(rows, counts))
    print(f"wrote {paths['md']} and {paths['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
