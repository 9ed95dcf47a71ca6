#!/usr/bin/env bash
# A real, CRD-serving Kubernetes API server for the controller's integration
# tests, on a machine without a cluster.
#
#   scripts/apiserver.sh build        build once (skipped when up to date)
#   scripts/apiserver.sh start DIR    start etcd + the API server with state in
#                                     DIR; prints DIR/kubeconfig once ready
#   scripts/apiserver.sh stop DIR     stop what `start DIR` started
#
# No kube-apiserver binary can be had from the registries this project
# reaches, but Debian ships Kubernetes' Go libraries as source packages. The
# build fetches them (with Go and etcd) from Debian unstable through a private
# apt configuration (the system's sources and dpkg database stay untouched),
# unpacks them under the cache, and compiles a small launcher,
# scripts/apiserver/main.go, around k8s.io/apiextensions-apiserver. That server
# serves CRDs, custom resources, watches, server-side apply and the status
# subresource; it has no Pods, Namespaces, Leases, Events or RBAC (see
# main.go). Clients authenticate with the client certificate in the
# kubeconfig.
#
# Debian unstable moves daily: the Go release and the Kubernetes series are
# pinned below, a built binary is reused until this script or the launcher
# changes, and every step that can break says so and exits non-zero.
source "$(dirname "$0")/lib.sh"

APISERVER_CACHE="$GT_CACHE/apiserver"
BIN="$APISERVER_CACHE/bin"
DEBIAN_MIRROR="${GREENTHREAD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SUITE=unstable
# Go as Debian unstable builds its Kubernetes packages with (etcd-server
# 3.5.30-2 reports go1.26): a named minor release, not the moving golang-go.
GO_PACKAGE=golang-1.26-go
GO_VERSION=1.26
# The Kubernetes library series main.go is written against (Debian's
# golang-k8s-*-dev 0.36.x = Kubernetes 1.36).
K8S_SERIES=0.36
PACKAGES=("$GO_PACKAGE" golang-k8s-apiextensions-apiserver-dev etcd-server)
# How long `start` waits for /readyz.
READY_TIMEOUT="${GREENTHREAD_APISERVER_TIMEOUT:-60}"

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- build -------------------------------------------------------------------

# apt_private ARGS...: apt-get (or apt-cache, with APT_TOOL=apt-cache) against
# Debian unstable only, with its own lists, cache and an empty dpkg status
# under the cache: nothing of the system's apt or dpkg state is read or
# written. Signatures are still checked with the system's Debian keyring.
apt_private() {
  local apt="$APISERVER_CACHE/apt"
  "${APT_TOOL:-apt-get}" \
    -o Dir::Etc::SourceList="$apt/sources.list" \
    -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::Etc::Preferences=/dev/null \
    -o Dir::Etc::PreferencesParts=/dev/null \
    -o Dir::State="$apt" \
    -o Dir::State::Lists="$apt/lists" \
    -o Dir::State::status="$apt/status" \
    -o Dir::Cache="$apt" \
    -o Dir::Cache::Archives="$apt/archives" \
    -o APT::Architecture=amd64 \
    -o Acquire::Languages=none \
    -o APT::Sandbox::User=root \
    -o APT::Install-Recommends=false \
    "$@"
}

# The inputs a built binary depends on; when they change, build again.
# Debian's package versions are deliberately not among them: a working
# binary is kept when unstable moves on (they are recorded in versions.txt).
build_stamp() {
  cat "$0" "$ROOT/scripts/apiserver/main.go" | sha256sum | cut -d' ' -f1
}

