#!/usr/bin/env bash
# The release artifact: `greenthread` built in release with its console,
# stripped, with its debug info kept beside it for symbolizing, and a tarball
# that runs on any glibc Linux of its architecture without a toolchain.
#
#   scripts/release.sh                     build, then write dist/
#   scripts/release.sh --binary PATH       package a binary already built (the test suite's)
#   scripts/release.sh --features cuda     the GPU build (nvcc: scripts/cuda-toolkit.sh)
#
# Writes, under dist/ (or $GREENTHREAD_DIST):
#   greenthread                           stripped; its .gnu_debuglink names greenthread.debug
#   greenthread.debug                     the debug info (gdb, addr2line and perf find it beside it)
#   greenthread-VERSION-ARCH-linux.tar.gz the binary, ONNX Runtime's library (voices) and a README
#   SHA256SUMS
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
need objcopy "binutils splits the debug info out"

binary="" features=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --features) features="$2"; shift 2 ;;
    *) die "unknown argument: $1 (see the head of scripts/release.sh)" ;;
  esac
done

given="$binary"
if [[ -z "$binary" ]]; then
  need cargo "install Rust from https://rustup.rs"
  scripts/build-web.sh >/dev/null
  log "Building greenthread (release${features:+, features: $features})"
  cargo build --release --locked -p greenthread-api --bin greenthread ${features:+--features "$features"} >&2
  binary="$CARGO_TARGET_DIR/release/greenthread"
fi
[[ -x "$binary" ]] || die "no executable at $binary"

dist="${GREENTHREAD_DIST:-$ROOT/dist}"
mkdir -p "$dist"
version="$("$binary" --version | head -1 | awk '{print $2}')"
arch="$(uname -m)"
log "Packaging greenthread $version ($arch) into $dist"

objcopy --only-keep-debug "$binary" "$dist/greenthread.debug"
# The link is resolved by file name, so the two stay together under these names.
objcopy --strip-debug --strip-unneeded --add-gnu-debuglink="$dist/greenthread.debug" \
  "$binary" "$dist/greenthread.tmp"
mv "$dist/greenthread.tmp" "$dist/greenthread"
chmod 0755 "$dist/greenthread"
size="$(stat -c %s "$dist/greenthread")"
log "Stripped: $((size / 1000000)) MB (debug info: $(($(stat -c %s "$dist/greenthread.debug") / 1000000)) MB)"
# The release build's promise; a binary handed in (the test suite's, with its
# debug assertions) is packaged whatever its size.
if [[ -z "$given" ]] && ((size >= 60 * 1000 * 1000)); then
  die "the stripped release binary is $size bytes, over the 60 MB a release may take"
fi

onnxruntime="$(scripts/onnxruntime.sh)"
name="greenthread-$version-$arch-linux"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name/lib"
cp "$dist/greenthread" "$stage/$name/greenthread"
cp "$onnxruntime" "$stage/$name/lib/libonnxruntime.so"
cat >"$stage/$name/README" <<EOF
greenthread $version for $arch Linux (glibc 2.36 or newer; on x86-64 a CPU
with AVX2, x86-64-v3, as every x86 server CPU since 2015).

  ./greenthread serve --open --config demo.yaml --data-dir data

Text-to-speech voices load lib/libonnxruntime.so (set GREENTHREAD_ONNXRUNTIME
to its path) and espeak-ng's library (libespeak-ng1 on Debian and Ubuntu).
The debug info is greenthread.debug, published beside this archive.
Documentation: https://github.com/greenthread-ai/greenthread
EOF
# Same bytes for the same inputs: fixed owners, order and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - "$name" \
  | gzip -n -9 >"$dist/$name.tar.gz"
(cd "$dist" && sha256sum greenthread greenthread.debug "$name.tar.gz" >SHA256SUMS)
printf '%s\n' "$dist/$name.tar.gz"
