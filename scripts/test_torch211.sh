#!/usr/bin/env bash
# The test suite on the oldest torch the code must run on: torch 2.11 / torchvision 0.26, the versions of the
# GPU machines' image (requirements.txt pins 2.14.1 / 0.29.1 for everything else). Installs them, with the rest
# of requirements.txt, into .venv-torch211 (PyPI's CUDA build: several GB, a few minutes the first time; it runs
# on the CPU too), then runs pytest there. Extra arguments go to pytest. Not part of CI: run it after changes
# that touch torch APIs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
venv=.venv-torch211
[ -x $venv/bin/python ] || "$PY" -m venv $venv
stamp=$venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing torch 2.11.0, torchvision 0.26.0 and the rest of requirements.txt into $venv"
  $venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.11.0 torchvision==0.26.0 \
    $(grep -v -E '^(#|torch==|torchvision==)' requirements.txt | grep -v '^$')
  echo "$want" > "$stamp"
fi
$venv/bin/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
PATH="$PWD/$venv/bin:$PATH" $venv/bin/python -m pytest -q -p no:cacheprovider "$@"
