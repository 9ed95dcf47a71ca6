#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (docs/RELIABILITY.md lists them).
#
#   scripts/fuzz.sh SECONDS               each target's corpus, then random
#                                         inputs, in the test profile's own
#                                         binaries (what CI runs: no extra build)
#   scripts/fuzz.sh SECONDS --libfuzzer   coverage-guided: libFuzzer mutates the
#                                         corpus, in a build instrumented for it
#                                         (stable Rust; minutes per crate cold)
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

# package, where, target: `fuzz` is the package's tests/fuzz.rs, its seed corpus
# under tests/__fuzz__/TARGET/corpus; `lib` is its unit tests' `fuzz` module
# (the API's: a package with a binary cannot have instrumented integration tests),
# its seed corpus under src/__fuzz__/fuzz__TARGET/corpus. The package's folder
# is its name without `greenthread-`.
targets=(
  "greenthread-node-runtime fuzz model_file"
  "greenthread-node-runtime fuzz chat_template"
  "greenthread-node-runtime fuzz output_grammar"
  "greenthread-node-runtime fuzz audio_file"
  "greenthread-protocol fuzz openai_chat"
  "greenthread-protocol fuzz openai_completion"
  "greenthread-protocol fuzz anthropic_messages"
  "greenthread-protocol fuzz responses"
  "greenthread-api lib desired_state"
  "greenthread-api lib embeddings_body"
  "greenthread-api lib rerank_body"
  "greenthread-api lib speech_body"
  "greenthread-api lib transcription_form"
  "greenthread-api lib api_key"
)
wanted=("$@")
selected() {
  [[ ${#wanted[@]} -eq 0 ]] && return 0
  local w
  for w in "${wanted[@]}"; do [[ "$w" == "$1" ]] && return 0; done
  return 1
}

# libFuzzer's coverage instrumentation (the flags cargo-bolero passes; all stable
# rustc flags), for the target triple only, so build scripts and proc-macros
# stay plain; with the libFuzzer runtime that bolero links under `fuzzing_libfuzzer`.
host="$(rustc -vV | sed -n 's/^host: //p')"
instrumented="--cfg fuzzing -Cpasses=sancov-module --cfg fuzzing_libfuzzer \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-sanitizer-coverage-stack-depth"

# `cargo test`'s arguments selecting PACKAGE's tests in WHERE (`lib` or a tests/ file).
tests_in() { if [[ "$1" == lib ]]; then echo --lib; else echo "--test $1"; fi; }

# Builds PACKAGE's tests in WHERE instrumented (later calls find it fresh) and prints the binary.
instrumented_binary() {
  # shellcheck disable=SC2046
  RUSTFLAGS="$instrumented" cargo test --locked --target "$host" --profile fuzz -p "$1" $(tests_in "$2") --no-run \
    --target-dir "$CARGO_TARGET_DIR/fuzz" --message-format json 2>/dev/null \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])'
}

profile="${GREENTHREAD_FUZZ_PROFILE:-ci}"
ran=0
for entry in "${targets[@]}"; do
  read -r package file target <<<"$entry"
  selected "$target" || continue
  if [[ "$file" == lib ]]; then
    name="fuzz::$target" dir="${package#greenthread-}/src/__fuzz__/fuzz__$target"
  else
    name="$target" dir="${package#greenthread-}/tests/__fuzz__/$target"
  fi
  log "Fuzzing $target ($package) for ${seconds}s with the $engine engine"
  if [[ "$engine" == random ]]; then
    BOLERO_RANDOM_TEST_TIME_MS=$((seconds * 1000)) \
      cargo test --locked --profile "$profile" -q -p "$package" $(tests_in "$file") -- --exact "$name" --nocapture \
      || die "fuzz target $target failed (its input is printed above)"
  else
    binary="$(instrumented_binary "$package" "$file")" || die "the instrumented build of $package's $file tests failed"
    [[ -x "$binary" ]] || die "the instrumented build of $package's $file tests made no test binary"
    # No sanitizer (AddressSanitizer needs a nightly toolchain): what libFuzzer catches is a
    # panic, an abort, an input slower than the timeout, or one that exhausts memory.
    # It grows its corpus in the cache, from the one in the repository; an input that
    # fails goes to the target's crashes/ folder, which `cargo test` replays.
    corpus="$GT_CACHE/fuzz/$target"
    mkdir -p "$corpus" "$dir/crashes"
    cp -r "$dir/corpus/." "$corpus/"
    (cd "${package#greenthread-}" && BOLERO_TEST_NAME="$name" BOLERO_LIBTEST_HARNESS=1 \
      BOLERO_LIBFUZZER_ARGS="$corpus $ROOT/$dir/crashes -artifact_prefix=$ROOT/$dir/crashes/ -timeout=20 -max_total_time=$seconds -print_final_stats=1" \
      "$binary" "$name" --exact --nocapture --quiet --test-threads 1) \
      || die "fuzz target $target failed: its input is in $dir/crashes"
    rmdir "$dir/crashes" 2>/dev/null || true
  fi
  ran=$((ran + 1))
done
[[ "$ran" -gt 0 ]] || die "no fuzz target is named ${wanted[*]}"
log "$ran fuzz targets ran ${seconds}s each without a failure"
