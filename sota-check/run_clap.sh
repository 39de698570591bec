#!/usr/bin/env bash
# Smoke-run examples/clap.py (tiny data, latent action model and nets; ~10 s on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="${RUN_DIR:-$(mktemp -d)}/clap"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" python examples/clap.py smoke=true progress=false \
    run_dir="$run_dir" hydra.run.dir="$run_dir/hydra" "$@"
test -s "$run_dir/metrics.csv"
echo "ok: clap -> $run_dir/metrics.csv"
