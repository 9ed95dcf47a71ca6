//! Node discovery against the scripted API double: node-runtime pods by
//! label selector, GPUs from the nodes' allocatable `nvidia.com/gpu`, and
//! nodes that are lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support {
    pub mod fake_api;
}

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use greenthread_core::NodeId;
use greenthread_kube::discovery::{DiscoveredNode, list, lost};
use serde_json::{Value, json};
use support::fake_api::FakeApi;

const SELECTOR: &str = "app.kubernetes.io/name=greenthread,app.kubernetes.io/component=node";

fn node(name: &str, gpus: Option<&str>) -> Value {
    let mut allocatable = json!({"cpu": "64", "memory": "512Gi"});
    if let Some(g) = gpus {
        allocatable["nvidia.com/gpu"] = json!(g);
    }
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"allocatable": allocatable}})
}

fn pod(name: &str, node: Option<&str>, component: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "gt", "labels": {"app.kubernetes.io/name": "greenthread", "app.kubernetes.io/component": component}},
        "spec": {"nodeName": node, "containers": [{"name": "node", "image": "greenthread"}]},
        "status": {"podIP": node.map(|_| "10.0.0.7"), "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    })
}

fn seeded() -> Arc<FakeApi> {
    let api = FakeApi::new();
    api.seed("/api/v1/nodes/gpu-a", node("gpu-a", Some("8")));
    api.seed("/api/v1/nodes/gpu-b", node("gpu-b", Some("2")));
    api.seed("/api/v1/nodes/cpu-c", node("cpu-c", None));
    api.seed("/api/v1/namespaces/gt/pods/gt-node-1", pod("gt-node-1", Some("gpu-a"), "node", true));
    api.seed("/api/v1/namespaces/gt/pods/gt-node-2", pod("gt-node-2", Some("gpu-b"), "node", false));
    api.seed("/api/v1/namespaces/gt/pods/gt-node-3", pod("gt-node-3", None, "node", false));
    api.seed("/api/v1/namespaces/gt/pods/gt-scheduler-0", pod("gt-scheduler-0", Some("cpu-c"), "scheduler", true));
    api
}

#[tokio::test]
async fn node_runtime_pods_are_found_by_label_with_their_nodes_gpus() {
    let api = seeded();
    let client = api.client(Arc::new(AtomicBool::new(false)));
    let found = list(&client, "gt", SELECTOR).await.unwrap();
    assert_eq!(
        found,
        [
            DiscoveredNode {
                node: NodeId::parse("gpu-a").unwrap(),
                pod: "gt-node-1".into(),
                address: Some("10.0.0.7".into()),
                ready: true,
                gpus: 8
            },
            DiscoveredNode {
                node: NodeId::parse("gpu-b").unwrap(),
                pod: "gt-node-2".into(),
                address: Some("10.0.0.7".into()),
                ready: false,
                gpus: 2
            },
        ],
        "the unscheduled pod and the scheduler's pod are not nodes"
    );
}

#[tokio::test]
async fn a_node_whose_pod_goes_away_or_turns_unready_is_lost() {
    let api = seeded();
    let client = api.client(Arc::new(AtomicBool::new(false)));
    let before = list(&client, "gt", SELECTOR).await.unwrap();
    api.seed("/api/v1/namespaces/gt/pods/gt-node-2", pod("gt-node-2", Some("gpu-b"), "node", true));
    let now = list(&client, "gt", SELECTOR).await.unwrap();
    assert!(lost(&before, &now).is_empty(), "a node turning ready is not lost");
    let mut gone = now.clone();
    gone.retain(|n| n.node.as_str() != "gpu-a");
    gone[0].ready = false;
    let lost: Vec<String> = lost(&now, &gone).iter().map(ToString::to_string).collect();
    assert_eq!(lost, ["gpu-a", "gpu-b"]);
}
