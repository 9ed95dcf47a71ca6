#!/usr/bin/env bash
# The container image the Helm chart runs, built without any registry: a
# minimal Debian root filesystem made from Debian's packages (mmdebstrap),
# the stripped release binary (with its console) and ONNX Runtime's library
# added as a second layer, a non-root user, assembled with umoci into an OCI
# image layout and, with skopeo, a tarball that `docker load` and `podman
# load` take. The Dockerfile builds the same layout for people with a registry.
#
#   scripts/image.sh                   build the release binary, then the image
#   scripts/image.sh --binary PATH     the image around a binary already built
#   scripts/image.sh --refresh         fetch Debian's packages again (security updates)
#
# Writes, under dist/ (or $GREENTHREAD_DIST), beside what scripts/release.sh writes:
#   image/                 the OCI image layout, its one tag the version
#   greenthread-image.tar  REPOSITORY:VERSION for `docker load -i` / `podman load -i`
# REPOSITORY is the chart's default (charts/greenthread/values.yaml), VERSION the workspace's.
# Prints the image's name.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

release_args=() refresh=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) release_args+=(--binary "$2"); shift 2 ;;
    --refresh) refresh=1; shift ;;
    *) die "unknown argument: $1 (see the head of scripts/image.sh)" ;;
  esac
done

# Debian's image tools, installed once where this machine's package manager allows.
tools=(mmdebstrap umoci skopeo)
missing=()
for tool in "${tools[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "Installing ${missing[*]} from Debian (once)"
  apt_install --no-install-recommends "${missing[@]}" || die "apt-get could not install ${missing[*]}"
fi

repository="$(sed -n 's/^  repository: *//p' charts/greenthread/values.yaml | head -1)"
[[ -n "$repository" ]] || die "charts/greenthread/values.yaml names no image.repository"
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
dist="${GREENTHREAD_DIST:-$ROOT/dist}"
export GREENTHREAD_DIST="$dist"
# Times inside the image are the commit's, so the same commit gives the same layers.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"

scripts/release.sh "${release_args[@]}" >/dev/null

# The base: Debian's essential set, CA certificates, and espeak-ng's library
# for the voices; no package manager, no documentation. Built once per package
# list and kept under the cache (seconds later on; --refresh to rebuild).
suite=bookworm
packages=ca-certificates,libespeak-ng1
base_key="$(printf '%s %s 1' "$suite" "$packages" | sha256sum | cut -c1-16)"
base="$GT_CACHE/image/base-$base_key.tar"
if [[ -n "$refresh" || ! -f "$base" ]]; then
  log "Building the Debian $suite root filesystem (mmdebstrap; about a minute and a half)"
  mkdir -p "$GT_CACHE/image"
  # mmdebstrap writes a tarball where the name ends in .tar (a folder otherwise).
  partial="$GT_CACHE/image/partial-$base_key.tar"
  mmdebstrap --quiet --variant=essential --include="$packages" --skip=output/dev \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='echo "greenthread:x:10001:10001::/home/greenthread:/usr/sbin/nologin" >>"$1/etc/passwd"' \
    --customize-hook='echo "greenthread:x:10001:" >>"$1/etc/group"' \
    --customize-hook='install -d -m 0750 -o 10001 -g 10001 "$1/home/greenthread"' \
    --customize-hook='rm -rf "$1/var/cache/apt" "$1/var/lib/apt/lists" "$1/var/log"/*' \
    "$suite" "$partial" >&2 || die "mmdebstrap failed: are Debian's package mirrors reachable?"
  mv "$partial" "$base"
fi

log "Assembling the OCI image $repository:$version"
layout="$dist/image"
app="$(mktemp -d)"
trap 'rm -rf "$app"' EXIT
install -D -m 0755 "$dist/greenthread" "$app/usr/local/bin/greenthread"
install -D -m 0644 "$(scripts/onnxruntime.sh)" "$app/usr/local/lib/libonnxruntime.so"
touch -d "@$SOURCE_DATE_EPOCH" "$app/usr/local/bin/greenthread" "$app/usr/local/lib/libonnxruntime.so"
rm -rf "$layout"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci raw add-layer --image "$layout:$version" --history.created="$created" \
  --history.created_by="mmdebstrap --variant=essential --include=$packages $suite" "$base"
umoci insert --image "$layout:$version" --history.created="$created" \
  --history.created_by="greenthread $version ($commit) and ONNX Runtime's library" "$app/usr/local" /usr/local
umoci config --image "$layout:$version" --created="$created" --history.created="$created" \
  --author="GreenThread" --architecture="$(dpkg --print-architecture 2>/dev/null || echo amd64)" --os=linux \
  --config.user=10001:10001 --config.workingdir=/home/greenthread \
  --config.entrypoint=/usr/local/bin/greenthread --config.cmd=--help --config.exposedports=8080/tcp \
  --config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env=GREENTHREAD_ONNXRUNTIME=/usr/local/lib/libonnxruntime.so \
  --config.label=org.opencontainers.image.title=greenthread \
  --config.label=org.opencontainers.image.version="$version" \
  --config.label=org.opencontainers.image.revision="$commit" \
  --config.label=org.opencontainers.image.source=https://github.com/greenthread-ai/greenthread
umoci gc --layout "$layout"

rm -f "$dist/greenthread-image.tar"
skopeo copy --quiet "oci:$layout:$version" "docker-archive:$dist/greenthread-image.tar:$repository:$version" >&2
printf '%s:%s\n' "$repository" "$version"
