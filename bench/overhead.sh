#!/usr/bin/env bash
# The gateway hop's cost: one-token completions at a fixed rate, straight to
# a node process, through a bare forwarder on the same HTTP stack (the floor
# of any extra hop on this machine), through `serve` and through a separate
# `gateway`, interleaved. Prints a markdown table of p10/p50/p99, what each
# path adds to the node's own latency, and what `serve` and the gateway add
# beyond the floor.
#   bench/overhead.sh [SECONDS]   (default 20)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
seconds="${1:-20}"
[[ -n "$BENCH_SMOKE" ]] && seconds=1
cargo bench --profile "$BENCH_PROFILE" --locked -q -p greenthread-api --bench overhead -- "$seconds"
