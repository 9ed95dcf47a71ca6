"""The Helm chart with the real helm binary: lint, render with the default
and the GPU values, validate every rendered object against the Kubernetes
1.33 schemas (kubernetes-validate, strict), check what a default install
runs, and check that values.schema.json refuses bad values. Custom kinds
are checked against their own schemas: a Model against the CRD's
openAPIV3Schema, a ServiceMonitor against the fields the Prometheus
Operator requires."""
import os
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[1] / "greenthread"
GPU_VALUES = CHART / "ci" / "gpu-values.yaml"
KUBE_VERSION = "1.33.0"


def helm(*args: str) -> subprocess.CompletedProcess:
    binary = os.environ.get("GREENTHREAD_HELM")
    if not binary:
        pytest.fail("GREENTHREAD_HELM is not set: run these tests through scripts/test-chart.sh")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def render(*values: str, sets: tuple[str, ...] = ()) -> list[dict]:
    args = ["template", "gt", str(CHART), "--namespace", "greenthread", "--include-crds"]
    for v in values:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    out = helm(*args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("values", [[], [str(GPU_VALUES)]], ids=["default", "gpu"])
def test_helm_lint_strict_passes(values):
    args = ["lint", "--strict", str(CHART)]
    for v in values:
        args += ["-f", v]
    out = helm(*args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("values", [[], [str(GPU_VALUES)]], ids=["default", "gpu"])
def test_every_rendered_object_is_valid_kubernetes(values):
    docs = render(*values)
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "DaemonSet", "Service", "ServiceAccount"} <= kinds
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            endpoint = doc["spec"]["endpoints"][0]
            assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
            # /metrics needs an admin key: the bootstrap one, from the chart's Secret.
            assert endpoint["authorization"]["type"] == "Bearer"
            assert endpoint["authorization"]["credentials"]["key"] == "admin-token"
            assert doc["spec"]["selector"]["matchLabels"]
            [components] = doc["spec"]["selector"]["matchExpressions"]
            assert sorted(components["values"]) == ["api", "scheduler"], "request metrics live on the api pods"
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}")


def component(docs, kind, name):
    found = [d for d in by_kind(docs, kind) if d["metadata"]["labels"].get("app.kubernetes.io/component") == name]
    assert len(found) == 1, f"one {kind} for {name}, not {len(found)}"
    return found[0]


