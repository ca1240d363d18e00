#!/usr/bin/env bash
# Every CUDA kernel, executed on the CPU: builds roi_ext with the CUDA emulation
# (setup.py reads ROI_EXT_CUDA_EMULATION=1: csrc/cuda/*.cu compiled as host C++,
# registered as torch.ops.roi_ext_cuda_emulated.*) in a scratch copy of the
# repository, then runs tests/test_cuda_emulation.py against that build: emulated
# CUDA == CPU kernels bit for bit, the kernels' counted work, and the CUDA
# behaviour for bad input. The emulation is never part of a wheel; the normal
# build in the repository is left alone.
#
#   bash scripts/test_emulation.sh            # build + tests (about a minute on 2 cores once built)
#   bash scripts/test_emulation.sh -k work    # extra arguments go to pytest
#
# ROI_EXT_EMULATION_DIR: the scratch folder (default: a new temporary one,
# removed at exit); set it to keep the build between runs (ninja rebuilds only
# what changed). PY: the python with torch (default .venv/bin/python, made by
# scripts/setup_env.sh when missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
if [ ! -x "$PY" ]; then
  source "$ROOT/scripts/setup_env.sh"
fi

if [ -n "${ROI_EXT_EMULATION_DIR:-}" ]; then
  WORK="$ROI_EXT_EMULATION_DIR"
  mkdir -p "$WORK"
else
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/roi_ext_emulation.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
fi

# The tracked files and the untracked ones git does not ignore (work in progress).
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$WORK")

echo "[emulation] building the CUDA emulation in $WORK"
start=$SECONDS
(cd "$WORK" && ROI_EXT_CUDA_EMULATION=1 FORCE_CPU=1 MAX_JOBS="${MAX_JOBS:-2}" \
  "$PY" setup.py -q build_ext --inplace > "$WORK/build.log" 2>&1) || { tail -n 60 "$WORK/build.log"; exit 1; }
echo "[emulation] built in $((SECONDS - start)) s"

cd "$WORK"
export PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "
import roi_ext, torch
assert roi_ext.__file__.startswith('$WORK'), roi_ext.__file__
torch.ops.roi_ext_cuda_emulated.work_counter()  # the emulated kernels are there
print('[emulation] testing', roi_ext.__file__)"
"$PY" -m pytest tests/test_cuda_emulation*.py -q -p no:cacheprovider "$@"
