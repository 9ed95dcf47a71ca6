#!/usr/bin/env bash
# Prints the path of ONNX Runtime's library, which the server loads at run
# time to speak with a text-to-speech voice (GREENTHREAD_ONNXRUNTIME). The
# library comes from the `onnxruntime` wheel on PyPI: downloaded (no
# install), verified and unpacked once under the cache. Run again, it
# answers at once.
#
#   GREENTHREAD_ONNXRUNTIME="$(scripts/onnxruntime.sh)" greenthread serve ...
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version=1.32.0
member="onnxruntime/capi/libonnxruntime.so.$version"
sha256=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f
dir="$GT_CACHE/onnxruntime"
library="$dir/libonnxruntime.so.$version"

if [[ ! -f "$library" || "$(cat "$dir/.verified" 2>/dev/null)" != "$sha256" ]]; then
  need python3 "the library comes from a PyPI wheel"
  log "Fetching ONNX Runtime $version from PyPI"
  mkdir -p "$dir"
  tmp="$(mktemp -d "$dir/.download-XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # The library is the same in every Python's wheel: ask for one by its platform, whatever python3 is here.
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --python-version 3.11 -d "$tmp" "onnxruntime==$version" || die "pip download failed: is PyPI reachable?"
  python3 - "$tmp" "$member" <<'PY' || die "the wheel has no $member"
import sys, zipfile, pathlib
tmp, member = sys.argv[1], sys.argv[2]
(wheel,) = pathlib.Path(tmp).glob("onnxruntime-*.whl")
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(f"{tmp}/library", "wb") as out:
    while block := src.read(1 << 20):
        out.write(block)
PY
  actual="$(sha256sum "$tmp/library" | cut -d' ' -f1)"
  [[ "$actual" == "$sha256" ]] || die "libonnxruntime has sha256 $actual, expected $sha256; nothing was written"
  mv "$tmp/library" "$library"
  echo "$sha256" >"$dir/.verified"
fi
echo "$library"
