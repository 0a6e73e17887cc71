#!/usr/bin/env bash
# usage: run_all.sh BEFORE_CHECKOUT AFTER_CHECKOUT (two git worktrees), one quiet core.
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=3 STEPS=800
before=$1; after=$2
cd "$(dirname "$0")"
for i in 1 2; do
  taskset -c 0 python speed.py "$before" before_$i.json 2>/dev/null | tail -1
  taskset -c 0 python speed.py "$after" after_$i.json 2>/dev/null | tail -1
done
