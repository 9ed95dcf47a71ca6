#!/usr/bin/env bash
# Builds the web console (web/) to WebAssembly and writes its assets to
# web/dist, where the `greenthread` build embeds them. Installs what it needs
# once: the wasm32 target and the wasm-bindgen CLI of the version web/Cargo.toml pins.
source "$(dirname "$0")/lib.sh"
need cargo "install Rust from https://rustup.rs"
need rustup "the wasm32 target is added with rustup"
cd "$ROOT"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "Adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown >&2 || die "rustup could not add wasm32-unknown-unknown"
fi

# The CLI must be exactly the wasm-bindgen version the app links.
bindgen_version="$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' web/Cargo.toml)"
# The test runner runs the component tests (web/tests) in headless Chromium.
bindgen="$GT_CACHE/tools/bin/wasm-bindgen"
runner="$GT_CACHE/tools/bin/wasm-bindgen-test-runner"
if [[ "$("$bindgen" --version 2>/dev/null)" != "wasm-bindgen $bindgen_version" \
   || "$("$runner" --version 2>/dev/null)" != "wasm-bindgen-test-runner $bindgen_version" ]]; then
  log "Installing wasm-bindgen-cli $bindgen_version (once)"
  cargo install --quiet --force --root "$GT_CACHE/tools" wasm-bindgen-cli --version "$bindgen_version" \
    --bin wasm-bindgen --bin wasm-bindgen-test-runner >&2
fi

log "Building the web console"
cargo build --quiet --locked --manifest-path web/Cargo.toml --target wasm32-unknown-unknown --release >&2
mkdir -p web/dist
"$bindgen" --target web --no-typescript --out-dir web/dist --out-name console \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/greenthread-web.wasm"
cp web/index.html web/style.css web/dist/
echo "$ROOT/web/dist"
