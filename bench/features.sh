#!/usr/bin/env bash
# What structured output and embeddings cost: constrained vs free decoding,
# and embeddings next to a NumPy reference, on the release binary. Prints
# markdown tables.
#   bench/features.sh
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
python3 scripts/fetch_model.py qwen2.5-coder-0.5b-instruct >/dev/null
python3 scripts/fetch_model.py all-minilm-l6-v2 >/dev/null
python="$(python_env e2e e2e/requirements.txt)"
binary="$CARGO_TARGET_DIR/$BENCH_PROFILE/greenthread"
# In smoke mode the test suite has just built the binary (building the one
# package alone would unify features differently and recompile).
if [[ -z "$BENCH_SMOKE" || ! -x "$binary" ]]; then
  cargo build --profile "$BENCH_PROFILE" --locked -p greenthread-api --bin greenthread >&2
fi
# lib.sh exports GREENTHREAD_MODELS, where fetch_model.py keeps the models.
GREENTHREAD_BIN="$binary" GREENTHREAD_BENCH_SMOKE="$BENCH_SMOKE" "$python" bench/features.py
