#!/usr/bin/env bash
# Sourced by scripts/demo.sh and scripts/test.sh: makes a ready environment on a
# new machine, and does almost nothing when it is already there.
#   1. a virtualenv ($ROI_EXT_VENV, default .venv in the repository)
#   2. torch 2.13.0 (the CUDA build from PyPI) + torchvision 0.28.0 + test tools
#   3. roi_ext built in place (pip install -e), rebuilt only when csrc/ or
#      setup.py changed. The CUDA kernels are compiled too when nvcc is found.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROI_EXT_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
  echo "[setup] creating virtualenv $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
fi

if ! "$PY" - <<'PYEOF' 2>/dev/null
import sys, torch, torchvision
ok = torch.__version__.split("+")[0] == "2.13.0" and torchvision.__version__.split("+")[0] == "0.28.0"
sys.exit(0 if ok else 1)
PYEOF
then
  echo "[setup] installing torch 2.13.0 and torchvision 0.28.0 (first run only)"
  "$PY" -m pip install -q 'torch===2.13.0' torchvision==0.28.0
fi

# Test tools; onnx, onnxscript and onnxruntime only check the ONNX export (tests/test_onnx.py).
if ! "$PY" -c "import numpy, pytest, hypothesis, ninja, expecttest, onnx, onnxscript, onnxruntime" 2>/dev/null; then
  echo "[setup] installing test tools"
  "$PY" -m pip install -q numpy pytest hypothesis ninja expecttest onnx onnxscript onnxruntime
fi

# Rebuild when the compiled sources, the build script or the toolchain changed.
stamp_now="$(cd "$ROOT" && { find csrc setup.py -type f -print0 | sort -z | xargs -0 sha1sum; "$PY" -c "import torch, sys; print(torch.__version__, sys.version)"; } | sha1sum | cut -d' ' -f1)"
stamp_file="$VENV/.roi_ext-build-stamp"
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_now" ] || ! (cd /tmp && "$PY" -c "import roi_ext") 2>/dev/null; then
  if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
    export CUDA_HOME=/usr/local/cuda
  fi
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
  export MAX_JOBS="${MAX_JOBS:-2}"
  echo "[setup] building roi_ext (CUDA_HOME=${CUDA_HOME:-none})"
  start=$SECONDS
  log="$VENV/roi_ext-build.log"
  if ! "$PY" -m pip install --no-build-isolation --no-deps -e "$ROOT" > "$log" 2>&1; then
    tail -n 60 "$log"
    echo "[setup] build failed; full log: $log" >&2
    exit 1
  fi
  echo "[setup] built in $((SECONDS - start)) s (log: $log)"
  echo "$stamp_now" > "$stamp_file"
fi
