#!/usr/bin/env bash
# Smoke-run examples/clap.py on each kind of data (tiny data, latent action model and nets; ~15 s
# each on 2 CPU cores): the point maze, D4RL MuJoCo (simulator data written as a D4RL file, no
# download), the rendered maze from pixels.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${RUN_DIR:-$(mktemp -d)}"
for config in clap clap/mujoco/hopper-medium clap_pixels; do
    run_dir="$root/${config//\//_}"
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" python examples/clap.py --config-name "$config" \
        smoke=true progress=false run_dir="$run_dir" hydra.run.dir="$run_dir/hydra" "$@"
    test -s "$run_dir/metrics.csv"
    echo "ok: $config -> $run_dir/metrics.csv"
done
