#!/usr/bin/env bash
# The demo model on the builtin engine and on llama.cpp's llama-server, both
# through `greenthread serve`, and llama-server called directly: wake (or
# start) time, decode tokens/s, and the proxy's added latency. Prints a
# markdown table.
#   bench/engines.sh                                  engines on every core
#   GREENTHREAD_BENCH_THREADS=1 bench/engines.sh      a core left for client and proxy
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
  "$python" bench/engines.py