build() {
  if [[ -x "$BIN/gt-apiserver" && -x "$BIN/etcd" &&
        "$(cat "$BIN/.stamp" 2>/dev/null)" == "$(build_stamp)" ]]; then
    return
  fi
  [[ "$(dpkg --print-architecture)" == amd64 ]] || die "apiserver.sh fetches amd64 packages; this machine is $(dpkg --print-architecture)"
  need apt-get "it fetches the Debian packages the API server is built from"
  need dpkg "it unpacks the Debian packages"
  local started=$SECONDS apt="$APISERVER_CACHE/apt" root="$APISERVER_CACHE/root"

  log "Fetching Go, Kubernetes' Go sources and etcd from Debian $DEBIAN_SUITE (private apt configuration)"
  # Fresh archives each time, so only one version of each package is unpacked.
  rm -rf "$apt/archives" "$root"
  mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$BIN"
  echo "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" >"$apt/sources.list"
  : >"$apt/status"
  apt_private -qq update >&2 || die "apt-get update of Debian $DEBIAN_SUITE failed (mirror $DEBIAN_MIRROR)"

  # Fail early, with the versions in the message, when unstable has moved to
  # another Kubernetes series than the one main.go is written for.
  local k8s_version
  k8s_version="$(APT_TOOL=apt-cache apt_private show --no-all-versions golang-k8s-apiextensions-apiserver-dev 2>/dev/null |
    sed -n 's/^Version: //p' | head -1)"
  [[ -n "$k8s_version" ]] || die "Debian $DEBIAN_SUITE no longer has golang-k8s-apiextensions-apiserver-dev"
  [[ "$k8s_version" == "$K8S_SERIES".* ]] ||
    die "Debian $DEBIAN_SUITE now has golang-k8s-apiextensions-apiserver-dev $k8s_version, not $K8S_SERIES.x: check scripts/apiserver/main.go against it, then update K8S_SERIES in $0"

  # With an empty dpkg status apt resolves the whole dependency closure
  # (libc and all); only the Go packages and etcd are unpacked below.
  # In unstable a transition can leave these uninstallable for a few days.
  apt_private -y -qq install --download-only "${PACKAGES[@]}" >"$apt/download.log" 2>&1 || {
    tail -n 20 "$apt/download.log" >&2
    die "could not resolve or download ${PACKAGES[*]} from Debian $DEBIAN_SUITE (see $apt/download.log): unstable may be mid-transition"
  }

  log "Unpacking the Go packages and etcd into $root ($((SECONDS - started)) s so far)"
  mkdir -p "$root"
  local deb
  for deb in "$apt/archives"/golang-*.deb "$apt/archives"/etcd-server_*.deb; do
    [[ -f "$deb" ]] || die "expected packages are missing from $apt/archives"
    dpkg -x "$deb" "$root"
  done
  local goroot="$root/usr/lib/go-$GO_VERSION"
  [[ -x "$goroot/bin/go" ]] || die "$GO_PACKAGE did not provide $goroot/bin/go"

  log "Compiling the API server launcher (GOPATH mode; several minutes from cold; $((SECONDS - started)) s so far)"
  # GOPATH mode over Debian's source tree (/usr/share/gocode/src, unpacked
  # here): the packages' go.mod files are ignored and no module is fetched.
  local gopath="$APISERVER_CACHE/gopath"
  rm -rf "$gopath"
  mkdir -p "$gopath/src/gt-apiserver"
  cp "$ROOT/scripts/apiserver/main.go" "$gopath/src/gt-apiserver/"
  (
    cd "$gopath/src/gt-apiserver"
    export GOROOT="$goroot" GOPATH="$gopath:$root/usr/share/gocode" GO111MODULE=off \
      GOFLAGS= GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0 GOCACHE="$APISERVER_CACHE/gocache"
    "$goroot/bin/go" build -trimpath -ldflags='-s -w' -o "$BIN/gt-apiserver.new" .
  ) >"$APISERVER_CACHE/build.log" 2>&1 || {
    tail -n 30 "$APISERVER_CACHE/build.log" >&2
    die "compiling scripts/apiserver/main.go against golang-k8s-apiextensions-apiserver-dev $k8s_version failed (see $APISERVER_CACHE/build.log)"
  }
  mv "$BIN/gt-apiserver.new" "$BIN/gt-apiserver"
  # Debian's etcd is dynamically linked (glibc >= 2.34): check it runs here.
  # (Copied beside, then renamed: a running etcd keeps its old file.)
  cp "$root/usr/bin/etcd" "$BIN/etcd.new"
  mv "$BIN/etcd.new" "$BIN/etcd"
  "$BIN/etcd" --version >/dev/null 2>&1 || die "Debian $DEBIAN_SUITE's etcd does not run on this machine: $("$BIN/etcd" --version 2>&1 | head -3)"

  # Record what went in, for whoever debugs a difference between machines.
  for deb in "$apt/archives"/golang-k8s-*.deb "$apt/archives"/etcd-server_*.deb "$apt/archives/${GO_PACKAGE}"_*.deb; do
    dpkg-deb -f "$deb" Package Version | sed 's/^[A-Za-z]*: //' | paste -sd' '
  done >"$BIN/versions.txt"
  build_stamp >"$BIN/.stamp"
  # The unpacked tree (~3 GB) and the .debs are not needed to run; the Go
  # build cache is kept so a change to main.go recompiles only the launcher.
  rm -rf "$root" "$apt/archives" "$gopath"
  log "API server built in $((SECONDS - started)) s ($(grep -m1 apiextensions "$BIN/versions.txt"))"
}

# --- start / stop ------------------------------------------------------------

