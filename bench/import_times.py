"""What starting a stage costs before it does any work: imports and CUDA start, each in a fresh process.

    python bench/import_times.py [--runs 2] [--json FILE]

Every row runs ``setup`` then times ``timed`` inside a new interpreter (so nothing is already imported),
``--runs`` times; the first run of a row may include reading files from a cold disk. Rows:

- ``import torch`` alone;
- ``pipeline.generate`` and ``pipeline.score`` (their module imports, torch included);
- ``torchvision`` after torch: what ``score.network: inception`` adds when it builds pytorch-fid's network
  (torchvision's ``ops`` import ``torch._dynamo``, which brings sympy and, where installed, triton);
- ``torch._dynamo`` after torch, to see how much of the torchvision row is dynamo;
- CUDA start (``torch.cuda.init()`` and a first tensor on the device), where there is a GPU.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

ROWS: list[tuple[str, str, str]] = [  # (name, setup, timed)
    ("import torch", "", "import torch"),
    ("import pipeline.generate", "", "import pipeline.generate"),
    ("import pipeline.score", "", "import pipeline.score"),
    ("torchvision, after torch", "import torch", "import torchvision"),
    ("torch._dynamo, after torch", "import torch", "import torch._dynamo"),
    ("pytorch_fid.inception, after pipeline.score", "import pipeline.score", "import pytorch_fid.inception"),
]
CUDA_ROW = ("CUDA start, after torch", "import torch", "torch.cuda.init(); torch.zeros(1, device='cuda')")

PROBE = """
import sys, time
{setup}
t0 = time.perf_counter()
{timed}
print(time.perf_counter() - t0, len(sys.modules), "triton" in sys.modules)
"""


def time_row(setup: str, timed: str) -> tuple[float, int, bool]:
    """(seconds, modules loaded at the end, whether triton got imported), from a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup, timed=timed)], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[-3]), int(out[-2]), out[-1] == "True"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2, help="fresh processes per row (default 2)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import torch  # only to ask whether there is a GPU; each row runs in its own process

    rows = ROWS + ([CUDA_ROW] if torch.cuda.is_available() else [])
    results = {}
    print(f"{'':46s} {'seconds per run':>24s}  modules  triton")
    for name, setup, timed in rows:
        runs = [time_row(setup, timed) for _ in range(args.runs)]
        results[name] = {"seconds": [round(r[0], 3) for r in runs], "modules": runs[-1][1], "triton": runs[-1][2]}
        secs = ", ".join(f"{r[0]:.2f}" for r in runs)
        print(f"{name:46s} {secs:>24s}  {runs[-1][1]:7d}  {runs[-1][2]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
