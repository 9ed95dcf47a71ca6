#!/usr/bin/env bash
# The multi-model workload trace against a scheduler and three node processes
# on loopback, for GreenThread and two baselines. Prints a markdown table.
#   bench/workload.sh [SECONDS]   (default 45)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
seconds="${1:-45}"
[[ -n "$BENCH_SMOKE" ]] && seconds=3
cargo bench --profile "$BENCH_PROFILE" --locked -q -p greenthread-api --bench workload -- "$seconds"
