#!/usr/bin/env bash
# Low-budget evidence (issue 11 item 4): each method chooses its own initial set.
set -u
cd "$(dirname "$0")/../../.."  # the repository root
mkdir -p "${OUT:-runs/lowbudget}"
export PYTHONPATH=.
cfg=$1; shift
for m in random typiclust probcover coreset; do
  init=$m; [ $m = coreset ] && init=kcenter
  python -m dalcore run --dataset digits --budget 10 --cycles 2 --repeats 5 --methods $m --initial $init "$@" --out ${OUT:-runs/lowbudget}/digits_${cfg}_$m --quiet > ${OUT:-runs/lowbudget}/digits_${cfg}_$m.log 2>&1
  echo "$cfg $m rc=$?"
done
