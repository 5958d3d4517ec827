#!/usr/bin/env bash
# Install everything (if needed), then run the test suite. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
python -m pytest -q "$@"
