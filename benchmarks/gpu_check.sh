#!/usr/bin/env bash
# One call on a GPU machine (fits the device tool's 10-minute limit):
#   1. build roi_ext for this GPU (editable install, no network needed)
#   2. the GPU tests (tests/test_cuda.py)
#   3. compute-sanitizer over every op, dtype, method, layout and backward path
#      (benchmarks/gpu_checks.py sweep): memcheck with the caching allocator off
#      (PYTORCH_NO_CUDA_MEMORY_CACHING=1: every tensor its own allocation, so an
#      overrun cannot hide inside a cached block), initcheck (reads of memory no
#      one wrote) and synccheck (__syncthreads misuse in the block reductions)
#   4. the same sweep under torch.cuda.set_sync_debug_mode("error") (no op may
#      synchronise with the host) and captured in torch.cuda.graph (replayed,
#      compared with eager)
#   5. the GPU benchmarks against torchvision, printing a short table last
# Logs go to $OUT (the device tool's output folder) or /tmp/gpu_check. Exit
# status 0 only if every step passed. SKIP_BENCH=1 skips step 5.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
status=0
step() { echo; echo "=== $*"; }
fail() { echo "FAILED: $*"; status=1; }

step "build"
# This GPU's architecture, as PTX too (the default wheel list is "8.0;9.0+PTX").
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$($PY -c 'import torch; print("%d.%d+PTX" % torch.cuda.get_device_capability())')}"
export MAX_JOBS="${MAX_JOBS:-16}"
start=$SECONDS
if ! $PY -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
  tail -n 40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
echo "built for ${TORCH_CUDA_ARCH_LIST} in $((SECONDS - start)) s"
$PY -c "import torch, roi_ext; assert torch._C._dispatch_has_kernel_for_dispatch_key('roi_ext::roi_align', 'CUDA')" \
  || { echo "no CUDA kernels in the build"; exit 1; }

step "GPU tests"
$PY -m pytest tests/test_cuda.py -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" | tail -n 15
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "GPU tests"

# compute-sanitizer TOOL [ENV...]: the sweep under one tool.
sanitize() {
  local tool="$1"; shift
  step "compute-sanitizer --tool $tool $*"
  env "$@" compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 \
    $PY benchmarks/gpu_checks.py sweep > "$OUT/sanitizer_$tool.log" 2>&1
  local rc=$?
  grep -E "ERROR SUMMARY|sweep:|^FAIL" "$OUT/sanitizer_$tool.log" | tail -n 5
  [ $rc -eq 0 ] || fail "$tool (exit $rc, $OUT/sanitizer_$tool.log)"
}
sanitize memcheck PYTORCH_NO_CUDA_MEMORY_CACHING=1
sanitize initcheck PYTORCH_NO_CUDA_MEMORY_CACHING=1
sanitize synccheck

step "no host synchronisation (set_sync_debug_mode('error'))"
$PY benchmarks/gpu_checks.py sync 2>&1 | tee "$OUT/sync_debug.log" | tail -n 5
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "sync debug mode"

step "CUDA graph capture of every op"
$PY benchmarks/gpu_checks.py graph 2>&1 | tee "$OUT/graph.log" | tail -n 5
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "graph capture"

if [ "${SKIP_BENCH:-0}" = "0" ]; then
  step "benchmarks"
  $PY benchmarks/bench_gpu.py --out "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.log" | tail -n 20
  [ "${PIPESTATUS[0]}" -eq 0 ] || fail "benchmarks"
fi
exit $status
