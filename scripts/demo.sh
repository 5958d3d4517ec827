#!/usr/bin/env bash
# Quick start: install everything, then run the whole pipeline on the offline demo data.
#   bash scripts/demo.sh            (extra arguments go to `dvc repro`, e.g. --force)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
dvc repro "$@"
echo
echo "done: submissions/images.zip holds 10,000 generated images (look at submissions/images_grid.png);"
echo "      its score is in metrics/score.json and submissions/leaderboard.md."
echo "      Also worth a look: data/prepared/grid.png (the training crops), models/samples/progress.gif (training
      progress), submissions/walk.gif (latent walks), reports/memorization.html (is it a memorizer?)."
