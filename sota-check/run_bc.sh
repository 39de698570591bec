#!/usr/bin/env bash
# Smoke-run examples/bc.py (tiny data, nets and step counts; < 2 min on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="${RUN_DIR:-$(mktemp -d)}/bc"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" python examples/bc.py smoke=true progress=false \
    run_dir="$run_dir" hydra.run.dir="$run_dir/hydra" "$@"
test -s "$run_dir/metrics.csv"
echo "ok: bc -> $run_dir/metrics.csv"
