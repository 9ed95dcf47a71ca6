#!/usr/bin/env bash
# Measures GreenThread's CUDA weight path on a GPU machine and prints a table
# last: pinned host-to-device bandwidth (the bound), wake time and GB/s from
# RAM and from disk for a random-weight file generated on the spot, sleep
# time, and device memory in use after sleep. Takes well under 8 minutes.
#
#   scripts/gpu-check.sh --build     build .gpu/gpu-check here (any x86-64 Linux; no CUDA needed)
#   scripts/gpu-check.sh [SIZE]      run it on the GPU machine (default SIZE 4GiB)
#
# The GPU machines have no Rust toolchain: build here, carry `.gpu`, run there.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.gpu/gpu-check"

if [[ "${1:-}" == "--build" ]]; then
  source "$ROOT/scripts/lib.sh"
  cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" -p greenthread-node-runtime --features cuda --bin gpu-check
  mkdir -p "$ROOT/.gpu"
  cp "$CARGO_TARGET_DIR/release/gpu-check" "$BIN"
  echo "built $BIN"
  exit 0
fi

if [[ ! -x "$BIN" ]]; then
  if command -v cargo >/dev/null; then
    "$0" --build
  else
    echo "error: $BIN is missing and there is no cargo here; run 'scripts/gpu-check.sh --build' on a build machine and carry .gpu" >&2
    exit 1
  fi
fi
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv || true
"$BIN" --size "${1:-4GiB}" --dir "${TMPDIR:-/tmp}"
nvidia-smi --query-gpu=memory.used --format=csv || true
