#!/usr/bin/env bash
# Smoke-run examples/bc_pixels.py (rendered umaze, tiny RSSM and actor; < 1 min on 2 CPU cores
# once the 600-step dataset is rendered and cached).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="${RUN_DIR:-$(mktemp -d)}/bc_pixels"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" python examples/bc_pixels.py smoke=true progress=false \
    run_dir="$run_dir" hydra.run.dir="$run_dir/hydra" "$@"
test -s "$run_dir/metrics.csv"
echo "ok: bc_pixels -> $run_dir/metrics.csv"
