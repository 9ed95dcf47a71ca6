#!/usr/bin/env bash
# Prefix caching: chat requests sharing a long system prompt, on `greenthread
# serve` and on llama.cpp's llama-server (its prompt cache on one slot), on
# the same GGUF and threads, in one run. Prints a markdown table.
#   bench/prefix.sh
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
python3 scripts/fetch_model.py qwen2.5-coder-0.5b-instruct >/dev/null
bench_against_llama_server prefix
