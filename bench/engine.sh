#!/usr/bin/env bash
# Builtin engine vs llama.cpp: prompt and decode tokens/s on the same GGUF
# files, same prompt, same threads, in one run. Prints a markdown table.
#   bench/engine.sh [THREADS]   (default: all cores)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
threads="${1:-$(nproc)}"
export RAYON_NUM_THREADS="$threads"
export GREENTHREAD_LLAMA_PYTHON="$(export CMAKE_ARGS="$(llama_cmake_args)"; python_env llama bench/requirements-llama.txt)"
models=(
  "$(python3 scripts/fetch_model.py gemma-3-270m)"
  "$(python3 scripts/fetch_model.py qwen2.5-coder-0.5b-instruct)"
)
cargo build --profile "$BENCH_PROFILE" --locked -p greenthread-node-runtime --benches >&2
prompts=(64 256) decode=64 repeats=3
if [[ -n "$BENCH_SMOKE" ]]; then models=("${models[0]}") prompts=(16) decode=4 repeats=1; fi
echo "| model | threads | phase | GreenThread tok/s | llama.cpp tok/s | ratio |"
echo "|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  for p in "${prompts[@]}"; do
    cargo bench --profile "$BENCH_PROFILE" --locked -q -p greenthread-node-runtime --bench engine -- "$m" \
      --prompt "$p" --decode "$decode" --repeats "$repeats" \
      | { if [[ $p == "${prompts[0]}" ]]; then cat; else grep prefill; fi; }
  done
done
