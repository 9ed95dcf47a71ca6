#!/usr/bin/env bash
# The console's component tests (web/tests) in headless Chromium, through
# wasm-bindgen-test-runner and Debian's chromedriver. scripts/build-web.sh
# installs the runner; ensure_chromium installs Chromium and the driver.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_chromium
runner="$GT_CACHE/tools/bin/wasm-bindgen-test-runner"
[[ -x "$runner" ]] || die "$runner is missing: run scripts/build-web.sh first"
log "Console component tests (headless Chromium)"
# The runner reads web/webdriver.json (Chromium's flags) from the directory it runs in.
cd web
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$runner" \
  cargo test --locked --target wasm32-unknown-unknown "$@"
