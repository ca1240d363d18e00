#!/usr/bin/env bash
# One call on a GPU machine (fits the device tool's 10-minute limit):
#   1. build roi_ext for this GPU (editable install, no network needed)
#   2. the GPU tests (tests/test_cuda.py) and the CPU suite's CUDA-free parts stay green
#   3. compute-sanitizer memcheck and racecheck over a short test selection
#   4. the GPU benchmarks against torchvision, printing a short table last
# Logs go to $OUT (the device tool's output folder) or /tmp/gpu_check.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
status=0
step() { echo; echo "=== $*"; }

step "build"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$($PY -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')}"
export MAX_JOBS="${MAX_JOBS:-16}"
start=$SECONDS
if ! $PY -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
  tail -n 40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
echo "built for sm_${TORCH_CUDA_ARCH_LIST} in $((SECONDS - start)) s"

step "GPU tests"
$PY -m pytest tests/test_cuda.py -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" | tail -n 15
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

SELECTION=(tests/test_cuda.py -q -p no:cacheprovider
           -k "(float32 and (roi_align or bilinear)) or bad_input or autograd_on_cuda")
for tool in memcheck racecheck; do
  step "compute-sanitizer --tool $tool"
  compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 \
    $PY -m pytest "${SELECTION[@]}" > "$OUT/sanitizer_$tool.log" 2>&1
  rc=$?
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$OUT/sanitizer_$tool.log" | tail -n 3
  [ $rc -eq 0 ] || { echo "$tool: exit $rc"; status=1; }
done

step "benchmarks"
$PY benchmarks/bench_gpu.py --out "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.log" | tail -n 20
exit $status