def test_a_default_install_runs_leader_elected_schedulers_gpu_nodes_and_postgresql():
    docs = render()
    scheduler = component(docs, "Deployment", "scheduler")
    assert scheduler["spec"]["replicas"] == 2
    container = scheduler["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == ["serve", "--kubernetes", "--no-local-node"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["GREENTHREAD_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert "--drain-timeout=30s" in container["args"]
    assert scheduler["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45
    service = component(docs, "Service", "scheduler")
    assert service["spec"]["selector"]["greenthread.ai/role"] == "leader", "the Service reaches the leader alone"
    assert service["spec"]["type"] == "ClusterIP"

    api = component(docs, "Deployment", "api")
    assert api["spec"]["replicas"] == 2
    pod = api["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False, "the api tier needs no Kubernetes API"
    gateway = pod["containers"][0]
    assert gateway["args"][0] == "gateway"
    # A SIGTERM drains: readiness off, streams in flight finish, then the pod goes.
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert "--drain-timeout=30s" in gateway["args"] and pod["terminationGracePeriodSeconds"] == 45
    assert gateway["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert f"--scheduler=http://{service['metadata']['name']}:8080" in gateway["args"]
    env = {e["name"]: e for e in gateway["env"]}
    assert env["GREENTHREAD_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
    assert env["GREENTHREAD_CLUSTER_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "cluster-token"
    public = component(docs, "Service", "api")
    assert public["spec"]["selector"]["app.kubernetes.io/component"] == "api"

    node = by_kind(docs, "DaemonSet")[0]["spec"]["template"]["spec"]
    runtime = node["containers"][0]
    assert runtime["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert runtime["args"][0] == "node" and "--ram-cache=32Gi" in runtime["args"]
    assert any(t["key"] == "nvidia.com/gpu" for t in node["tolerations"])
    assert node["volumes"][0]["hostPath"]["path"] == "/var/lib/greenthread"

    assert by_kind(docs, "StatefulSet")[0]["spec"]["template"]["spec"]["containers"][0]["image"].startswith("postgres")
    secret = by_kind(docs, "Secret")[0]
    assert set(secret["data"]) == {"cluster-token", "admin-token", "postgres-password", "database-url"}
    assert not by_kind(docs, "Ingress") and not by_kind(docs, "ServiceMonitor")


def test_rbac_grants_what_the_scheduler_uses_and_no_more():
    docs = render()
    rules = [r for kind in ("ClusterRole", "Role") for role in by_kind(docs, kind) for r in role["rules"]]
    grants = {(g, res): set(r["verbs"]) for r in rules for g in r["apiGroups"] for res in r["resources"]}
    assert grants[("coordination.k8s.io", "leases")] == {"get", "create", "update"}
    assert grants[("greenthread.ai", "models")] >= {"get", "list", "watch", "patch"}
    assert grants[("greenthread.ai", "models/status")] >= {"patch"}
    assert grants[("greenthread.ai", "models/finalizers")] >= {"update"}
    assert grants[("", "pods")] == {"get", "list", "watch", "patch"}
    assert grants[("", "nodes")] == {"get", "list", "watch"}
    assert grants[("events.k8s.io", "events")] == {"create", "patch"}
    assert not any("delete" in verbs or "*" in verbs for verbs in grants.values())


def test_gpu_values_take_every_gpu_and_route_through_the_ingress():
    docs = render(str(GPU_VALUES))
    runtime = by_kind(docs, "DaemonSet")[0]["spec"]["template"]["spec"]
    assert runtime["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 8
    # Local artifacts name the models folder, which nodes alone open (the others check names).
    for part in ("node", "scheduler", "api"):
        kind = "DaemonSet" if part == "node" else "Deployment"
        args = component(docs, kind, part)["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--artifact-dir=/models" in args, (part, args)
    assert runtime["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert not by_kind(docs, "StatefulSet") and not by_kind(docs, "Secret"), "external database and secret"
    ingress = by_kind(docs, "Ingress")[0]["spec"]
    assert ingress["tls"][0]["secretName"] == "llm-example-com-tls"
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == component(docs, "Service", "api")["metadata"]["name"], "the Ingress reaches the api tier"
    assert component(docs, "Deployment", "api")["spec"]["replicas"] == 4
    assert by_kind(docs, "Role")[0]["metadata"]["namespace"] == "models"


@pytest.mark.parametrize("bad, complaint", [
    ("scheduler.replicas=0", "minimum"),
    ("api.replicas=0", "minimum"),
    ("limits.wakeTimeout=soon", "does not match"),
    ("node.ramCache=lots", "does not match"),
    ("image.pullPolicy=Sometimes", "value must be one of"),
    ("database.url=mysql://x", "does not match"),
    ("node.hostPath=relative/path", "does not match"),
    ("ingress.enabled=maybe", "got string, want boolean"),
    ("nodes.enabled=true", "additional properties"),
])
def test_values_schema_refuses_bad_values(bad, complaint):
    out = helm("template", "gt", str(CHART), "--set", bad)
    assert out.returncode != 0, f"{bad} was accepted"
    assert complaint in out.stderr, out.stderr


def test_a_model_resource_is_checked_against_the_crd_schema():
    crd = by_kind(render(), "CustomResourceDefinition")[0]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    good = {"spec": {"artifact": "s3://models/qwen.gguf", "idleTimeout": "5m", "warmTier": "disk", "maxReplicas": 2}}
    jsonschema.validate(good, schema)
    for bad in [{"spec": {}}, {"spec": {"artifact": "s3://m.gguf", "warmTier": "gpu"}},
                {"spec": {"artifact": "s3://m.gguf", "maxReplicas": 0}},
                {"spec": {"artifact": "s3://m.gguf", "idleTimeout": "soon"}},
                {"spec": {"artifact": "s3://m.gguf", "minReplicas": 2}}]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def exported_metrics() -> set[str]:
    """The metric names the server registers (`greenthread_` + the name given to prometheus-client)."""
    import re
    source = Path(__file__).resolve().parents[2] / "api" / "src" / "metrics"
    names = set()
    for path in source.glob("*.rs"):
        names |= set(re.findall(r'register\(\s*"([a-z0-9_]+)"', path.read_text()))
    return {f"greenthread_{n}" for n in names}


def test_the_grafana_dashboard_charts_only_metrics_the_server_exports():
    import json
    import re
    dashboard = json.loads((CHART / "dashboards" / "greenthread.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {re.sub(r"_(bucket|sum|count|total)$", "", m) for e in exprs for m in re.findall(r"greenthread_[a-z0-9_]+", e)}
    exported = exported_metrics()
    assert len(exported) > 15, exported
    assert used <= exported, f"charted but not exported: {used - exported}"
    for wanted in ("time_to_first_token_seconds", "inter_token_latency_seconds", "request_queue_time_seconds",
                   "num_requests_waiting", "http_requests"):
        assert f"greenthread_{wanted}" in used, f"the dashboard charts {wanted}"
    docs = render(sets=("grafanaDashboard.enabled=true",))
    [config_map] = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["greenthread.json"]) == dashboard
    assert not [d for d in by_kind(render(), "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]


def test_every_component_exports_traces_to_the_collector_given():
    endpoint = "http://otel-collector.monitoring:4318"
    docs = render(sets=(f"otlpEndpoint={endpoint}",))
    workloads = by_kind(docs, "Deployment") + by_kind(docs, "DaemonSet")
    assert len(workloads) >= 3
    for w in workloads:
        env = {e["name"]: e.get("value") for c in w["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])
               if c["name"] != "postgresql"}
        if w["metadata"]["labels"].get("app.kubernetes.io/component") in ("api", "scheduler", "node"):
            assert env.get("GREENTHREAD_OTLP_ENDPOINT") == endpoint, w["metadata"]["name"]
    assert not any(e["name"] == "GREENTHREAD_OTLP_ENDPOINT" for w in by_kind(render(), "Deployment")
                   for c in w["spec"]["template"]["spec"]["containers"] for e in c.get("env", []))
