#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (docs/RELIABILITY.md lists them).
#
#   scripts/fuzz.sh SECONDS               each target's corpus, then random
#                                         inputs, in the test profile's own
#                                         binaries (what CI runs: no extra build)
#   scripts/fuzz.sh SECONDS --libfuzzer   coverage-guided: libFuzzer mutates the
#                                         corpus, in an instrumented build
#                                         (cargo-bolero, installed on first use)
#   scripts/fuzz.sh SECONDS [--libfuzzer] TARGET...   only these targets
#
# A target that panics fails the script. With --libfuzzer, the input that made
# it panic is kept in the target's crashes/ folder, which `cargo test` replays
# from then on: add it to the corpus with the fix, as a regression test.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

seconds="${1:-}"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || die "usage: scripts/fuzz.sh SECONDS [--libfuzzer] [TARGET...]"
shift
engine=random
if [[ "${1:-}" == "--libfuzzer" ]]; then
  engine=libfuzzer
  shift
fi

# package, test file, target: the seed corpus of each is in the package's folder
# (its name without `greenthread-`), under tests/__fuzz__/TARGET/corpus.
targets=(
  "greenthread-node-runtime fuzz model_file"
  "greenthread-node-runtime fuzz chat_template"
  "greenthread-node-runtime fuzz output_grammar"
  "greenthread-node-runtime fuzz audio_file"
  "greenthread-protocol fuzz openai_chat"
  "greenthread-protocol fuzz openai_completion"
  "greenthread-protocol fuzz anthropic_messages"
  "greenthread-protocol fuzz responses"
  "greenthread-api fuzz desired_state"
  "greenthread-api fuzz embeddings_body"
  "greenthread-api fuzz rerank_body"
  "greenthread-api fuzz transcription_form"
  "greenthread-api fuzz api_key"
)
wanted=("$@")
selected() {
  [[ ${#wanted[@]} -eq 0 ]] && return 0
  local w
  for w in "${wanted[@]}"; do [[ "$w" == "$1" ]] && return 0; done
  return 1
}

cargo_bolero() {
  local bin="$GT_CACHE/tools/bin/cargo-bolero"
  if [[ ! -x "$bin" ]]; then
    log "Installing cargo-bolero (once)"
    # Without its default features it needs no system libraries; libFuzzer is all it runs here.
    cargo install --locked --quiet --root "$GT_CACHE/tools" --version 0.13.5 --no-default-features \
      --features libfuzzer cargo-bolero >&2
  fi
  echo "$bin"
}

profile="${GREENTHREAD_FUZZ_PROFILE:-ci}"
ran=0
for entry in "${targets[@]}"; do
  read -r package file target <<<"$entry"
  selected "$target" || continue
  log "Fuzzing $target ($package) for ${seconds}s with the $engine engine"
  if [[ "$engine" == random ]]; then
    BOLERO_RANDOM_TEST_TIME_MS=$((seconds * 1000)) \
      cargo test --locked --profile "$profile" -q -p "$package" --test "$file" -- --exact "$target" --nocapture \
      || die "fuzz target $target failed (its input is printed above)"
  else
    # Stable Rust with the flags libFuzzer's instrumentation needs (RUSTC_BOOTSTRAP);
    # no sanitizer (AddressSanitizer wants a nightly toolchain): what it catches is a
    # panic, an abort, an input slower than the timeout, or one that exhausts memory.
    # libFuzzer grows its corpus in the cache, from the one in the repository.
    corpus="$GT_CACHE/fuzz/$target"
    mkdir -p "$corpus"
    cp -n "${package#greenthread-}/tests/__fuzz__/$target/corpus/"* "$corpus/"
    "$(cargo_bolero)" bolero test --rustc-bootstrap --sanitizer NONE --profile fuzz \
      -p "$package" "$target" -T "${seconds}s" --timeout 20s --corpus-dir "$corpus" \
      || die "fuzz target $target failed: see its crashes/ folder"
  fi
  ran=$((ran + 1))
done
[[ "$ran" -gt 0 ]] || die "no fuzz target is named ${wanted[*]}"
log "$ran fuzz targets ran ${seconds}s each without a failure"
