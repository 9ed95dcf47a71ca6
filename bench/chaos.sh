#!/usr/bin/env bash
# Chaos on a cluster on loopback (scheduler, two nodes, a gateway, a private
# PostgreSQL) under steady load: each part killed with SIGKILL and restarted
# in turn, then a node's disk cache filled. Prints markdown tables; exits 1
# when a request fails outside the killed part, hangs, goes unmetered or is
# metered twice, or the audit log or keys change.
#   bench/chaos.sh
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
python3 scripts/fetch_model.py qwen2.5-coder-0.5b-instruct >/dev/null
python3 scripts/fetch_model.py gemma-3-270m >/dev/null
# PostgreSQL's server binaries: the benchmark runs its own server, to kill it.
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || apt_install postgresql postgresql-client
python="$(python_env e2e e2e/requirements.txt)"
binary="$CARGO_TARGET_DIR/$BENCH_PROFILE/greenthread"
if [[ -z "$BENCH_SMOKE" || ! -x "$binary" ]]; then
  cargo build --profile "$BENCH_PROFILE" --locked -p greenthread-api --bin greenthread >&2
fi
GREENTHREAD_BIN="$binary" GREENTHREAD_BENCH_SMOKE="$BENCH_SMOKE" "$python" bench/chaos.py
