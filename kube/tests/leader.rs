//! Leader election over a Lease, in paused time, against a scripted API
//! double that checks `resourceVersion` on every write as the API server does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support {
    pub mod fake_api;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use greenthread_kube::leader::{Decision, Elector, Holding, Timing, decide};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use support::fake_api::FakeApi;
use tokio::sync::watch;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases/greenthread-scheduler";

struct Replica {
    leading: watch::Receiver<bool>,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

fn replica(api: &Arc<FakeApi>, name: &str) -> Replica {
    let cut = Arc::new(AtomicBool::new(false));
    let leases: Api<Lease> = Api::namespaced(api.client(cut.clone()), "default");
    let elector = Elector::new(leases, "greenthread-scheduler", name, Timing::default());
    let (tx, leading) = watch::channel(false);
    let task = tokio::spawn(elector.run(tx));
    Replica { leading, cut, task }
}

fn leads(r: &Replica) -> bool {
    *r.leading.borrow()
}

/// Steps time by 100 ms `n` times, checking at every step that at most one replica leads.
async fn run_for(n: usize, replicas: &[&Replica]) {
    for _ in 0..n {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let leaders = replicas.iter().filter(|r| leads(r)).count();
        assert!(leaders <= 1, "{leaders} replicas lead at once");
    }
}

fn holder(api: &FakeApi) -> String {
    api.get(LEASE).unwrap()["spec"]["holderIdentity"].as_str().unwrap().to_owned()
}

#[tokio::test(start_paused = true)]
async fn of_two_replicas_exactly_one_leads_and_keeps_leading_while_it_renews() {
    let api = FakeApi::new();
    let (a, b) = (replica(&api, "a"), replica(&api, "b"));
    run_for(10, &[&a, &b]).await;
    assert!(leads(&a) ^ leads(&b), "one of them leads");
    let first = holder(&api);
    run_for(600, &[&a, &b]).await;
    assert_eq!(holder(&api), first, "a renewing leader keeps the Lease");
    assert_eq!(api.get(LEASE).unwrap()["spec"]["leaseTransitions"], 0);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leader_is_replaced_once_its_lease_expires_and_not_before() {
    let api = FakeApi::new();
    let a = replica(&api, "a");
    run_for(5, &[&a]).await;
    assert!(leads(&a));
    let b = replica(&api, "b");
    run_for(5, &[&a, &b]).await;
    assert!(!leads(&b));
    a.task.abort();
    // 15 s of Lease from a's last renewal (at most 2 s ago): b waits it out.
    run_for(120, &[&b]).await;
    assert!(!leads(&b), "b took the Lease before it expired");
    run_for(60, &[&b]).await;
    assert!(leads(&b), "b took over after the Lease expired");
    assert_eq!(holder(&api), "b");
    assert_eq!(api.get(LEASE).unwrap()["spec"]["leaseTransitions"], 1);
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_from_the_api_steps_down_before_another_may_lead() {
    let api = FakeApi::new();
    let a = replica(&api, "a");
    run_for(5, &[&a]).await;
    let b = replica(&api, "b");
    run_for(5, &[&a, &b]).await;
    assert!(leads(&a) && !leads(&b));
    a.cut.store(true, Ordering::SeqCst);
    let mut a_stepped_down = None;
    let mut b_took_over = None;
    for step in 0..300 {
        run_for(1, &[&a, &b]).await;
        if !leads(&a) && a_stepped_down.is_none() {
            a_stepped_down = Some(step);
        }
        if leads(&b) && b_took_over.is_none() {
            b_took_over = Some(step);
        }
    }
    let (down, up) = (a_stepped_down.expect("a stepped down"), b_took_over.expect("b took over"));
    assert!(down < up, "a stopped at step {down}, b started at step {up}");
    // The renew deadline (10 s) and the Lease duration (15 s), in 100 ms steps, give or take a retry.
    assert!((90..=125).contains(&down), "a stepped down at step {down}");
    assert!((130..=175).contains(&up), "b took over at step {up}");
}

#[test]
fn the_rule_reads_the_lease_as_client_go_does() {
    let now: Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
    let held = |holder: &str, renewed: &str| Holding {
        holder: Some(holder.into()),
        renewed: Some(renewed.parse().unwrap()),
        duration: Duration::from_secs(15),
    };
    assert_eq!(decide(None, "me", now), Decision::Acquire);
    assert_eq!(decide(Some(&held("me", "2026-01-01T00:00:00Z")), "me", now), Decision::Renew);
    assert_eq!(
        decide(Some(&held("other", "2026-01-01T00:00:20Z")), "me", now),
        Decision::Follow { leader: "other".into() }
    );
    assert_eq!(decide(Some(&held("other", "2026-01-01T00:00:15Z")), "me", now), Decision::Acquire);
    let released = Holding { holder: None, renewed: None, duration: Duration::from_secs(15) };
    assert_eq!(decide(Some(&released), "me", now), Decision::Acquire);
}

#[tokio::test]
async fn a_replica_labels_its_own_pod_leader_or_standby() {
    use greenthread_kube::leader::{ROLE_LABEL, mark_role};
    let api = FakeApi::new();
    let pod = "/api/v1/namespaces/default/pods/gt-scheduler-abc";
    api.seed(pod, serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gt-scheduler-abc", "labels": {"app": "gt"}}}));
    let client = api.client(Arc::new(AtomicBool::new(false)));
    mark_role(&client, "default", "gt-scheduler-abc", true).await.unwrap();
    assert_eq!(api.get(pod).unwrap()["metadata"]["labels"][ROLE_LABEL], "leader");
    mark_role(&client, "default", "gt-scheduler-abc", false).await.unwrap();
    let labels = api.get(pod).unwrap()["metadata"]["labels"].clone();
    assert_eq!((labels[ROLE_LABEL].as_str(), labels["app"].as_str()), (Some("standby"), Some("gt")));
}
