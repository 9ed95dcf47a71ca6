#!/usr/bin/env bash
# Measures GreenThread's CUDA weight path on a GPU machine and prints a table
# last: pinned host-to-device bandwidth (the bound), wake time and GB/s from
# RAM and from disk for a random-weight file generated on the spot, sleep
# time, and device memory in use after sleep; then external engines
# (scripts/gpu/engine_check.py: three PyTorch servers under `greenthread
# serve`, put to sleep with CUDA checkpoints, together larger than the GPU).
# Takes well under 8 minutes.
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
  cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" -p greenthread-api --bin greenthread
  # Stripped: the GPU machine needs no line tables, and the copy travels.
  strip -o "$ROOT/.gpu/greenthread" "$CARGO_TARGET_DIR/release/greenthread"
  echo "built $BIN and $ROOT/.gpu/greenthread"
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
if [[ -x "$ROOT/.gpu/greenthread" ]] && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  python3 "$ROOT/scripts/gpu/engine_check.py" "$ROOT/.gpu/greenthread" ${2:+"$2"}
else
  echo "skipped the external-engine check: it needs .gpu/greenthread and PyTorch with CUDA" >&2
fi
