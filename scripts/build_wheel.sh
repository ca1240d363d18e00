#!/usr/bin/env bash
# Builds roi_ext's release wheel:
#   dist/roi_ext-<version>-cp310-abi3-linux_x86_64.whl
# one file for every Python >= 3.10 (CPython limited API) and every torch >= 2.11
# (LibTorch stable ABI), holding the CPU kernels and, when the CUDA toolkit is
# found (CUDA_HOME or /usr/local/cuda), the CUDA kernels for sm_75, 80, 86, 89,
# 90, 100 and 120 plus PTX of the newest, which newer GPUs compile at load time.
#
#   bash scripts/build_wheel.sh [OUT_DIR]          (default: dist/)
#
# Environment: PYTHON (default python3), TORCH_CUDA_ARCH_LIST (a shorter list for
# quick builds; keep a +PTX entry), FORCE_CPU=1 (no CUDA kernels), MAX_JOBS.
# The build runs in pip's isolated build environment (pyproject.toml pulls the
# build-time torch); the wheel does not depend on that torch's version.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/dist}"
PY="${PYTHON:-python3}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX}"
export MAX_JOBS="${MAX_JOBS:-2}"
case "$TORCH_CUDA_ARCH_LIST" in
  *+PTX*) ;;
  *) echo "build_wheel: TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST has no +PTX entry" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
rm -f "$OUT"/roi_ext-*.whl
# A clean copy of the tree, so no stale build/ or in-place library gets in.
SRC="$(mktemp -d)"
trap 'rm -rf "$SRC"' EXIT
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$SRC")
# ROI_EXT_PIP_ARGS: extra pip arguments, e.g. --no-build-isolation to build with
# the torch (>= 2.14) already installed for $PYTHON.
# shellcheck disable=SC2086
"$PY" -m pip wheel --no-deps ${ROI_EXT_PIP_ARGS:-} -w "$OUT" "$SRC"
ls "$OUT"/roi_ext-*-cp310-abi3-*.whl
