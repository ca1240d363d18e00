#!/usr/bin/env bash
# Sourced by scripts/demo.sh and scripts/test.sh: makes a ready environment on a
# new machine, and does almost nothing when it is already there.
#   1. a virtualenv ($ROI_EXT_VENV, default .venv) with torch 2.14.1,
#      torchvision 0.29.1 and the test tools;
#   2. roi_ext's wheel (.whl/, built by pip wheel from this tree, rebuilt only
#      when csrc/, roi_ext/, setup.py or pyproject.toml changed), installed
#      into that virtualenv: the tests run against the installed wheel, never
#      the source tree.
#   3. with ROI_EXT_FLOOR=1: a second virtualenv ($ROI_EXT_FLOOR_VENV, default
#      .venv-floor) with torch 2.11.0, the oldest release the wheel supports,
#      and no torchvision, with the same wheel installed.
# The CUDA kernels are compiled when the CUDA toolkit is found (CUDA_HOME or
# /usr/local/cuda), for TORCH_CUDA_ARCH_LIST (default here "8.0;9.0+PTX").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROI_EXT_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
FLOOR_VENV="${ROI_EXT_FLOOR_VENV:-$ROOT/.venv-floor}"
FLOOR_PY="$FLOOR_VENV/bin/python"
WHEEL_DIR="$ROOT/.whl"
TEST_TOOLS=(numpy pytest hypothesis expecttest)

_pip() {  # _pip PY ARGS...: quiet pip, without the noise of missing local index entries
  "$1" -m pip "${@:2}" 2>&1 | { grep -v "^WARNING: Location '" || true; }
}

_make_venv() {  # _make_venv DIR
  if [ ! -x "$1/bin/python" ]; then
    echo "[setup] creating virtualenv $1"
    python3 -m venv "$1"
    _pip "$1/bin/python" install -q --upgrade pip
  fi
}

_has_torch() {  # _has_torch PY VERSION: torch VERSION is installed
  "$1" -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$2')" 2>/dev/null
}

_make_venv "$VENV"
if ! _has_torch "$PY" 2.14.1 || ! "$PY" -c "import torchvision" 2>/dev/null; then
  echo "[setup] installing torch 2.14.1 and torchvision 0.29.1 (first run only)"
  _pip "$PY" install -q torch==2.14.1 torchvision==0.29.1
fi
# onnx, onnxscript and onnxruntime only check the ONNX export (tests/test_onnx.py);
# torch-abi-audit checks the wheel's ABI; setuptools and wheel build it.
if ! "$PY" -c "import numpy, pytest, hypothesis, expecttest, onnx, onnxscript, onnxruntime, setuptools, wheel" 2>/dev/null \
   || [ ! -x "$VENV/bin/torch-abi-audit" ]; then
  echo "[setup] installing test tools"
  _pip "$PY" install -q "${TEST_TOOLS[@]}" onnx onnxscript onnxruntime torch-abi-audit "setuptools>=70.1" wheel ninja
fi

if [ "${ROI_EXT_FLOOR:-0}" = "1" ]; then
  _make_venv "$FLOOR_VENV"
  if ! _has_torch "$FLOOR_PY" 2.11.0; then
    echo "[setup] installing torch 2.11.0 in $FLOOR_VENV (first run only)"
    _pip "$FLOOR_PY" install -q torch==2.11.0
  fi
  if ! "$FLOOR_PY" -c "import numpy, pytest, hypothesis, expecttest" 2>/dev/null; then
    _pip "$FLOOR_PY" install -q "${TEST_TOOLS[@]}"
  fi
fi

# Build the wheel when the sources or the build set-up changed.
stamp_now="$(cd "$ROOT" && { git ls-files -z csrc roi_ext setup.py pyproject.toml | sort -z | xargs -0 sha1sum; echo "${TORCH_CUDA_ARCH_LIST:-}"; } | sha1sum | cut -d' ' -f1)"
stamp_file="$WHEEL_DIR/.build-stamp"
WHEEL="$(ls "$WHEEL_DIR"/roi_ext-*-cp310-abi3-*.whl 2>/dev/null | head -n 1 || true)"
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_now" ] || [ -z "$WHEEL" ]; then
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0+PTX}"
  echo "[setup] building the roi_ext wheel (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
  start=$SECONDS
  mkdir -p "$WHEEL_DIR"
  log="$WHEEL_DIR/build.log"
  # The virtualenv's torch 2.14.1 is the build-time torch (pyproject.toml's
  # build requirement), without re-installing it in an isolated environment.
  if ! ROI_EXT_PIP_ARGS="--no-build-isolation" PYTHON="$PY" bash "$ROOT/scripts/build_wheel.sh" "$WHEEL_DIR" > "$log" 2>&1; then
    tail -n 60 "$log"
    echo "[setup] build failed; full log: $log" >&2
    exit 1
  fi
  WHEEL="$(ls "$WHEEL_DIR"/roi_ext-*-cp310-abi3-*.whl | head -n 1)"
  echo "[setup] built $(basename "$WHEEL") in $((SECONDS - start)) s (log: $log)"
  echo "$stamp_now" > "$stamp_file"
fi

_install_wheel() {  # _install_wheel PY: installs $WHEEL unless that exact file is installed
  local want
  want="$(sha1sum "$WHEEL" | cut -d' ' -f1)"
  if [ "$(cat "$(dirname "$1")/../.roi_ext-wheel" 2>/dev/null)" != "$want" ] || ! (cd /tmp && "$1" -c "import roi_ext") 2>/dev/null; then
    _pip "$1" install -q --force-reinstall --no-deps "$WHEEL"
    echo "$want" > "$(dirname "$1")/../.roi_ext-wheel"
  fi
}
_install_wheel "$PY"
if [ "${ROI_EXT_FLOOR:-0}" = "1" ]; then
  _install_wheel "$FLOOR_PY"
fi
