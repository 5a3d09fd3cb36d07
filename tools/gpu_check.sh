#!/usr/bin/env bash
# One-shot check on a machine with an NVIDIA GPU, under 8 minutes, one summary file:
#   1. the GPU and toolchain (nvidia-smi, nvcc, python, torch.cuda)
#   2. build: _core with CUDA (and the OpenMP twin) in place (tools/dev_build.sh)
#   3. pytest -m gpu (the tests that need a device), plus the GPU-path contract tests on the twin
#   4. GPU-path kcenter at N = 50k and 1M (tools/gpu_kcenter_timing.py): the tiled kernels
#      against the Thrust reference, launch per pick against a CUDA graph, the projection pass
#      against the plain pass; same picks checked, device copy bandwidth measured in the run
#   5. the benches' CUDA rows at N = 50k and 1M: kcenter, knn_graph, propagate, each with the
#      device read bandwidth measured in the same run (the floor of its rows)
#   6. a two-cycle `dalcore run --device cuda --semi --pretrain` on digits
#   7. dalcore.distributed on a one-rank NCCL group (tools/gpu_check_distributed.py, ~20 s;
#      NCCL refuses two ranks on one GPU, so the 2-rank checks stay with gloo on CPUs)
# Usage: tools/gpu_check.sh [SUMMARY_FILE]   (default: $OUT/gpu_check.md, else ./gpu_check.md)
# Every step runs under its own timeout, cut to what is left of the 8 minutes; a failed step is
# recorded (exit status, last lines of its log) and the script goes on. Exit status: the number
# of failed steps (0: all passed).
set -uo pipefail
cd "$(dirname "$0")/.."
SUMMARY=${1:-${OUT:-.}/gpu_check.md}
mkdir -p "$(dirname "$SUMMARY")"
LOGS=$(mktemp -d)
PY=${PYTHON:-python}
DEADLINE=$(( $(date +%s) + ${GPU_CHECK_SECONDS:-470} ))
FAILED=0

say() { printf '%s\n' "$*" >> "$SUMMARY"; }

# step NAME LIMIT_S CMD...: runs CMD with its output in $LOGS/NAME.log; records status and time.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$(( DEADLINE - $(date +%s) ))
  if (( left < 10 )); then
    say "## $name: SKIPPED (the 8-minute budget is spent)"
    FAILED=$(( FAILED + 1 ))
    return
  fi
  (( limit > left )) && limit=$left
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  local took=$(( $(date +%s) - t0 ))
  if (( rc == 0 )); then
    say "## $name: ok (${took} s)"
  else
    say "## $name: FAILED, exit $rc$( (( rc == 124 )) && echo ' (timeout)') after ${took} s"
    FAILED=$(( FAILED + 1 ))
  fi
  say '```'
  tail -n "${TAIL_LINES:-40}" "$LOGS/$name.log" >> "$SUMMARY"
  say '```'
}

: > "$SUMMARY"
say "# dalcore GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
step machine 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
  && nvcc --version | tail -n 2 && $PY -c 'import torch; print(\"torch\", torch.__version__, \
  \"cuda\", torch.version.cuda); assert torch.cuda.is_available(), \"torch sees no GPU\"'"
step build 200 env DALCORE_CUDA=ON JOBS="${JOBS:-16}" PYTHON="$PY" bash tools/dev_build.sh
step info 20 env PYTHONPATH=. "$PY" -c "import dalcore; print(dalcore.build_info()); \
  assert dalcore.cuda_available(), 'no CUDA device visible to dalcore'"
# all skipped is a failure here: the point is to run them on the device
step pytest_gpu 120 bash -c "PYTHONPATH=. $PY -m pytest -q -rs -m gpu -p no:cacheprovider \
  python_tests | tee /dev/stderr | tail -n 1 | grep -q ' passed' && test \${PIPESTATUS[0]} -eq 0"
step pytest_contract 60 env PYTHONPATH=. "$PY" -m pytest -q -p no:cacheprovider \
  python_tests/test_gpu_bindings.py python_tests/test_graph_contract.py \
  python_tests/test_propagate_contract.py python_tests/test_kcenter_contract.py \
  python_tests/test_gpu_twin_order.py
step kcenter_tiles 90 env PYTHONPATH=. "$PY" tools/gpu_kcenter_timing.py --sizes 50000 1000000 \
  --budget 1000 --repeats 3
step bench_kcenter 60 env PYTHONPATH=. "$PY" benches/bench_kcenter.py --cuda-only --repeats 3 \
  --sizes 50000x128x100,1000000x128x100
step bench_graph 45 env PYTHONPATH=. "$PY" benches/bench_graph.py --cuda-only --repeats 3 \
  --sizes 50000 1000000
step bench_propagate 45 env PYTHONPATH=. "$PY" benches/bench_propagate.py --cuda-only \
  --repeats 3 --n 50000 1000000 --classes 10
RUN_DIR=$(mktemp -d)
step dalcore_run 120 env PYTHONPATH=. "$PY" -m dalcore run --dataset digits --device cuda \
  --semi --pretrain --cycles 2 --repeats 1 --quiet --out "$RUN_DIR/run"
if [[ -f "$RUN_DIR/run/summary.md" ]]; then
  say "### summary.md of the run"
  cat "$RUN_DIR/run/summary.md" >> "$SUMMARY"
fi
step distributed_nccl 60 env PYTHONPATH=. "$PY" tools/gpu_check_distributed.py --device cuda
say ""
say "failed steps: $FAILED; total $(( $(date +%s) - DEADLINE + ${GPU_CHECK_SECONDS:-470} )) s"
rm -rf "$LOGS" "$RUN_DIR"
echo "summary: $SUMMARY (failed steps: $FAILED)"
exit "$FAILED"
