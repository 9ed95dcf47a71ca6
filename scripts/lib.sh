# Shared settings of GreenThread's scripts: where caches live, and helpers.
# Sourced, not run.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GT_CACHE="${GREENTHREAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/greenthread}"
# A build directory outside the clone: repeat runs (and fresh clones) build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$GT_CACHE/target}"
export GREENTHREAD_MODELS="${GREENTHREAD_MODELS:-$GT_CACHE/models}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required: $2"
}

# python_env NAME REQUIREMENTS: a virtual environment under the cache with the
# pinned requirements, rebuilt only when the requirements file changes. Prints its python.
python_env() {
  local name="$1" requirements="$2"
  local venv="$GT_CACHE/venv-$name" stamp
  stamp="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.requirements" 2>/dev/null)" != "$stamp" ]]; then
    log "Preparing Python environment '$name' ($requirements)"
    python3 -m venv --clear "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
    echo "$stamp" >"$venv/.requirements"
  fi
  echo "$venv/bin/python"
}
