#!/usr/bin/env bash
# Sleep and wake of the real models on this CPU node, next to the memcpy and
# cold-read bounds measured in the same run. Prints a markdown table.
#   bench/wake.sh [THREADS]   (default: all cores)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
export RAYON_NUM_THREADS="${1:-$(nproc)}"
models=(
  "$(python3 scripts/fetch_model.py qwen2.5-coder-0.5b-instruct)"
  "$(python3 scripts/fetch_model.py gemma-3-270m)"
)
cargo build --profile "$BENCH_PROFILE" --locked -p greenthread-node-runtime --benches >&2
repeats=5
[[ -n "$BENCH_SMOKE" ]] && repeats=1
echo "| model | operation | weights | median time | bound | ratio | sleep |"
echo "|---|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  cargo bench --profile "$BENCH_PROFILE" --locked -q -p greenthread-node-runtime --bench wake -- "$m" --repeats "$repeats"
done
