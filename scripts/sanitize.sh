#!/usr/bin/env bash
# Builds roi_ext with AddressSanitizer + UndefinedBehaviorSanitizer (setup.py reads
# ROI_EXT_SANITIZE=1) in a scratch copy of the repository, then runs the test
# suite, including the hypothesis fuzzers and the bad-input matrix, against that
# build. Any sanitizer report aborts the run and fails it.
#
#   bash scripts/sanitize.sh            # whole suite
#   bash scripts/sanitize.sh -k fuzz    # extra arguments go to pytest
#
# The normal build in the repository is left alone. CPU kernels only (the CUDA
# kernels are checked with compute-sanitizer: benchmarks/gpu_check.sh).
set -euo pipefail
# ROI_EXT_PYTHON=/path/to/python: use that interpreter (torch, pytest and
# hypothesis installed) as it is, without scripts/setup_env.sh.
if [ -n "${ROI_EXT_PYTHON:-}" ]; then
  ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  PY="$ROI_EXT_PYTHON"
else
  source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
fi
WORK="${ROI_EXT_SANITIZE_DIR:-/tmp/roi_ext_sanitize}"
rm -rf "$WORK"
mkdir -p "$WORK"
# Tracked files and new ones not yet committed (not the ignored build outputs).
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$WORK" 2>/dev/null || true)

echo "[sanitize] building with ASan + UBSan in $WORK"
(cd "$WORK" && ROI_EXT_SANITIZE=1 FORCE_CPU=1 MAX_JOBS="${MAX_JOBS:-2}" \
  "$PY" setup.py -q build_ext --inplace > "$WORK/build.log" 2>&1) || { tail -n 40 "$WORK/build.log"; exit 1; }
# The sanitizer build must not compile UBSan's signed-overflow checks out.
if grep -q -- "-fsanitize=" "$WORK/build.log" && ! grep -- "-fsanitize=" "$WORK/build.log" | grep -q -- "-fno-wrapv"; then
  echo "[sanitize] the compiler command lacks -fno-wrapv" >&2; exit 1
fi

runtime() { gcc -print-file-name="$1"; }
export LD_PRELOAD="$(runtime libasan.so):$(runtime libubsan.so)"
# Python and torch keep memory until exit by design: leak reports would be noise.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}"
export FORCE_CPU=1  # tells tests/test_cuda.py this build has no CUDA kernels
cd "$WORK"
"$PY" -c "import roi_ext, sys; assert roi_ext.__file__.startswith('$WORK'), roi_ext.__file__; print('[sanitize] testing', roi_ext.__file__)"
"$PY" -m pytest tests -q -p no:cacheprovider "$@"
