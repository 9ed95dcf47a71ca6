#!/usr/bin/env bash
# Concurrent load on each demo model: `greenthread serve` (builtin engine) and
# llama.cpp's llama-server (continuous batching, --parallel N) on the same
# GGUF with the same threads, in one run. Closed loop at N = 1, 4, 16, 64
# streams, and an open loop (Poisson arrivals) for the highest rate held with
# time to first token p99 under 2 s. Prints markdown tables.
#   bench/load.sh                       the full run (about 15 minutes a model on 2 cores)
#   GREENTHREAD_BENCH_MODELS=gemma bench/load.sh   one of them (qwen, gemma)
#   GREENTHREAD_BENCH_SECONDS=60 bench/load.sh   longer windows
#   GREENTHREAD_BENCH_CLIENTS=4,16 GREENTHREAD_BENCH_OPEN_LOOP=0 bench/load.sh   some N, no open loop
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
python3 scripts/fetch_model.py qwen2.5-coder-0.5b-instruct >/dev/null
python3 scripts/fetch_model.py gemma-3-270m >/dev/null
bench_against_llama_server load
