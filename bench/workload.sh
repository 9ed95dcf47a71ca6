#!/usr/bin/env bash
# The multi-model workload trace against a scheduler and three node processes
# on loopback, for GreenThread and two baselines. Prints a markdown table.
#   bench/workload.sh [SECONDS]   (default 45)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
cargo bench --locked -q -p greenthread-api --bench workload -- "${1:-45}"
