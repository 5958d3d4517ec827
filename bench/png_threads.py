"""How many threads encode PNGs fastest on this machine (``images.codec_threads`` uses a fixed number).

    .venv/bin/python bench/png_threads.py                 # 1, 2, 4, 8, 12 and 16 threads
    python3 bench/png_threads.py 4 8 4 8                  # alternate two counts

Encodes 10,000 64x64 RGB images, as ``pipeline.generate`` writes them (``images.png_bytes``), on a thread
pool of each size, and prints the seconds. The images are 16x16 noise blown up 4x: between noise (which
compresses worst) and a generator's smooth pictures.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.images import png_bytes  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("threads", nargs="*", type=int, default=[1, 2, 4, 8, 12, 16], help="pool sizes, in order")
    ap.add_argument("--n", type=int, default=10_000, help="images per pool size")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, 16, 16, 3), dtype=np.uint8).repeat(4, 1).repeat(4, 2)
    for workers in args.threads:
        with ThreadPoolExecutor(workers) as pool:
            t0 = time.perf_counter()
            list(pool.map(png_bytes, images))
            seconds = time.perf_counter() - t0
        print(f"{workers:3d} threads: {args.n:,} PNGs in {seconds:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
