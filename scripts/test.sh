#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and
# integration tests, the llama.cpp reference tests and the end-to-end SDK
# tests against the real binary serving the real demo model (on the builtin
# engine and on llama.cpp's llama-server).
#
#   scripts/test.sh --quick   the inner loop: formatting, lints, unit and
#                             property tests; no browser, no llama.cpp, no
#                             Kubernetes API server, no models, no database
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/postgres.sh"
need cargo "install Rust from https://rustup.rs"
cd "$ROOT"

if [[ "${1:-}" == "--quick" ]]; then
  log "Quick: formatting, lints, unit and property tests"
  cargo fmt --all -- --check
  cargo clippy --locked --workspace --all-targets --profile ci -- -D warnings
  cargo test --locked --workspace --profile ci --lib --bins
  log "Quick checks passed (the full suite is scripts/test.sh without --quick, as CI runs it)"
  exit 0
fi
need python3 "Python 3 runs the SDK tests and the llama.cpp reference"

log "Fetching the real models (verified; cached after the first run)"
python3 scripts/fetch_model.py qwen2.5-coder-0.5b-instruct >/dev/null
python3 scripts/fetch_model.py gemma-3-270m >/dev/null
# SmolLM2-135M-Instruct's GGUF, which the e2e tests write as a Hugging Face checkpoint.
python3 scripts/fetch_model.py smollm2-135m-instruct >/dev/null
python3 scripts/fetch_model.py all-minilm-l6-v2 >/dev/null
python3 scripts/fetch_model.py whisper-base >/dev/null
python3 scripts/fetch_model.py piper-joe-medium >/dev/null
# What the voice needs at run time: ONNX Runtime's library (its wheel) and espeak-ng's (Debian's).
scripts/onnxruntime.sh >/dev/null
scripts/espeak-ng.sh >/dev/null

e2e_python="$(python_env e2e e2e/requirements.txt)"
# instructor's pins clash with the openai SDK's: its test runs it in an environment of its own.
export GREENTHREAD_INSTRUCTOR_PYTHON="$(python_env instructor e2e/clients/requirements-instructor.txt)"
ensure_node
node_packages e2e/clients/ai-sdk
# axe-core, injected into the console's pages to check their accessibility.
node_packages e2e/clients/axe

log "PostgreSQL for the store tests (SQLite needs nothing)"
ensure_postgres
log "Store tests use $GREENTHREAD_TEST_POSTGRES"
# llama.cpp compiles from source on first install (a few minutes on 2 cores).
export GREENTHREAD_LLAMA_PYTHON="$(export CMAKE_ARGS="$(llama_cmake_args)"; python_env llama bench/requirements-llama.txt)"
# llama.cpp's server, the real external engine of the engine tests (built once, minutes).
GREENTHREAD_LLAMA_SERVER="$(scripts/llama-server.sh)"
export GREENTHREAD_LLAMA_SERVER

ensure_chromium
# The binary embeds the console, so it is built first.
scripts/build-web.sh >/dev/null

log "Checking formatting and lints"
cargo fmt --all -- --check
cargo fmt --manifest-path web/Cargo.toml -- --check
cargo clippy --manifest-path web/Cargo.toml --target wasm32-unknown-unknown --release --all-targets -- -D warnings
cargo clippy --locked --workspace --all-targets --profile ci -- -D warnings
# The GPU build (`cuda`: the CUDA weight tiers and candle's CUDA inference), its kernels compiled
# by nvcc from CUDA 13.0's PyPI wheels (about 3 minutes cold on 2 cores), linked against stand-ins
# for CUDA's libraries; its tests run on them, where no GPU answers.
cuda_env="$(scripts/cuda-toolkit.sh --env)"
(
  export $cuda_env
  cargo clippy --locked -p greenthread-node-runtime --features cuda --all-targets --profile ci -- -D warnings
  cargo clippy --locked -p greenthread-api --features cuda --all-targets --profile ci -- -D warnings
  LD_LIBRARY_PATH="$GREENTHREAD_CUDA_STUBS" GREENTHREAD_EXPECT_NO_CUDA_DEVICE=1 \
    cargo test --locked -p greenthread-node-runtime --features cuda --profile ci --lib -- cuda::tests no_gpu
)

scripts/test-web.sh
scripts/test-chart.sh

log "A CRD-serving Kubernetes API server for the operator's integration tests"
# Built once from Debian's Go packages (minutes cold), then started per run.
scripts/apiserver.sh build
apiserver_dir="$(mktemp -d)"
trap 'scripts/apiserver.sh stop "$apiserver_dir" >/dev/null 2>&1 || true; rm -rf "$apiserver_dir"' EXIT
GREENTHREAD_TEST_KUBECONFIG="$(scripts/apiserver.sh start "$apiserver_dir")"
export GREENTHREAD_TEST_KUBECONFIG

log "Rust tests (unit, integration, llama.cpp reference)"
cargo test --locked --workspace --profile ci -- --include-ignored

log "Fuzzing: every target 5 s past its corpus (docs/RELIABILITY.md; longer runs: scripts/fuzz.sh SECONDS --libfuzzer)"
scripts/fuzz.sh 5

log "End-to-end tests: the SDKs and client libraries against greenthread serve"
# `cargo test` above built the binary (integration tests need it) with the same features.
export GREENTHREAD_BIN="$CARGO_TARGET_DIR/ci/greenthread"
[[ -x "$GREENTHREAD_BIN" ]] || die "cargo test did not build $GREENTHREAD_BIN"
# Servers' data directories hold copies of the models (gigabytes a run):
# a passing run leaves none behind, a failing one only its own.
"$e2e_python" -m pytest e2e -q -p no:cacheprovider \
  -o tmp_path_retention_policy=failed -o tmp_path_retention_count=1 "$@"

log "The container image: built around the suite's binary, run with runc, asked a question"
scripts/test-image.sh "$GREENTHREAD_BIN"

log "Every benchmark once, in smoke mode (it must complete; its numbers are not checked)"
for bench in wake engine overhead workload features engines speech load prefix soak chaos; do
  GREENTHREAD_BENCH_SMOKE=1 "bench/$bench.sh" >/dev/null || die "bench/$bench.sh failed in smoke mode"
done
# The GPU check of the builtin engine runs its steps on a tiny checkpoint on the CPU, so it cannot rot.
"$e2e_python" scripts/gpu/builtin_check.py "$GREENTHREAD_BIN" --shape tiny --no-torch >/dev/null \
  || die "scripts/gpu/builtin_check.py failed on the tiny checkpoint"
