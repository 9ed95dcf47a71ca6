# Shared settings of GreenThread's scripts: where caches live, and helpers.
# Sourced, not run.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GT_CACHE="${GREENTHREAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/greenthread}"
# A build directory outside the clone: repeat runs (and fresh clones) build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$GT_CACHE/target}"
export GREENTHREAD_MODELS="${GREENTHREAD_MODELS:-$GT_CACHE/models}"

# Benchmarks in smoke mode (GREENTHREAD_BENCH_SMOKE=1, as scripts/test.sh
# runs them): the smallest sizes, built with the test profile the suite has
# already compiled, to show each benchmark still runs end to end. Their
# numbers mean nothing then.
BENCH_SMOKE="${GREENTHREAD_BENCH_SMOKE:-}"
if [[ -n "$BENCH_SMOKE" ]]; then BENCH_PROFILE=ci; else BENCH_PROFILE=release; fi

# Runs the Python benchmark `bench/NAME.py` against `greenthread` (built in
# the benchmark profile; in smoke mode the suite's build is reused) and
# llama.cpp's llama-server, with the e2e environment's Python.
bench_against_llama_server() {
  local python llama_server binary="$CARGO_TARGET_DIR/$BENCH_PROFILE/greenthread"
  python="$(python_env e2e e2e/requirements.txt)"
  llama_server="$(scripts/llama-server.sh)"
  if [[ -z "$BENCH_SMOKE" || ! -x "$binary" ]]; then
    cargo build --profile "$BENCH_PROFILE" --locked -p greenthread-api --bin greenthread >&2
  fi
  GREENTHREAD_BIN="$binary" GREENTHREAD_LLAMA_SERVER="$llama_server" GREENTHREAD_BENCH_SMOKE="$BENCH_SMOKE" \
    "$python" "bench/$1.py"
}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required: $2"
}

# python_env NAME REQUIREMENTS: a virtual environment under the cache with the
# pinned requirements, rebuilt only when the requirements file (or CMAKE_ARGS,
# which shapes packages built from source) changes. Prints its python.
python_env() {
  local name="$1" requirements="$2"
  local venv="$GT_CACHE/venv-$name" stamp
  stamp="$( (cat "$requirements"; echo "${CMAKE_ARGS:-}") | sha256sum | cut -d' ' -f1)"
  if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.requirements" 2>/dev/null)" != "$stamp" ]]; then
    log "Preparing Python environment '$name' ($requirements)"
    python3 -m venv --clear "$venv" >&2
    # pip's wheel cache ignores CMAKE_ARGS: build afresh when they matter.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check ${CMAKE_ARGS:+--no-cache-dir} \
      -r "$requirements" >&2
    echo "$stamp" >"$venv/.requirements"
  fi
  echo "$venv/bin/python"
}

# llama_cmake_args: CMake options for building llama.cpp (the reference) for
# this CPU: its SIMD extensions, but not AMX, whose matmul path crashes on
# some virtual machines (ggml_backend_amx_mul_mat, SIGSEGV) — `-march=native`
# would switch it on wherever the CPU has it.
llama_cmake_args() {
  local args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  local flags
  flags="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)"
  [[ " $flags " == *" avx512f "* ]] && args+=" -DGGML_AVX512=ON"
  [[ " $flags " == *" avx512vbmi "* ]] && args+=" -DGGML_AVX512_VBMI=ON"
  [[ " $flags " == *" avx512_vnni "* ]] && args+=" -DGGML_AVX512_VNNI=ON"
  [[ " $flags " == *" avx512_bf16 "* ]] && args+=" -DGGML_AVX512_BF16=ON"
  [[ " $flags " == *" avx_vnni "* ]] && args+=" -DGGML_AVX_VNNI=ON"
  echo "$args"
}

# apt_install PACKAGE...: Debian packages, as root or through sudo.
apt_install() {
  local sudo=""
  [[ "$(id -u)" == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}

# ensure_chromium: Debian's Chromium and ChromeDriver for the console's
# browser and component tests, installed once where they are missing.
# Exports GREENTHREAD_CHROMIUM and CHROMEDRIVER.
ensure_chromium() {
  local path
  path="$(command -v chromium || command -v chromium-browser || true)"
  if [[ -z "$path" ]] || ! command -v chromedriver >/dev/null; then
    log "Installing Chromium and ChromeDriver (Debian packages) for the console's tests"
    apt_install chromium chromium-driver
    path="$(command -v chromium)" || die "chromium did not install"
  fi
  export GREENTHREAD_CHROMIUM="$path"
  CHROMEDRIVER="$(command -v chromedriver)" || die "chromedriver did not install"
  export CHROMEDRIVER
}


# ensure_node: Node.js 18 or later (Debian's packages where it is missing),
# for the Vercel AI SDK's end-to-end test.
ensure_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null ||
    (($(node -p 'process.versions.node.split(".")[0]') < 18)); then
    log "Installing Node.js (Debian packages) for the AI SDK's end-to-end test"
    apt_install nodejs npm
  fi
}

# node_packages DIR: DIR's packages exactly as its package-lock.json pins
# them, installed again only when the lock file changes.
node_packages() {
  local dir="$1" stamp
  stamp="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [[ "$(cat "$dir/node_modules/.greenthread-lock" 2>/dev/null)" != "$stamp" ]]; then
    log "Installing the Node packages of $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
    echo "$stamp" >"$dir/node_modules/.greenthread-lock"
  fi
}
