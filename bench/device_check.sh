#!/usr/bin/env bash
# One call on a bare GPU machine (torch with CUDA, nvcc, ninja, pytest; no internet):
# build for this card only, run the CUDA tests, run compute-sanitizer memcheck on a small
# forward+backward, benchmark fastrnn against cuDNN, and write everything under $OUT.
#   bash bench/device_check.sh            (OUT defaults to ./device-out)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
ARCH=$($PY -c "import torch; p=torch.cuda.get_device_capability(); print(f'{p[0]}.{p[1]}')")
export TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS=$(nproc)
log "building for sm_${ARCH/./} with $MAX_JOBS jobs"
start=$(date +%s)
# Build in place (no pip: the machine has no index); the tests import the in-tree package.
if ! $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  log "BUILD FAILED"; tail -40 "$OUT/build.log"; exit 1
fi
log "build took $(( $(date +%s) - start )) s"
$PY -c "import fastrnn; print('build_info', fastrnn.build_info())" | tee -a "$OUT/summary.txt"

log "CUDA tests"
timeout 300 $PY -m pytest tests -q -x -k cuda -p no:cacheprovider > "$OUT/tests.log" 2>&1
echo "pytest exit $?" | tee -a "$OUT/summary.txt"
tail -5 "$OUT/tests.log" | tee -a "$OUT/summary.txt"

log "compute-sanitizer memcheck"
cat > /tmp/fastrnn_small.py <<'PY'
import torch, fastrnn
from torch.nn.utils.rnn import pack_padded_sequence
for layer in (fastrnn.LSTM(8, 16, 2, bidirectional=True, proj_size=4), fastrnn.GRU(8, 16, bidirectional=True),
              fastrnn.GRU(8, 16, reset_after=False), fastrnn.RNN(8, 16, nonlinearity="relu")):
    layer = layer.cuda()
    x = torch.randn(7, 3, 8, device="cuda", requires_grad=True)
    out, _ = layer(x)
    out.sum().backward()
    packed = pack_padded_sequence(x, torch.tensor([7, 4, 2]), enforce_sorted=False)
    out, _ = layer(packed)
    out.data.sum().backward()
torch.cuda.synchronize()
print("small forward+backward done")
PY
timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 $PY /tmp/fastrnn_small.py \
  > "$OUT/memcheck.log" 2>&1
echo "memcheck exit $?" | tee -a "$OUT/summary.txt"
grep -E "ERROR SUMMARY|done" "$OUT/memcheck.log" | tee -a "$OUT/summary.txt"

log "benchmark against cuDNN"
timeout 240 $PY -m fastrnn.bench --device cuda --preset device --json "$OUT/bench_cuda.json" \
  > "$OUT/bench_cuda.txt" 2>&1
echo "bench exit $?" | tee -a "$OUT/summary.txt"
cat "$OUT/bench_cuda.txt"
