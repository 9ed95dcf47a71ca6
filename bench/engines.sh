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
bench_against_llama_server engines
