#!/usr/bin/env bash
# Measures GreenThread's CUDA weight path on a GPU machine and prints a table
# last: pinned host-to-device bandwidth (the bound), wake time and GB/s from
# RAM and from disk for a random-weight file generated on the spot, sleep
# time, and device memory in use after sleep; then the builtin engine on a
# random 8B bf16 Hugging Face checkpoint next to transformers
# (scripts/gpu/builtin_check.py); then external engines
# (scripts/gpu/engine_check.py: three PyTorch servers under `greenthread
# serve`, put to sleep with CUDA checkpoints, together larger than the GPU).
# Takes well under 8 minutes.
#
#   scripts/gpu-check.sh --build     build .gpu/gpu-check.xz and the GPU build of
#                                    .gpu/greenthread.xz here (any x86-64 Linux: nvcc and
#                                    stand-ins for CUDA's libraries come from
#                                    scripts/cuda-toolkit.sh); carry .gpu
#   scripts/gpu-check.sh [SIZE]      run it on the GPU machine (default SIZE 4GiB)
#
# The GPU machines have no Rust toolchain: build here, carry `.gpu`, run there.
# The binaries need CUDA 13's libraries (libcublas, libcublasLt, libcurand,
# libnvrtc beside the driver's libcuda): found in CUDA's install or in the
# Python packages' nvidia/ folders there.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.gpu/gpu-check"

if [[ "${1:-}" == "--build" ]]; then
  source "$ROOT/scripts/lib.sh"
  export $("$ROOT/scripts/cuda-toolkit.sh" --env)
  cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" -p greenthread-node-runtime --features cuda --bin gpu-check
  cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" -p greenthread-api --features cuda --bin greenthread
  # Stripped and xz-compressed: the GPU machine needs no line tables, and at most
  # 64 MiB travel per call (the GPU build is about 120 MB stripped, 25 MB compressed).
  rm -rf "$ROOT/.gpu"
  mkdir -p "$ROOT/.gpu"
  for bin in gpu-check greenthread; do
    strip -o "$ROOT/.gpu/$bin" "$CARGO_TARGET_DIR/release/$bin"
    xz -T0 -6 "$ROOT/.gpu/$bin"
  done
  du -ch "$ROOT"/.gpu/*.xz
  exit 0
fi

if [[ ! -x "$BIN" && ! -e "$BIN.xz" ]]; then
  if command -v cargo >/dev/null; then
    "$0" --build
  else
    echo "error: $BIN is missing and there is no cargo here; run 'scripts/gpu-check.sh --build' on a build machine and carry .gpu" >&2
    exit 1
  fi
fi

# Unpacked where they arrive (Python's lzma: the GPU machine may have no xz).
for packed in "$ROOT"/.gpu/*.xz; do
  [[ -e "$packed" && ! -x "${packed%.xz}" ]] || continue
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$packed" "${packed%.xz}"
  chmod +x "${packed%.xz}"
done
# CUDA 13's libraries the GPU build links: CUDA's install, else PyTorch's nvidia/ packages.
for lib in libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
  found="$( (ls /usr/local/cuda*/lib64/"$lib" /usr/local/cuda*/targets/x86_64-linux/lib/"$lib"; \
    python3 -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null \
    | xargs -I{} find {}/nvidia -name "$lib" 2>/dev/null) 2>/dev/null | head -1)"
  if [[ -n "$found" ]]; then
    LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    echo "warning: $lib not found; the GPU build of greenthread will not start" >&2
  fi
done
export LD_LIBRARY_PATH
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv || true
"$BIN" --size "${1:-4GiB}" --dir "${TMPDIR:-/tmp}"
nvidia-smi --query-gpu=memory.used --format=csv || true
if [[ -x "$ROOT/.gpu/greenthread" ]]; then
  # The builtin engine on a random 8B bf16 checkpoint, next to transformers where PyTorch has CUDA.
  torch_ok="$(python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2>/dev/null && echo yes || true)"
  python3 "$ROOT/scripts/gpu/builtin_check.py" "$ROOT/.gpu/greenthread" --dir "${TMPDIR:-/tmp}" ${torch_ok:---no-torch}
fi
if [[ -x "$ROOT/.gpu/greenthread" ]] && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  python3 "$ROOT/scripts/gpu/engine_check.py" "$ROOT/.gpu/greenthread" ${2:+"$2"}
else
  echo "skipped the external-engine check: it needs .gpu/greenthread and PyTorch with CUDA" >&2
fi
