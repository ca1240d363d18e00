#!/usr/bin/env bash
# The test command (README; .ci/run calls it). Sets up what is missing
# (scripts/setup_env.sh), then, against the installed roi_ext wheel:
#   1. torch-abi-audit: the wheel must use only the LibTorch stable ABI and be
#      abi3-compliant;
#   2. the whole test suite under torch 2.14.1 + torchvision 0.29.1;
#   3. every CUDA kernel executed on the CPU (scripts/test_emulation.sh: the
#      emulation build, whose results must equal the CPU kernels');
#   4. the suite again under torch 2.11.0, the oldest supported release (no
#      torchvision there: its comparisons are skipped). ROI_EXT_FLOOR=0 skips it.
# Extra arguments go to pytest (both runs), e.g. `bash scripts/test.sh -k roi_align`.
set -euo pipefail
export ROI_EXT_FLOOR="${ROI_EXT_FLOOR:-1}"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"

echo "[test] torch-abi-audit --check both roi_ext"
"$VENV/bin/torch-abi-audit" --check both -v roi_ext

# -P: the source tree must not shadow the installed package.
echo "[test] $("$PY" -c 'import torch; print("torch", torch.__version__)') + torchvision: full suite"
status=0
"$PY" -P -m pytest tests -q -p no:cacheprovider "$@" || status=$?
echo "[test] the CUDA kernels through the emulation build"
PY="$PY" bash "$ROOT/scripts/test_emulation.sh" "$@" || status=$?
if [ "$ROI_EXT_FLOOR" = "1" ]; then
  echo "[test] $("$FLOOR_PY" -c 'import torch; print("torch", torch.__version__)') (the floor), no torchvision"
  "$FLOOR_PY" -P -m pytest tests -q -p no:cacheprovider "$@" || status=$?
fi
exit $status
