#!/usr/bin/env bash
# Sets up the environment if needed (scripts/setup_env.sh), then runs the demo.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
exec "$PY" examples/demo.py "$@"
