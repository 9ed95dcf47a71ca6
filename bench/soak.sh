#!/usr/bin/env bash
# A soak of `greenthread serve` with about three times more models than its
# device budget holds, under a Zipf mix of clients (streams, hang-ups
# mid-stream, tool calls, embeddings, bad requests). Prints markdown tables;
# exits 1 on a lost request or resources not back to baseline.
#   bench/soak.sh MINUTES     (default 30)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
minutes="${1:-30}"
python3 scripts/fetch_model.py qwen2.5-coder-0.5b-instruct >/dev/null
python3 scripts/fetch_model.py gemma-3-270m >/dev/null
python3 scripts/fetch_model.py all-minilm-l6-v2 >/dev/null
python="$(python_env e2e e2e/requirements.txt)"
binary="$CARGO_TARGET_DIR/$BENCH_PROFILE/greenthread"
if [[ -z "$BENCH_SMOKE" || ! -x "$binary" ]]; then
  cargo build --profile "$BENCH_PROFILE" --locked -p greenthread-api --bin greenthread >&2
fi
GREENTHREAD_BIN="$binary" GREENTHREAD_BENCH_SMOKE="$BENCH_SMOKE" "$python" bench/soak.py "$minutes"
