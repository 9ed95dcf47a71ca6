//! The chart's copy of the CRDs is exactly what the code generates.
//! `UPDATE_CRDS=1 cargo test -p greenthread-kube --test crd` rewrites it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use greenthread_kube::{ModelResource, crds_yaml};
use kube::CustomResourceExt;

fn chart_copy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/greenthread/crds/greenthread.ai_models.yaml")
}

#[test]
fn the_charts_crds_match_the_code() {
    let generated = crds_yaml().unwrap();
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::write(chart_copy(), &generated).unwrap();
    }
    let stored = std::fs::read_to_string(chart_copy()).unwrap_or_default();
    assert!(
        stored == generated,
        "charts/greenthread/crds/ is out of date: run `UPDATE_CRDS=1 cargo test -p greenthread-kube --test crd`"
    );
}

#[test]
fn the_model_crd_is_namespaced_with_status_and_printer_columns() {
    let crd = serde_json::to_value(ModelResource::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "models.greenthread.ai");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object(), "status is a subresource: {version}");
    let columns: Vec<&str> =
        version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["State", "Tier", "Replicas", "Age"]);
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["required"], serde_json::json!(["artifact"]));
    assert_eq!(spec["properties"]["warmTier"]["enum"], serde_json::json!(["ram", "disk", "object", null]));
    assert_eq!(spec["properties"]["maxReplicas"]["minimum"].as_f64(), Some(1.0));
}
