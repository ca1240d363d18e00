#!/usr/bin/env bash
# Sets up the environment if needed (scripts/setup_env.sh), then runs the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k roi_align`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
exec "$PY" -m pytest tests -q "$@"
