#!/usr/bin/env bash
# Run the current experiment's Kaggle kernel as Kaggle would, on this machine (its GPU if it has one): the demo
# data laid out like Kaggle's mount in a fake /kaggle tree, the kernel built from params.yaml, then run from a
# folder where the repo's `pipeline` cannot be imported. Extra arguments go to `python -m pipeline.kernel build`,
# e.g.  bash scripts/kernel_smoke.sh --set train.epochs=1 --set generate.n=1000
# PYTHON picks the interpreter (default: the project's .venv when there is one, else python). Prints where the outputs are; exit status 0 when the kernel
# finished and its images.zip passed its check.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
default=python
[ -x .venv/bin/python ] && default=.venv/bin/python  # made by scripts/demo.sh or scripts/test.sh
PY=$("${PYTHON:-$default}" -c "import sys; print(sys.executable)")  # absolute: the kernel runs elsewhere
work=$(mktemp -d "${TMPDIR:-/tmp}/kernel-smoke-XXXXXX")
comp="$work/kaggle/input/generative-dog-images"
"$PY" -m pipeline.download --out "$work/raw" --set source=demo >/dev/null
mkdir -p "$comp/all-dogs" "$comp/annotation" "$work/kaggle/working" "$work/run"
ln -s "$work/raw/all-dogs" "$comp/all-dogs/all-dogs"
ln -s "$work/raw/Annotation" "$comp/annotation/Annotation"
"$PY" -m pipeline.kernel build --out-dir "$work/kernels" "$@"
kernel=$(ls "$work"/kernels/*/kernel.py)
(cd "$work/run" && env -u PYTHONPATH KAGGLE_ROOT="$work/kaggle" "$PY" "$kernel")
echo "outputs: $work/kaggle/working ($(ls "$work/kaggle/working" | wc -l) files)"
