"""Prepare-stage benchmark at full scale: the real Stanford Dogs geometry, synthesized photos.

    .venv/bin/python bench/prepare_bench.py \\
        --annotations-zip ../shared/data/stanford-dogs-annotations/Annotation.zip --work bench/out/prepare

1. Unzips the real annotations (20,580 XML files, 22,126 boxes) into WORK/Annotation/ and synthesizes
   one JPEG per annotation at exactly its annotated <size>, quality 75 (pipeline.demo_data's
   ``synthesize_photo`` + ``jpeg_bytes``), into WORK/all-dogs/<id>.jpg, on every core. A marker file
   written last (WORK/SYNTH.json) makes reruns skip this step.
2. Times ``prepare()`` with the default PrepareConfig (workers=0: every core) in a child process and
   samples the summed memory of that child and its pool workers every 50 ms.
3. Times, in the same run, ``prepare()`` with workers=1 (draft-mode decoding, no extra cores) and a
   naive single-process loop (full decode, crop, LANCZOS resize), to split the speed-up into its parts.
4. Checks the kept/skipped box counts against an independent count from the XML, checks that the
   crops of workers=1 and workers=all are identical and close to the naive crops, prints a table and
   writes WORK/results.json.

The photo files are read once before any timing (page cache warm for every contender alike).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.annotations import list_annotation_files, parse_annotation  # noqa: E402

DEFAULT_ZIP = REPO.parent / "shared" / "data" / "stanford-dogs-annotations" / "Annotation.zip"
MARKER = "SYNTH.json"  # written last into WORK: its presence (with matching settings) means WORK is complete
SAMPLE_EVERY_S = 0.05
NAIVE_SUBSET = 5000
NAIVE_BUDGET_S = 180.0
COMPARE_PHOTOS = 1000  # naive crops of this many photos are kept to compare with prepare's


# ----------------------------------------------------------------------------------------------------------
# 1. data
# ----------------------------------------------------------------------------------------------------------

def _synth_one(job: tuple[str, str, str, int, int]) -> tuple[int, int]:
    """Worker: one annotation -> one JPEG (written atomically). Returns (bytes, pixels)."""
    from pipeline.demo_data import jpeg_bytes, synthesize_photo

    ann_path, out_path, breed, seed, quality = job
    out = Path(out_path)
    ann = parse_annotation(Path(ann_path).read_bytes(), out.stem, breed)
    key = int.from_bytes(hashlib.sha256(out.stem.encode()).digest()[:8], "little")
    rng = np.random.default_rng([seed, key])
    data = jpeg_bytes(synthesize_photo(ann.width, ann.height, list(ann.boxes), ann.breed, rng), quality)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return len(data), ann.width * ann.height


def build_data(zip_path: Path, work: Path, seed: int, quality: int, jobs: int) -> dict:
    """Unzip the annotations and synthesize the photos, unless WORK already holds them (marker)."""
    from tqdm import tqdm

    zip_stat = zip_path.stat()
    settings = {"zip": str(zip_path.resolve()), "zip_bytes": zip_stat.st_size, "seed": seed, "quality": quality,
                "by": "bench/prepare_bench.py: synthesize_photo, rng seeded by (seed, sha256(photo id))"}
    marker = work / MARKER
    if marker.exists():
        done = json.loads(marker.read_text())
        images = work / "all-dogs"
        n_jpg = sum(1 for e in os.scandir(images) if e.name.endswith(".jpg")) if images.is_dir() else -1
        if done.get("settings") == settings and n_jpg == done.get("photos"):
            print(f"data: {work} already complete ({n_jpg} photos, {MARKER}); synthesis skipped")
            return {**done, "skipped": True}
        print(f"data: {marker} does not match ({n_jpg} photos on disk); rebuilding")
        marker.unlink()
    t0 = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "Annotation", ignore_errors=True)
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(work)
    ann_dir = work / "Annotation"
    files = list_annotation_files(ann_dir)
    images = work / "all-dogs"
    images.mkdir(exist_ok=True)
    wanted = {f"{f.photo_id}.jpg" for f in files}
    for e in os.scandir(images):  # anything that does not belong to this annotation set
        if e.name not in wanted:
            os.unlink(e.path)
    jobs_list = [(str(f.path), str(images / f"{f.photo_id}.jpg"), f.breed, seed, quality) for f in files]
    t1 = time.perf_counter()
    with multiprocessing.get_context().Pool(jobs) as pool:
        sizes = list(tqdm(pool.imap_unordered(_synth_one, jobs_list, chunksize=16), total=len(jobs_list),
                          unit="photo", desc="synthesize", smoothing=0.05))
    summary = {
        "settings": settings,
        "photos": len(jobs_list),
        "unzip_s": round(t1 - t0, 2),
        "synthesis_s": round(time.perf_counter() - t1, 2),
        "synthesis_processes": jobs,
    }
    marker.write_text(json.dumps(summary, indent=2) + "\n")  # last: the folder is complete
    print(f"data: {len(files)} annotations unzipped in {summary['unzip_s']} s, {len(sizes)} photos synthesized "
          f"in {summary['synthesis_s']} s on {jobs} processes")
    return {**summary, "skipped": False}


def describe_data(work: Path) -> tuple[dict, list]:
    """Sizes of the JPEGs and an independent count of what the default box limits keep (from the XML)."""
    files = list_annotation_files(work / "Annotation")
    anns = [parse_annotation(f.path.read_bytes(), f.photo_id, f.breed) for f in files]
    sizes = [e.stat().st_size for e in os.scandir(work / "all-dogs") if e.name.endswith(".jpg")]
    counts = {"boxes": 0, "kept": 0, "zero_area_box": 0, "box_outside_image": 0, "aspect_out_of_range": 0}
    for a in anns:
        for b in a.boxes:
            counts["boxes"] += 1
            if b.xmax < b.xmin or b.ymax < b.ymin:
                counts["zero_area_box"] += 1
                continue
            # clip the half-open box [xmin, xmax + 1) to the photo, which has exactly the annotated size
            x0, y0 = max(b.xmin, 0), max(b.ymin, 0)
            x1, y1 = min(b.xmax + 1, a.width), min(b.ymax + 1, a.height)
            if x1 <= x0 or y1 <= y0:
                counts["box_outside_image"] += 1
            elif not 0.25 <= (x1 - x0) / (y1 - y0) <= 5.0:
                counts["aspect_out_of_range"] += 1
            else:
                counts["kept"] += 1
    px = np.array([a.width * a.height for a in anns], dtype=np.float64)
    info = {
        "annotation_files": len(files),
        "breeds": len({f.breed for f in files}),
        "photos": len(sizes),
        "jpeg_total_mb": round(sum(sizes) / 2**20, 1),
        "jpeg_mean_kb": round(sum(sizes) / max(1, len(sizes)) / 1024, 1),
        "mean_width": round(float(np.mean([a.width for a in anns])), 1),
        "mean_height": round(float(np.mean([a.height for a in anns])), 1),
        "max_size": max(((a.width, a.height) for a in anns), key=lambda s: s[0] * s[1]),
        "total_megapixels": round(float(px.sum()) / 1e6, 1),
        "expected_boxes": counts,
    }
    return info, anns


def warm_cache(work: Path) -> float:
    """Read every photo and annotation once, so no contender pays for cold disk reads."""
    t0 = time.perf_counter()
    n = 0
    for root in (work / "all-dogs", work / "Annotation"):
        for dirpath, _, names in os.walk(root):
            for name in names:
                with open(os.path.join(dirpath, name), "rb") as fh:
                    n += len(fh.read())
    return time.perf_counter() - t0


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and its waited-for children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def wait_quiet(max_wait_s: float, quiet_s: int = 5, max_busy: float = 0.15) -> float:
    """Wait until other processes have used under ``max_busy`` cores for ``quiet_s`` seconds in a row.

    Gives up after ``max_wait_s`` (0: do not wait). Returns the cores the others used in the last second.
    """
    t0, streak, last = time.perf_counter(), 0, 0.0
    told = False
    while True:
        b0 = busy_cpu_s()
        time.sleep(1.0)
        last = busy_cpu_s() - b0
        streak = streak + 1 if last < max_busy else 0
        if streak >= quiet_s or time.perf_counter() - t0 >= max_wait_s:
            if streak < quiet_s and max_wait_s > 0:
                print(f"  machine still busy ({last:.2f} cores used by others); timing anyway", flush=True)
            return last
        if not told and last >= max_busy:
            print(f"  waiting for the machine to be quiet (others use {last:.2f} cores; up to {max_wait_s:.0f} s) ...",
                  flush=True)
            told = True


# ----------------------------------------------------------------------------------------------------------
# 2. prepare() in a child process, memory sampled from here
# ----------------------------------------------------------------------------------------------------------

def _child(work: Path, workers: int, save: Path | None) -> int:
    """Run in the child: time prepare(), report, wait for the parent's go, then save the crops."""
    from pipeline.config import build_config
    from pipeline.prepare import prepare

    cfg = build_config("prepare", {"workers": workers})
    t0 = time.perf_counter()
    ds, report = prepare(work / "all-dogs", work / "Annotation", cfg, progress=False)
    wall = time.perf_counter() - t0
    self_ru = resource.getrusage(resource.RUSAGE_SELF)
    kids_ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers, joined when the pool closed
    out = {
        "wall_s": wall,
        "workers_used": cfg.workers or os.cpu_count() or 1,
        "crops": len(ds),
        "images_shape": list(ds.images.shape),
        "images_dtype": str(ds.images.dtype),
        "main_maxrss_mb": self_ru.ru_maxrss / 1024,  # KiB on Linux
        "max_worker_maxrss_mb": kids_ru.ru_maxrss / 1024,
        "cpu_s_main": self_ru.ru_utime + self_ru.ru_stime,
        "cpu_s_workers": kids_ru.ru_utime + kids_ru.ru_stime,
        "report": {k: v for k, v in report.items() if k != "skips"},
    }
    print("PREPARED " + json.dumps(out), flush=True)
    sys.stdin.readline()  # the parent has stopped sampling memory
    if save is not None:
        np.savez(save, images=ds.images, sources=ds.sources, labels=ds.labels)
    return 0


