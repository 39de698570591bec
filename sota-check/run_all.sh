#!/usr/bin/env bash
# Smoke-run every example (TorchRL sota-check style); prints a pass/fail line per example.
set -uo pipefail
cd "$(dirname "$0")"
status=0
for script in run_*.sh; do
    [ "$script" = "run_all.sh" ] && continue
    start=$(date +%s)
    if bash "$script" "$@" > "/tmp/sota-check-${script%.sh}.log" 2>&1; then
        echo "PASS ${script#run_} ($(( $(date +%s) - start )) s)"
    else
        echo "FAIL ${script#run_} (log: /tmp/sota-check-${script%.sh}.log)"
        status=1
    fi
done
exit $status
