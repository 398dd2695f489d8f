#!/usr/bin/env bash
# One call on a bare GPU machine (torch with CUDA, nvcc, ninja, pytest; no internet), sized
# for a 10-minute call: build for this card only (~1-2 min on 16 cores), the whole test
# suite with every CUDA variant (<= 240 s), the same operator calls through the GPU and
# through the CPU emulation compared (<= 120 s, typically 20 s), compute-sanitizer memcheck
# over four dtypes (<= 120 s), the benchmark against cuDNN in float32 (TF32 on both sides)
# and bfloat16 (<= 90 s each). Everything is written under $OUT as it happens, so a cut run still leaves
# what it had:
#   bash bench/device_check.sh            (OUT defaults to ./device-out)
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # the in-place build, from any folder
PY=${PYTHON:-python3}
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
'cuDNN', torch.backends.cudnn.version())"
  nvcc --version | tail -2
} 2>&1 | tee "$OUT/gpu.txt" | tee -a "$OUT/summary.txt"
ARCH=$($PY -c "import torch; p=torch.cuda.get_device_capability(); print(f'{p[0]}.{p[1]}')")
export TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS=$(nproc)
log "building for sm_${ARCH/./} with $MAX_JOBS jobs"
start=$(date +%s)
# Build in place (no pip: the machine has no index); PYTHONPATH above finds it.
if ! timeout 300 $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  log "BUILD FAILED"; tail -40 "$OUT/build.log" | tee -a "$OUT/summary.txt"; exit 1
fi
log "build took $(( $(date +%s) - start )) s"
if ! $PY -c "import fastrnn, sys; b = fastrnn.build_info(); print('build_info', b); \
sys.exit(0 if b['cuda'] else 1)" 2>&1 | tee -a "$OUT/summary.txt"; then
  log "BUILD HAS NO CUDA KERNELS: stopping (the benchmark would compare cuDNN with itself)"
  exit 1
fi

log "test suite, CUDA variants included (no -x: every failure is wanted)"
# SIGINT on timeout: pytest then still prints its summary of what ran.
timeout -s INT 240 $PY -m pytest tests -p no:cacheprovider -rfE --durations=10 \
  > "$OUT/tests.log" 2>&1
echo "pytest exit $?" | tee -a "$OUT/summary.txt"
grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -40 | tee -a "$OUT/summary.txt"
tail -3 "$OUT/tests.log" | tee -a "$OUT/summary.txt"

log "the same operator calls through the GPU's kernels and through their CPU emulation"
# What the emulated suite (FASTRNN_EMULATE_CUDA=1 pytest tests, run in CI) verified must
# hold for the real kernels: every cell, forward and backward, the four dtypes.
timeout -s INT 120 $PY bench/emulated_vs_gpu.py > "$OUT/emulated_vs_gpu.txt" 2>&1
echo "emulated_vs_gpu exit $?" | tee -a "$OUT/summary.txt"
grep -E "^FAIL|cases differ" "$OUT/emulated_vs_gpu.txt" | head -20 | tee -a "$OUT/summary.txt"
$PY bench/check_cuda_kernels.py > "$OUT/kernel_resources.txt" 2>&1
echo "check_cuda_kernels exit $? (2: no cuobjdump here)" | tee -a "$OUT/summary.txt"
tail -3 "$OUT/kernel_resources.txt" | tee -a "$OUT/summary.txt"

log "compute-sanitizer memcheck (no caching allocator, so out-of-bounds accesses show)"
if command -v compute-sanitizer > /dev/null; then
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout -s INT 120 compute-sanitizer --tool memcheck \
    --error-exitcode 9 $PY "$REPO/bench/memcheck_small.py" > "$OUT/memcheck.log" 2>&1
  echo "memcheck exit $?" | tee -a "$OUT/summary.txt"
  grep -E "ERROR SUMMARY|memcheck_small: done|refused|not supported|Error" "$OUT/memcheck.log" \
    | head -20 | tee -a "$OUT/summary.txt"
  grep -q "memcheck_small: done" "$OUT/memcheck.log" \
    || log "MEMCHECK DID NOT FINISH ITS SCRIPT: its error count says nothing"
else
  log "compute-sanitizer not found on this machine: memcheck skipped"
fi

for dtype in float32 bfloat16; do
  log "benchmark against cuDNN, $dtype"
  timeout -s INT 120 $PY -m fastrnn.bench --device cuda --preset device --dtype "$dtype" \
    --tf32 on --repeats 5 --json "$OUT/bench_cuda_$dtype.json" \
    > "$OUT/bench_cuda_$dtype.txt" 2>&1
  echo "bench $dtype exit $?" | tee -a "$OUT/summary.txt"
  tail -45 "$OUT/bench_cuda_$dtype.txt"
done
log "done"
