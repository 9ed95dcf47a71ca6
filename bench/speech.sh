#!/usr/bin/env bash
# Speech both ways and reranking: the real-time factor of transcribing
# with Whisper base next to faster-whisper (CTranslate2) on the same
# weights and threads, of synthesizing with the Piper voice "joe" next to
# piper-tts on the same ONNX Runtime, and documents reranked per second.
# Prints markdown tables.
#   bench/speech.sh
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
python3 scripts/fetch_model.py whisper-base >/dev/null
python3 scripts/fetch_model.py whisper-base --as-published >/dev/null
python3 scripts/fetch_model.py all-minilm-l6-v2 >/dev/null
python3 scripts/fetch_model.py piper-joe-medium >/dev/null
onnxruntime="$(scripts/onnxruntime.sh)"
espeak_env="$(scripts/espeak-ng.sh --env)"
python="$(python_env speech bench/requirements-speech.txt)"
espeak="$(scripts/espeak-ng.sh)"
binary="$CARGO_TARGET_DIR/$BENCH_PROFILE/greenthread"
# In smoke mode the test suite has just built the binary.
if [[ -z "$BENCH_SMOKE" || ! -x "$binary" ]]; then
  cargo build --profile "$BENCH_PROFILE" --locked -p greenthread-api --bin greenthread >&2
fi
# shellcheck disable=SC2086 # the pairs split on purpose
env $espeak_env GREENTHREAD_ONNXRUNTIME="$onnxruntime" GREENTHREAD_BIN="$binary" GREENTHREAD_ESPEAK="$espeak" \
  GREENTHREAD_BENCH_SMOKE="$BENCH_SMOKE" "$python" bench/speech.py
