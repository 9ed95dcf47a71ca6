#!/usr/bin/env bash
# The gateway hop's cost: one-token completions at a fixed rate, straight to
# a node process and through a gateway process, interleaved. Prints a
# markdown table of p50/p99 and the difference.
#   bench/overhead.sh [SECONDS]   (default 20)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
seconds="${1:-20}"
[[ -n "$BENCH_SMOKE" ]] && seconds=1
cargo bench --profile "$BENCH_PROFILE" --locked -q -p greenthread-api --bench overhead -- "$seconds"
