# Makes a PostgreSQL server available to the tests and exports its URL as
# GREENTHREAD_TEST_POSTGRES. Sourced by scripts/test.sh (after lib.sh).
#
# A server already answering on 127.0.0.1:5432 with trust auth for user
# `postgres` is used as it is. Otherwise the Debian package is installed if
# missing, and a private server is started from a data directory under the
# cache, on its own port; later runs reuse it.

pg_url_ok() {
  python3 - "$1" <<'PY' >/dev/null 2>&1
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
socket.create_connection((u.hostname, u.port or 5432), timeout=1).close()
PY
}

pg_accepts() {
  local host="$1" port="$2"
  command -v psql >/dev/null 2>&1 || return 1
  psql -h "$host" -p "$port" -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1
}

ensure_postgres() {
  if [[ -n "${GREENTHREAD_TEST_POSTGRES:-}" ]]; then
    pg_url_ok "$GREENTHREAD_TEST_POSTGRES" || die "GREENTHREAD_TEST_POSTGRES=$GREENTHREAD_TEST_POSTGRES does not answer"
    return
  fi
  if pg_accepts 127.0.0.1 5432; then
    export GREENTHREAD_TEST_POSTGRES="postgres://postgres@127.0.0.1:5432/postgres"
    return
  fi
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  if [[ -z "$bin" ]]; then
    log "Installing PostgreSQL (Debian package) for the store tests"
    apt_install postgresql postgresql-client
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  fi
  local data="$GT_CACHE/postgres" port=55432 run=()
  # PostgreSQL refuses to run as root: use the package's own user then.
  if [[ "$(id -u)" == 0 ]]; then
    run=(runuser -u postgres --)
    mkdir -p "$data"
    chown postgres "$data"
  fi
  if [[ ! -f "$data/PG_VERSION" ]]; then
    log "Creating a private PostgreSQL cluster in $data"
    "${run[@]}" "$bin/initdb" -D "$data" -U postgres -A trust >/dev/null
  fi
  if ! pg_accepts 127.0.0.1 "$port"; then
    "${run[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
  fi
  export GREENTHREAD_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
}
