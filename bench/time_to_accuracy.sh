#!/usr/bin/env bash
# Time to a held-out target, fastrnn's layers against torch.nn's, for the three example
# models: the same recipe (the task's defaults), the two runs side by side, each on a core
# of its own with one thread, so both see the same machine at the same time. torch.nn's run
# stops once it reaches the target; fastrnn's trains the whole recipe.
#
#   bash bench/time_to_accuracy.sh [TASK ...]       (default: sort classify charlm)
#
# Writes runs/TASK and runs/TASK-torch (checkpoint, metrics.csv, curve.png), their logs
# runs/TASK.log and runs/TASK-torch.log, and runs/TASK-compare.png, and prints the times.
# Needs two free cores: on a busy machine the times mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(sort classify charlm)
declare -A target=([sort]=0.9 [classify]=0.55 [charlm]=2.0)
declare -A every=([sort]=200 [classify]=300 [charlm]=150)
mkdir -p runs
for task in "${tasks[@]}"; do
  flags=(--eval-every "${every[$task]}")
  echo "== $task: fastrnn and torch.nn side by side (one core, one thread each)"
  OMP_NUM_THREADS=1 taskset -c 0 python -m fastrnn.train "$task" "${flags[@]}" \
    --out "runs/$task" > "runs/$task.log" 2>/dev/null &
  fast=$!
  OMP_NUM_THREADS=1 taskset -c 1 python -m fastrnn.train "$task" "${flags[@]}" \
    --torch-layers --stop-at "${target[$task]}" --out "runs/$task-torch" \
    > "runs/$task-torch.log" 2>/dev/null &
  ref=$!
  wait $fast $ref
  tail -n 2 "runs/$task.log" "runs/$task-torch.log"
  python -m fastrnn.train compare "runs/$task" "runs/$task-torch" \
    --target "${target[$task]}" --png "runs/$task-compare.png"
done
