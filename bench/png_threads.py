"""How many threads encode PNGs fastest on this machine (``images.codec_threads`` uses a fixed number).

    .venv/bin/python bench/png_threads.py                 # 1, 2, 4, 8, 12 and 16 threads
    python3 bench/png_threads.py 4 8 4 8                  # alternate two counts
    python3 bench/png_threads.py 4 8 --switch-interval 0.0005   # threads hand the GIL over more often
    python3 bench/png_threads.py 4 8 16 --processes       # worker processes instead (no GIL shared)

Encodes 10,000 64x64 RGB images, as ``pipeline.generate`` writes them (``images.png_bytes``), on a thread
pool of each size, and prints the seconds. The images are 16x16 noise blown up 4x: between noise (which
compresses worst) and a generator's smooth pictures.

Why the other two options: PIL's encoder releases the GIL, the Python around it (about 15% of an image's
time) holds it, and a thread back from C waits for the GIL up to the interpreter's switch interval (5 ms)
while another runs Python; ``--switch-interval`` shortens that wait, ``--processes`` avoids it (forked
workers, 100 images per task; the pool's start is timed too).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.images import png_bytes  # noqa: E402


def encode_block(images: np.ndarray) -> list[bytes]:
    return [png_bytes(image) for image in images]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("threads", nargs="*", type=int, default=[1, 2, 4, 8, 12, 16], help="pool sizes, in order")
    ap.add_argument("--n", type=int, default=10_000, help="images per pool size")
    ap.add_argument("--switch-interval", type=float, metavar="S",
                    help=f"sys.setswitchinterval(S) first (Python's default: {sys.getswitchinterval()})")
    ap.add_argument("--processes", action="store_true", help="pools of forked processes instead of threads")
    args = ap.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, 16, 16, 3), dtype=np.uint8).repeat(4, 1).repeat(4, 2)
    expected = encode_block(images[:100])
    for workers in args.threads:
        t0 = time.perf_counter()
        if args.processes:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                blocks = list(pool.map(encode_block, [images[i:i + 100] for i in range(0, args.n, 100)]))
            encoded = [png for block in blocks for png in block]
        else:
            with ThreadPoolExecutor(workers) as pool:
                encoded = list(pool.map(png_bytes, images))
        seconds = time.perf_counter() - t0
        assert encoded[:100] == expected, "the pool's PNGs differ from one thread's"
        kind = "processes" if args.processes else "threads"
        print(f"{workers:3d} {kind}: {args.n:,} PNGs in {seconds:.2f} s (switch interval {sys.getswitchinterval()})",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
