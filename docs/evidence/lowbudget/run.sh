#!/usr/bin/env bash
# Low-budget evidence (issue 11 item 4): each method chooses its own initial set.
#   bash docs/evidence/lowbudget/run.sh <name> [dalcore run options]       # digits, budget 10
#   DATASET=fashion-mnist EXTRA="--pool-size 5000" bash docs/evidence/lowbudget/run.sh <name> ...
# With --pretrain the first method's DeepCluster backbones (pretrain_r<repeat>.pt) are copied to
# the other methods' folders: the cache is keyed by its settings, so they load it instead of
# pre-training again (the same backbone for every method, as in one run).
set -u
cd "$(dirname "$0")/../../.."  # the repository root
out=${OUT:-runs/lowbudget}
ds=${DATASET:-digits}
mkdir -p "$out"
export PYTHONPATH=.
cfg=$1; shift
first=""
for m in random typiclust probcover coreset; do
  init=$m; [ $m = coreset ] && init=kcenter
  dir=$out/${ds}_${cfg}_$m
  if [ -n "$first" ] && [ ! -e "$dir" ]; then
    mkdir -p "$dir"; cp "$first"/pretrain_r*.pt "$dir"/ 2>/dev/null || true
  fi
  python -m dalcore run --dataset "$ds" ${EXTRA:-} --budget 10 --cycles 2 --repeats ${REPEATS:-5} --methods $m \
    --initial $init "$@" --out "$dir" --quiet > "$dir.log" 2>&1
  echo "$cfg $m rc=$?"
  first=${first:-$dir}
done