def _tree_memory(pid: int) -> tuple[int, int, int]:
    """(summed RSS, summed PSS, process count) of ``pid`` and all its descendants, in bytes."""
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0, 0
    rss = pss = n = 0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
            n += 1
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return rss, pss, n


def run_prepare(work: Path, workers: int, save: Path | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-workers", str(workers), "--work", str(work)]
    if save is not None:
        cmd += ["--child-save", str(save)]
    peak = {"rss": 0, "pss": 0, "procs": 0, "samples": 0}
    stop = threading.Event()
    busy0, own0 = busy_cpu_s(), own_cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def sample() -> None:
        while not stop.is_set():
            rss, pss, n = _tree_memory(proc.pid)
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
            peak["procs"] = max(peak["procs"], n)
            peak["samples"] += 1
            stop.wait(SAMPLE_EVERY_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = None
    assert proc.stdout is not None and proc.stdin is not None
    for line in proc.stdout:
        if line.startswith("PREPARED "):
            child_wall = time.perf_counter() - t0
            stop.set()
            sampler.join()
            result = json.loads(line[len("PREPARED "):])
            proc.stdin.write("go\n")
            proc.stdin.flush()
        else:
            print(line, end="")
    proc.wait()
    stop.set()
    # CPU that other processes used meanwhile (child start to exit, saving included: an upper bound)
    other = (busy_cpu_s() - busy0) - (own_cpu_s() - own0)
    if proc.returncode != 0 or result is None:
        raise SystemExit(f"prepare child (workers={workers}) failed with exit code {proc.returncode}")
    result.update(
        process_wall_s=child_wall,  # start of the child's interpreter to prepare() returning
        peak_tree_rss_mb=peak["rss"] / 2**20,
        peak_tree_pss_mb=peak["pss"] / 2**20,
        max_processes=peak["procs"],
        memory_samples=peak["samples"],
        other_processes_cpu_s=max(0.0, other),
        child_total_s=time.perf_counter() - t0,
    )
    return result


# ----------------------------------------------------------------------------------------------------------
# 3. the naive loop
# ----------------------------------------------------------------------------------------------------------

def naive(work: Path, mode: str, seed: int) -> tuple[dict, dict]:
    """Single process: for each photo, full decode, crop each box (clipped), LANCZOS to 64x64.

    Photos are visited in a fixed random order; the first NAIVE_SUBSET of that order is the subset.
    Returns the figures and the crops of the first COMPARE_PHOTOS photos ({"<id>#<box>": array}).
    """
    from PIL import Image
    from tqdm import tqdm

    busy0, own0 = busy_cpu_s(), own_cpu_s()
    t0 = time.perf_counter()
    files = list_annotation_files(work / "Annotation")
    images = work / "all-dogs"
    order = np.random.default_rng(seed).permutation(len(files))
    t_list = time.perf_counter() - t0
    kept: dict[str, np.ndarray] = {}
    crops = photos = 0
    n_total = len(files)
    limit = n_total if mode == "all" else min(NAIVE_SUBSET, n_total)
    subset = mode == "subset"
    t_loop = time.perf_counter()
    bar = tqdm(total=n_total if mode != "subset" else limit, unit="photo", desc="naive", smoothing=0.05)
    for k, idx in enumerate(order):
        if k == limit:
            elapsed = time.perf_counter() - t_loop
            projected = t_list + elapsed * n_total / limit
            if mode == "subset" or projected > NAIVE_BUDGET_S:
                subset = True
                break
            limit = n_total  # auto, and the whole set fits the budget: go on
        f = files[int(idx)]
        ann = parse_annotation(f.path.read_bytes(), f.photo_id, f.breed)
        im = Image.open(images / f"{f.photo_id}.jpg").convert("RGB")
        w, h = im.size
        for i, b in enumerate(ann.boxes):
            x0, y0 = max(b.xmin, 0), max(b.ymin, 0)
            x1, y1 = min(b.xmax + 1, w), min(b.ymax + 1, h)
            if x1 <= x0 or y1 <= y0:
                continue
            crop = np.asarray(im.crop((x0, y0, x1, y1)).resize((64, 64), Image.Resampling.LANCZOS))
            crops += 1
            if k < COMPARE_PHOTOS:
                kept[f"{f.photo_id}#{i}"] = crop
        photos += 1
        bar.update()
    bar.close()
    loop_s = time.perf_counter() - t_loop
    other = (busy_cpu_s() - busy0) - (own_cpu_s() - own0)
    measured = t_list + loop_s
    scale = n_total / photos
    return {
        "photos_timed": photos,
        "photos_total": n_total,
        "scope": "subset" if subset else "all",
        "measured_s": measured,
        "wall_s": t_list + loop_s * scale,  # all photos (scaled from the subset when scope is subset)
        "crops_timed": crops,
        "other_processes_cpu_s": max(0.0, other),
    }, kept


# ----------------------------------------------------------------------------------------------------------
# 4. checks, table, JSON
# ----------------------------------------------------------------------------------------------------------

def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    import PIL

    return {
        "cpu_model": model or platform.processor(),
        "nproc": os.cpu_count(),
        "sched_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory": mem,
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def compare(saved_all: Path, saved_one: Path, naive_crops: dict) -> dict:
    with np.load(saved_all) as fa, np.load(saved_one) as fb:  # NpzFile reads the array on every [key]: once here
        a = {k: fa[k] for k in ("images", "sources", "labels")}
        b = {k: fb[k] for k in ("images", "sources", "labels")}
    same = all(np.array_equal(a[k], b[k]) for k in ("images", "sources", "labels"))
    index = {s: i for i, s in enumerate(a["sources"].tolist())}
    diffs = [np.abs(a["images"][index[k]].astype(np.int16) - v.astype(np.int16)).mean()
             for k, v in naive_crops.items() if k in index]
    return {
        "workers_1_equals_all": same,
        "naive_crops_compared": len(diffs),
        "naive_mean_abs_diff": round(float(np.mean(diffs)), 2) if diffs else None,
        "naive_max_crop_mean_abs_diff": round(float(np.max(diffs)), 2) if diffs else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotations-zip", type=Path, default=DEFAULT_ZIP, metavar="ZIP",
                    help="Stanford Dogs Annotation.zip (Annotation/<wnid>-<Breed>/<wnid>_<n>) (default: %(default)s)")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "prepare", metavar="DIR",
                    help="work folder: Annotation/, all-dogs/, results.json (default: %(default)s)")
    ap.add_argument("--naive", choices=["auto", "all", "subset"], default="auto",
                    help=f"naive loop on all photos, on a fixed random subset of {NAIVE_SUBSET} scaled up, or "
                    f"auto: all unless the first {NAIVE_SUBSET} project to over {NAIVE_BUDGET_S:.0f} s (default: auto)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthesized photos and of the naive subset")
    ap.add_argument("--quality", type=int, default=75, help="JPEG quality of the synthesized photos (default: 75)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="synthesis processes (default: all cores)")
    ap.add_argument("--target-s", type=float, default=30.0, help="wall-time target of prepare (default: 30)")
    ap.add_argument("--target-mb", type=float, default=2048.0, help="peak memory target of prepare (default: 2048)")
    ap.add_argument("--target-speedup", type=float, default=3.0, help="speed-up target over naive (default: 3)")
    ap.add_argument("--quiet-wait", type=float, default=300.0, metavar="S",
                    help="before each timing, wait up to S seconds for other processes to leave the CPUs idle "
                    "(0: do not wait; default: %(default)s)")
    ap.add_argument("--child-workers", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-save", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    work = args.work.resolve()
    if args.child_workers is not None:
        return _child(work, args.child_workers, args.child_save)

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    phases: dict[str, float] = {}
    t_phase = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal t_phase
        now = time.perf_counter()
        phases[name] = round(now - t_phase, 2)
        t_phase = now

    load_at_start = Path("/proc/loadavg").read_text().split()[:3]
    mach = machine()
    print(f"machine: {mach['cpu_model']}, {mach['nproc']} CPUs, {mach['memory']}, Python {mach['python']}, "
          f"Pillow {mach['pillow']}")
    print(f"load average at start: {' '.join(load_at_start)}")
    data = build_data(args.annotations_zip, work, args.seed, args.quality, args.jobs)
    phase("data")
    info, _ = describe_data(work)
    phase("describe")
    print(f"data: {info['photos']} JPEGs, {info['jpeg_total_mb']} MiB, mean {info['jpeg_mean_kb']} KiB, "
          f"mean {info['mean_width']}x{info['mean_height']} px, largest {info['max_size'][0]}x{info['max_size'][1]}")
    print(f"page cache warmed in {warm_cache(work):.1f} s")
    phase("warm_cache")

    saved_all, saved_one = work / "crops_workers_all.npz", work / "crops_workers_1.npz"
    print("timing prepare(), default config (workers=0: all cores) ...", flush=True)
    wait_quiet(args.quiet_wait)
    phase("wait_quiet_1")
    p_all = run_prepare(work, 0, saved_all)
    phase("prepare_all_cores")
    print(f"  {p_all['wall_s']:.2f} s, peak tree RSS {p_all['peak_tree_rss_mb']:.0f} MiB", flush=True)
    print("timing prepare(), workers=1 ...", flush=True)
    wait_quiet(args.quiet_wait)
    phase("wait_quiet_2")
    p_one = run_prepare(work, 1, saved_one)
    phase("prepare_1_worker")
    print(f"  {p_one['wall_s']:.2f} s, peak tree RSS {p_one['peak_tree_rss_mb']:.0f} MiB", flush=True)
    print("timing the naive loop (one process, full decode, crop, LANCZOS) ...", flush=True)
    wait_quiet(args.quiet_wait)
    phase("wait_quiet_3")
    nv, naive_crops = naive(work, args.naive, args.seed)
    phase("naive")
    print(f"  {nv['measured_s']:.1f} s on {nv['photos_timed']} photos ({nv['scope']})", flush=True)
    checks = compare(saved_all, saved_one, naive_crops)
    phase("compare")

    exp = info["expected_boxes"]
    rep = p_all["report"]
    n = info["annotation_files"]
    checks.update(
        boxes_found=rep["boxes_found"],
        boxes_expected=exp["boxes"],
        boxes_kept=rep["boxes_kept"],
        boxes_kept_expected=exp["kept"],
        counts_match=(rep["boxes_found"] == exp["boxes"] and rep["boxes_kept"] == exp["kept"]
                      and rep["skipped"].get("aspect_out_of_range", 0) == exp["aspect_out_of_range"]),
        skipped=rep["skipped"],
        crops_shape=p_all["images_shape"],
    )
    speedup = nv["wall_s"] / p_all["wall_s"]
    cores = os.cpu_count() or 1

    def disturbed(other_cpu_s: float, wall_s: float) -> bool:
        """Other processes took over 5% of the machine's CPU time while this was timed."""
        return other_cpu_s > 0.05 * wall_s * cores

    disturbance = {
        "prepare_all_cores": disturbed(p_all["other_processes_cpu_s"], p_all["child_total_s"]),
        "prepare_1_worker": disturbed(p_one["other_processes_cpu_s"], p_one["child_total_s"]),
        "naive": disturbed(nv["other_processes_cpu_s"], nv["measured_s"]),
    }
    targets = {
        "wall_s": {"target": args.target_s, "value": round(p_all["wall_s"], 2),
                   "met": p_all["wall_s"] <= args.target_s},
        "peak_memory_mb": {"target": args.target_mb, "value": round(p_all["peak_tree_rss_mb"]),
                           "met": p_all["peak_tree_rss_mb"] <= args.target_mb},
        "speedup_vs_naive": {"target": args.target_speedup, "value": round(speedup, 2),
                             "met": speedup >= args.target_speedup},
    }

    def row(r: dict) -> dict:
        return {
            "wall_s": round(r["wall_s"], 2),
            "photos_per_s": round(n / r["wall_s"], 1),
            "crops_per_s": round(r["crops"] / r["wall_s"], 1),
            "process_wall_s": round(r["process_wall_s"], 2),
            "workers": r["workers_used"],
            "cpu_s": round(r["cpu_s_main"] + r["cpu_s_workers"], 1),
            "peak_tree_rss_mb": round(r["peak_tree_rss_mb"]),
            "peak_tree_pss_mb": round(r["peak_tree_pss_mb"]),
            "main_maxrss_mb": round(r["main_maxrss_mb"]),
            "max_worker_maxrss_mb": round(r["max_worker_maxrss_mb"]),
            "max_processes": r["max_processes"],
            "memory_samples": r["memory_samples"],
            "other_processes_cpu_s": round(r["other_processes_cpu_s"], 1),
        }

    results = {
        "started": started,
        "command": " ".join([".venv/bin/python"] + (sys.argv if argv is None else ["bench/prepare_bench.py", *argv])),
        "machine": mach,
        "data": {**info, "synthesis": data},
        "memory_method": (f"summed RSS (and PSS) of the prepare child process and all its descendants, read from "
                          f"/proc/<pid>/smaps_rollup every {SAMPLE_EVERY_S * 1000:.0f} ms until prepare() returns; "
                          "ru_maxrss of the main process and of the largest worker given beside it"),
        "timing_method": "perf_counter around prepare() inside the child (imports and interpreter start excluded; "
                         "process_wall_s includes them); page cache warm",
        "prepare_all_cores": row(p_all),
        "prepare_1_worker": row(p_one),
        "naive": {**{k: (round(v, 2) if isinstance(v, float) else v) for k, v in nv.items()},
                  "photos_per_s": round(n / nv["wall_s"], 1)},
        "speedup": {
            "naive_over_prepare": round(speedup, 2),
            "naive_over_prepare_1_worker": round(nv["wall_s"] / p_one["wall_s"], 2),
            "prepare_1_worker_over_all": round(p_one["wall_s"] / p_all["wall_s"], 2),
        },
        "checks": checks,
        "targets": targets,
        "disturbed_by_other_processes": disturbance,
        "load_average_at_start": load_at_start,
        "phases_s": phases,
    }
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for f in (saved_all, saved_one):
        f.unlink(missing_ok=True)

    a, o = results["prepare_all_cores"], results["prepare_1_worker"]
    nvr = results["naive"]
    print()
    print(f"{'':34s} {'wall s':>8s} {'photos/s':>9s} {'peak RSS MiB':>13s} {'PSS MiB':>8s} {'vs naive':>9s}")
    print(f"{'prepare, workers=all (' + str(a['workers']) + ')':34s} {a['wall_s']:8.2f} {a['photos_per_s']:9.1f} "
          f"{a['peak_tree_rss_mb']:13d} {a['peak_tree_pss_mb']:8d} {speedup:8.2f}x")
    print(f"{'prepare, workers=1':34s} {o['wall_s']:8.2f} {o['photos_per_s']:9.1f} {o['peak_tree_rss_mb']:13d} "
          f"{o['peak_tree_pss_mb']:8d} {results['speedup']['naive_over_prepare_1_worker']:8.2f}x")
    label = "naive loop" + (f" ({nvr['photos_timed']} photos, scaled)" if nvr["scope"] == "subset" else " (all photos)")
    print(f"{label:34s} {nvr['wall_s']:8.2f} {nvr['photos_per_s']:9.1f} {'-':>13s} {'-':>8s} {1.0:8.2f}x")
    print(f"gain from draft decoding (1 worker): {results['speedup']['naive_over_prepare_1_worker']:.2f}x, "
          f"from {a['workers']} workers: {results['speedup']['prepare_1_worker_over_all']:.2f}x")
    print(f"boxes: {rep['boxes_found']} found (expected {exp['boxes']}), {rep['boxes_kept']} kept "
          f"(expected {exp['kept']}), skipped {rep['skipped'] or 'none'} -> "
          f"{'OK' if checks['counts_match'] else 'MISMATCH'}")
    print(f"crops workers=1 == workers=all: {checks['workers_1_equals_all']}; vs naive crops: mean abs diff "
          f"{checks['naive_mean_abs_diff']} (worst crop {checks['naive_max_crop_mean_abs_diff']}) over "
          f"{checks['naive_crops_compared']} crops, 0..255 scale")
    print(f"memory: {results['memory_method']}")
    print("CPU used by other processes meanwhile (machine busy minus this benchmark): "
          f"prepare all cores {a['other_processes_cpu_s']} s, workers=1 {o['other_processes_cpu_s']} s, "
          f"naive {round(nv['other_processes_cpu_s'], 1)} s")
    print(f"phases (s): {phases}")
    if any(disturbance.values()):
        print("WARNING: other processes took over 5% of the CPUs while timing "
              f"{', '.join(k for k, v in disturbance.items() if v)}: those figures are too slow; "
              "run again on a quiet machine")
    for name, t in targets.items():
        print(f"target {name}: {t['value']} vs {t['target']} -> {'met' if t['met'] else 'MISSED'}")
    print(f"wrote {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
