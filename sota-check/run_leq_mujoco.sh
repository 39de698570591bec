#!/usr/bin/env bash
# Smoke-run examples/leq_mujoco.py (tiny data, nets and step counts; < 2 min on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="${RUN_DIR:-$(mktemp -d)}/leq_mujoco"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" python examples/leq_mujoco.py smoke=true progress=false \
    run_dir="$run_dir" hydra.run.dir="$run_dir/hydra" "$@"
test -s "$run_dir/metrics.csv"
echo "ok: leq_mujoco -> $run_dir/metrics.csv"
