#!/usr/bin/env bash
# Quick start: install everything, then run the whole pipeline on the offline demo data.
#   bash scripts/demo.sh            (extra arguments go to `dvc repro`, e.g. --force)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
dvc repro "$@"
echo
echo "done: the prepared training set is data/prepared/dogs64.npz; look at data/prepared/grid.png"
