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
cargo build --release --locked -p greenthread-api --bin greenthread >&2
# lib.sh exports GREENTHREAD_MODELS, where fetch_model.py keeps the models.
GREENTHREAD_BIN="$CARGO_TARGET_DIR/release/greenthread" "$python" bench/features.py
