#!/usr/bin/env bash
# Prefix caching: chat requests sharing a long system prompt, on `greenthread
# serve` and on llama.cpp's llama-server (its prompt cache on one slot), on
# the same GGUF and threads, in one run. Prints a markdown table.
#   bench/prefix.sh
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
python3 scripts/fetch_model.py qwen2.5-coder-0.5b-instruct >/dev/null
python="$(python_env e2e e2e/requirements.txt)"
llama_server="$(scripts/llama-server.sh)"
binary="$CARGO_TARGET_DIR/$BENCH_PROFILE/greenthread"
if [[ -z "$BENCH_SMOKE" || ! -x "$binary" ]]; then
  cargo build --profile "$BENCH_PROFILE" --locked -p greenthread-api --bin greenthread >&2
fi
GREENTHREAD_BIN="$binary" GREENTHREAD_LLAMA_SERVER="$llama_server" GREENTHREAD_BENCH_SMOKE="$BENCH_SMOKE" \
  "$python" bench/prefix.py
