#!/usr/bin/env bash
# Prints the path of llama.cpp's `llama-server`, building it from source the
# first time: the llama.cpp sources that travel in llama-cpp-python's source
# package on PyPI (the same llama.cpp the reference tests use), CMake and
# Ninja from PyPI, this machine's C++ compiler. Cached; a second run prints
# the path at once.
#
#   scripts/llama-server.sh            build if needed, print the binary's path
#   scripts/llama-server.sh --version  the same, then the binary's own version
source "$(dirname "$0")/lib.sh"

LLAMA_CPP_PYTHON_VERSION=0.3.36
SDIST_URL="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-${LLAMA_CPP_PYTHON_VERSION}.tar.gz"
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

cmake_args="-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF $(llama_cmake_args)"
stamp="$(echo "$LLAMA_CPP_PYTHON_VERSION $SDIST_SHA256 $cmake_args" | sha256sum | cut -c1-12)"
prefix="$GT_CACHE/tools/llama-server-$stamp"
binary="$prefix/bin/llama-server"

if [[ ! -x "$binary" ]]; then
  need c++ "a C++ compiler builds llama.cpp's server (Debian: apt install g++)"
  need curl "curl downloads the llama.cpp sources"
  build_python="$(python_env build "$ROOT/scripts/requirements-build.txt")"
  tools="$(dirname "$build_python")"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  log "Building llama.cpp's llama-server from llama-cpp-python $LLAMA_CPP_PYTHON_VERSION's sources (minutes on 2 cores, once)"
  curl -sSfL --retry 3 -o "$work/src.tar.gz" "$SDIST_URL"
  echo "$SDIST_SHA256  $work/src.tar.gz" | sha256sum -c --quiet - || die "the llama.cpp sources do not match their pinned digest"
  tar xzf "$work/src.tar.gz" -C "$work"
  source_dir="$work/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
  # shellcheck disable=SC2086 # cmake_args is a list of flags
  "$tools/cmake" -S "$source_dir" -B "$work/build" -G Ninja -DCMAKE_MAKE_PROGRAM="$tools/ninja" $cmake_args >&2
  "$tools/cmake" --build "$work/build" --target llama-server -j "$(nproc)" >&2
  mkdir -p "$prefix.partial/bin"
  cp "$work/build/bin/llama-server" "$prefix.partial/bin/"
  rm -rf "$prefix"
  mv "$prefix.partial" "$prefix"
fi

echo "$binary"
if [[ "${1:-}" == "--version" ]]; then
  "$binary" --version >&2
fi
