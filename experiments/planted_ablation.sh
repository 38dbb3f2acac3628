#!/usr/bin/env bash
# The one-suspect-at-a-time table of results/planted-diagnosis.md: the planted family at the demo budget, seeds 0-2, under
# the defaults and with one setting changed per row, then experiments/diagnose_planted.py on every run.
#   bash experiments/planted_ablation.sh runs/planted-ablation > results/planted-ablation.jsonl
set -euo pipefail
out=${1:-runs/planted-ablation}
B=.venv/bin/policygradex
declare -A rows=(
  [default]=""
  [taskid-N2048]="--task-id --transitions 2048"
  [taskid-N16384]="--task-id"
  [noid-N2048]="--transitions 2048"
  [noid-N8192]="--transitions 8192"
  [taskid-20k-steps]="--task-id --steps-per-task 20000"
)
for name in default taskid-N2048 taskid-N16384 noid-N2048 noid-N8192 taskid-20k-steps; do
  for s in 0 1 2; do
    # shellcheck disable=SC2086
    $B run planted --preset demo --k 3 --seed "$s" ${rows[$name]} --out "$out/$name-s$s" > /dev/null 2>&1 &
    if (( s % 2 == 1 )); then wait; fi
  done
  wait
  .venv/bin/python experiments/diagnose_planted.py "$out/$name"-s{0,1,2} --l2 0.1,10 | sed "s/^{/{\"row\": \"$name\", /"
done