# free_port: a TCP port on 127.0.0.1 that is free now (another process could
# still take it before we bind it; unlikely on a test machine).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# make_certs DIR: a CA, a serving certificate for 127.0.0.1/localhost and a
# client certificate (CN is the user name), all signed by the CA. rustls (in
# kube-rs) refuses a CA certificate as a server certificate and wants the IP
# in subjectAltName, hence the explicit extensions.
make_certs() {
  local pki="$1"
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout ca.key -out ca.crt \
      -days 3650 -subj "/CN=greenthread-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=clientAuth" >client.ext
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout server.key -out server.csr \
      -subj "/CN=greenthread-test-apiserver"
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 3650 -extfile server.ext
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout client.key -out client.csr \
      -subj "/O=system:masters/CN=greenthread-test"
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 3650 -extfile client.ext
  ) >"$pki/openssl.log" 2>&1 || { cat "$pki/openssl.log" >&2; die "generating certificates in $pki failed"; }
}

# alive PID DIR: PID is running and is one of ours (its command line names
# DIR), so a recycled pid is never signalled.
alive() {
  tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$2"
}

start() {
  local dir="$1"
  need openssl "it makes the API server's certificates"
  need curl "it waits for the API server to be ready"
  need python3 "it picks free ports"
  build
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [[ -f "$dir/pids" ]]; then
    local pid
    for pid in $(cat "$dir/pids"); do
      alive "$pid" "$dir" && die "an API server is already running from $dir (pid $pid): run '$0 stop $dir' first"
    done
    rm -f "$dir/pids"
  fi

  make_certs "$dir/pki"
  local etcd_port peer_port port
  etcd_port="$(free_port)"
  peer_port="$(free_port)"
  port="$(free_port)"

  # etcd without fsync: test data need not survive a crash, and fsync is the
  # slow part on small virtual disks.
  "$BIN/etcd" --name default --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync --log-level warn >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/pids"

  "$BIN/gt-apiserver" --bind-address 127.0.0.1 --secure-port "$port" \
    --tls-cert-file "$dir/pki/server.crt" --tls-private-key-file "$dir/pki/server.key" \
    --client-ca-file "$dir/pki/ca.crt" --cert-dir "$dir/pki" \
    --etcd-servers "http://127.0.0.1:$etcd_port" >"$dir/apiserver.log" 2>&1 &
  echo $! >>"$dir/pids"
  local apiserver_pid=$!

  # Ready means /readyz answers "ok" to our client certificate: etcd is up,
  # the CRD informers have synced and the post-start hooks have run.
  local deadline=$((SECONDS + READY_TIMEOUT))
  until curl -sf --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/client.crt" --key "$dir/pki/client.key" \
      "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    if ! alive "$apiserver_pid" "$dir" || ((SECONDS >= deadline)); then
      tail -n 20 "$dir/etcd.log" "$dir/apiserver.log" >&2 || true
      stop "$dir"
      die "the API server did not become ready within ${READY_TIMEOUT} s (logs: $dir/apiserver.log, $dir/etcd.log)"
    fi
    sleep 0.2
  done

  # Certificates are embedded, so the kubeconfig stands alone (kube-rs's
  # Config::from_custom_kubeconfig, KUBECONFIG, kubectl).
  local b64="base64 -w0"
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: greenthread-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $($b64 <"$dir/pki/ca.crt")
users:
- name: greenthread-test
  user:
    client-certificate-data: $($b64 <"$dir/pki/client.crt")
    client-key-data: $($b64 <"$dir/pki/client.key")
contexts:
- name: greenthread-test
  context:
    cluster: greenthread-test
    user: greenthread-test
    namespace: default
current-context: greenthread-test
EOF
  log "API server ready at https://127.0.0.1:$port (pids $(paste -sd' ' "$dir/pids"))"
  echo "$dir/kubeconfig"
}

stop() {
  local dir="$1" pid pids
  [[ -f "$dir/pids" ]] || { log "nothing started in $dir"; return 0; }
  dir="$(cd "$dir" && pwd)"
  # The API server first (it is the last line), then etcd under it.
  pids="$(tac "$dir/pids")"
  for pid in $pids; do
    alive "$pid" "$dir" || continue
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while alive "$pid" "$dir" && ((SECONDS < deadline)); do sleep 0.1; done
    alive "$pid" "$dir" && kill -9 "$pid" 2>/dev/null || true
  done
  rm -f "$dir/pids"
}

case "${1:-}" in
  build) build ;;
  start) [[ $# == 2 ]] || usage; start "$2" ;;
  stop) [[ $# == 2 ]] || usage; stop "$2" ;;
  *) usage ;;
esac
