//! The manager across several nodes: placement by where weights are, nodes
//! lost, unreachable or joining, and replicas scaling between them.

use super::*;

fn handle(id: &str, node: &Arc<ScriptedNode>, budget: u64, holdings: Vec<(&str, Tier)>) -> NodeHandle {
    NodeHandle {
        id: NodeId::parse(id).unwrap(),
        control: node.clone(),
        device_budget: budget,
        holdings: holdings.into_iter().map(|(m, t)| (name(m), t)).collect(),
    }
}

async fn replicas_of(m: &ModelManager, model: &str) -> Vec<(String, String)> {
    let status = m.status().await.unwrap();
    let s = status.models.into_iter().find(|s| s.name.as_str() == model).unwrap();
    s.replica_list.into_iter().map(|r| (r.node.to_string(), r.state.name().to_owned())).collect()
}

#[tokio::test(start_paused = true)]
async fn a_model_wakes_on_the_node_that_holds_its_weights_in_ram() {
    let (n1, n2) = (node(&[("a", 10)], Duration::from_millis(50)), node(&[("a", 10)], Duration::from_millis(50)));
    let m = ModelManager::start(
        vec![handle("n1", &n1, 100, vec![]), handle("n2", &n2, 100, vec![("a", Tier::Ram)])],
        vec![model("a", 10, |_| {})],
        config(100),
        Arc::new(NoObserver),
    );
    let lease = m.acquire(&name("a")).await.unwrap();
    assert_eq!(lease.node().as_str(), "n2");
    assert_eq!((n1.wakes("a"), n2.wakes("a")), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn when_a_node_is_lost_its_models_come_back_on_another() {
    let (n1, n2) = (node(&[("a", 10)], Duration::from_millis(50)), node(&[("a", 10)], Duration::from_millis(50)));
    let m = ModelManager::start(
        vec![handle("n1", &n1, 100, vec![("a", Tier::Ram)]), handle("n2", &n2, 100, vec![])],
        vec![model("a", 10, |_| {})],
        config(100),
        Arc::new(NoObserver),
    );
    assert_eq!(m.acquire(&name("a")).await.unwrap().node().as_str(), "n1");
    m.remove_node(&NodeId::parse("n1").unwrap());
    let lease = m.acquire(&name("a")).await.unwrap();
    assert_eq!(lease.node().as_str(), "n2", "placed again on the surviving node");
    assert_eq!(replicas_of(&m, "a").await, [("n2".to_owned(), "serving".to_owned())]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_avoids_a_failed_node_gets_a_replica_elsewhere() {
    let (n1, n2) = (node(&[("a", 10)], Duration::from_millis(50)), node(&[("a", 10)], Duration::from_millis(50)));
    let m = ModelManager::start(
        vec![handle("n1", &n1, 100, vec![("a", Tier::Ram)]), handle("n2", &n2, 100, vec![])],
        vec![model("a", 10, |s| s.max_replicas = 2)],
        config(100),
        Arc::new(NoObserver),
    );
    drop(m.acquire(&name("a")).await.unwrap());
    let retry = m.acquire_avoiding(&name("a"), &[NodeId::parse("n1").unwrap()]).await.unwrap();
    assert_eq!(retry.node().as_str(), "n2");
}

#[tokio::test(start_paused = true)]
async fn a_node_that_cannot_be_reached_is_passed_over_and_its_requests_served_elsewhere() {
    let models = [("a", 10), ("b", 10), ("c", 10)];
    let (n1, n2) = (node(&models, Duration::from_millis(50)), node(&models, Duration::from_millis(50)));
    let held = vec![("a", Tier::Ram), ("b", Tier::Ram), ("c", Tier::Ram)];
    let m = ModelManager::start(
        vec![handle("n1", &n1, 100, held), handle("n2", &n2, 100, vec![])],
        models.iter().map(|(n, b)| model(n, *b, |_| {})).collect(),
        config(100),
        Arc::new(NoObserver),
    );
    // Killed, and not yet declared lost by its missing heartbeats.
    n1.set_down(true);
    let lease = m.acquire(&name("a")).await.expect("the request is placed on the node that answers");
    assert_eq!(lease.node().as_str(), "n2");
    assert_eq!(n1.state.lock().unwrap().refused, 1);
    assert!(
        replicas_of(&m, "a").await.contains(&("n1".to_owned(), "failed".to_owned())),
        "the replica on the node that could not be reached is shown failed"
    );

    // Another model whose weights are on n1 does not try it again at once.
    assert_eq!(m.acquire(&name("b")).await.unwrap().node().as_str(), "n2");
    assert_eq!(n1.state.lock().unwrap().refused, 1, "passed over, not tried again");

    // Back after a passing fault: used again once the window has passed.
    n1.set_down(false);
    tokio::time::sleep(UNREACHABLE_PASSED_OVER_FOR).await;
    assert_eq!(m.acquire(&name("c")).await.unwrap().node().as_str(), "n1");
}

#[tokio::test(start_paused = true)]
async fn a_busy_model_gains_replicas_up_to_max_and_idle_ones_scale_down_to_min() {
    let (n1, n2, n3) = (
        node(&[("a", 10)], Duration::from_millis(50)),
        node(&[("a", 10)], Duration::from_millis(50)),
        node(&[("a", 10)], Duration::from_millis(50)),
    );
    let m = ModelManager::start(
        vec![handle("n1", &n1, 100, vec![]), handle("n2", &n2, 100, vec![]), handle("n3", &n3, 100, vec![])],
        vec![model("a", 10, |s| {
            s.min_replicas = 1;
            s.max_replicas = 2;
            s.idle_timeout = Duration::from_secs(2);
        })],
        config(100),
        Arc::new(NoObserver),
    );
    m.staged().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(m.status().await.unwrap().models[0].replicas, 1, "min_replicas wakes one at start");
    let mut leases = Vec::new();
    for _ in 0..SCALE_UP_IN_FLIGHT * 2 {
        leases.push(m.acquire(&name("a")).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = m.status().await.unwrap();
    assert_eq!(status.models[0].replicas, 2, "busy: a second replica, and no third");
    let more = m.acquire(&name("a")).await.unwrap();
    let nodes: std::collections::HashSet<String> = leases.iter().chain([&more]).map(|l| l.node().to_string()).collect();
    assert_eq!(nodes.len(), 2, "new requests spread over both replicas");
    drop(leases);
    drop(more);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(m.status().await.unwrap().models[0].replicas, 1, "idle: back down to min_replicas");
}

#[tokio::test(start_paused = true)]
async fn a_node_that_joins_with_a_model_on_its_device_is_adopted_without_a_wake() {
    let n1 = node(&[("a", 10)], Duration::from_millis(50));
    let m = ModelManager::start(Vec::new(), vec![model("a", 10, |_| {})], config(100), Arc::new(NoObserver));
    m.add_node(handle("n1", &n1, 100, vec![("a", Tier::Device)]));
    let lease = m.acquire(&name("a")).await.unwrap();
    assert_eq!(lease.node().as_str(), "n1");
    assert_eq!(n1.wakes("a"), 0, "the running replica was adopted");
}
