//! The manager against a scripted node, in paused time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use greenthread_core::{ArtifactUri, NodeError, NodeFuture, StageReport, TierUsage, WarmTier};
use tokio::time::Instant;

use super::*;

mod nodes;

/// A node that takes `wake_time` to wake a model and tracks device use.
#[derive(Default)]
struct ScriptedNode {
    wake_time: Duration,
    bytes: HashMap<String, u64>,
    broken: Vec<String>,
    /// Every operation fails as a killed node's would.
    down: std::sync::atomic::AtomicBool,
    /// Leases a test holds on this node's models, which no sleep may meet.
    held: Arc<std::sync::atomic::AtomicU32>,
    state: Mutex<NodeLog>,
}

#[derive(Default)]
struct NodeLog {
    wakes: HashMap<String, u32>,
    sleeps: HashMap<String, u32>,
    on_device: u64,
    peak: u64,
    /// The artifact of every stage call, in order.
    staged: Vec<String>,
    /// Every model forgotten, in order.
    forgotten: Vec<String>,
    /// Operations refused while down.
    refused: u32,
    /// Sleeps that began while a lease was held.
    slept_while_held: u32,
}

impl ScriptedNode {
    fn wakes(&self, model: &str) -> u32 {
        self.state.lock().unwrap().wakes.get(model).copied().unwrap_or(0)
    }
    fn sleeps(&self, model: &str) -> u32 {
        self.state.lock().unwrap().sleeps.get(model).copied().unwrap_or(0)
    }
    fn peak(&self) -> u64 {
        self.state.lock().unwrap().peak
    }
    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
    fn refuse_if_down(&self) -> Result<(), NodeError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            self.state.lock().unwrap().refused += 1;
            return Err(NodeError::Unreachable("connection refused".into()));
        }
        Ok(())
    }
}

impl NodeControl for ScriptedNode {
    fn stage<'a>(&'a self, spec: &'a ModelSpec) -> NodeFuture<'a, StageReport> {
        let model = &spec.name;
        self.state.lock().unwrap().staged.push(spec.artifact.to_string());
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.refuse_if_down()?;
            if self.broken.contains(&model.to_string()) {
                return Err(NodeError::Artifact("sha256 mismatch".into()));
            }
            Ok(StageReport { tier: Tier::Disk, device_bytes: self.bytes[model.as_str()] })
        })
    }

    fn wake<'a>(&'a self, model: &'a ModelName) -> NodeFuture<'a, WakeReport> {
        Box::pin(async move {
            self.refuse_if_down()?;
            let bytes = self.bytes[model.as_str()];
            {
                let mut s = self.state.lock().unwrap();
                *s.wakes.entry(model.to_string()).or_default() += 1;
                s.on_device += bytes;
                s.peak = s.peak.max(s.on_device);
            }
            tokio::time::sleep(self.wake_time).await;
            Ok(WakeReport { from: Tier::Ram, duration: self.wake_time, device_bytes: bytes })
        })
    }

    fn sleep<'a>(&'a self, model: &'a ModelName, warm: WarmTier) -> NodeFuture<'a, Tier> {
        Box::pin(async move {
            let held_before = self.held.load(std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            let held_after = self.held.load(std::sync::atomic::Ordering::SeqCst);
            let mut s = self.state.lock().unwrap();
            s.slept_while_held += u32::from(held_before + held_after > 0);
            *s.sleeps.entry(model.to_string()).or_default() += 1;
            s.on_device -= self.bytes[model.as_str()];
            Ok(warm.into())
        })
    }

    fn forget<'a>(&'a self, spec: &'a ModelSpec) -> NodeFuture<'a, ()> {
        self.state.lock().unwrap().forgotten.push(spec.name.to_string());
        Box::pin(async { Ok(()) })
    }

    fn tiers(&self) -> Vec<TierUsage> {
        Vec::new()
    }
}

fn name(s: &str) -> ModelName {
    ModelName::parse(s).unwrap()
}

fn model(n: &str, bytes: u64, scaling: impl FnOnce(&mut greenthread_core::Scaling)) -> ManagedModel {
    let mut spec = ModelSpec::new(name(n), ArtifactUri::File(format!("/m/{n}.gguf").into()));
    scaling(&mut spec.scaling);
    ManagedModel { spec, device_bytes: bytes }
}

fn node(models: &[(&str, u64)], wake_time: Duration) -> Arc<ScriptedNode> {
    Arc::new(ScriptedNode {
        wake_time,
        bytes: models.iter().map(|(n, b)| (n.to_string(), *b)).collect(),
        ..Default::default()
    })
}

fn config(_budget: u64) -> ManagerConfig {
    ManagerConfig { wake_timeout: Duration::from_secs(30), ..ManagerConfig::default() }
}

/// One node named `n1` with `budget` device bytes.
fn one(node: &Arc<ScriptedNode>, budget: u64) -> Vec<NodeHandle> {
    vec![NodeHandle {
        id: NodeId::parse("n1").unwrap(),
        control: node.clone(),
        device_budget: budget,
        holdings: vec![],
    }]
}

async fn state_of(m: &ModelManager, model: &str) -> ModelState {
    m.status().await.unwrap().models.into_iter().find(|s| s.name.as_str() == model).unwrap().state
}

#[tokio::test(start_paused = true)]
async fn an_idle_model_sleeps_after_its_idle_timeout_and_not_before() {
    let n = node(&[("a", 10)], Duration::from_millis(100));
    let m = ModelManager::start(
        one(&n, 100),
        vec![model("a", 10, |s| s.idle_timeout = Duration::from_secs(3))],
        config(100),
        Arc::new(NoObserver),
    );
    drop(m.acquire(&name("a")).await.unwrap());
    assert_eq!(state_of(&m, "a").await, ModelState::Serving);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(state_of(&m, "a").await, ModelState::Serving, "still inside its idle timeout");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(state_of(&m, "a").await, ModelState::Sleeping { tier: Tier::Ram });
    assert_eq!(n.sleeps("a"), 1);
    // The next request wakes it again.
    drop(m.acquire(&name("a")).await.unwrap());
    assert_eq!(n.wakes("a"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_model_with_a_request_in_flight_never_sleeps() {
    let n = node(&[("a", 10)], Duration::from_millis(100));
    let m = ModelManager::start(
        one(&n, 100),
        vec![model("a", 10, |s| s.idle_timeout = Duration::from_secs(1))],
        config(100),
        Arc::new(NoObserver),
    );
    let lease = m.acquire(&name("a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(state_of(&m, "a").await, ModelState::Serving);
    drop(lease);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(matches!(state_of(&m, "a").await, ModelState::Sleeping { .. }));
}

#[tokio::test(start_paused = true)]
async fn min_replicas_one_wakes_at_start_and_never_sleeps() {
    let n = node(&[("always", 10)], Duration::from_millis(100));
    let m = ModelManager::start(
        one(&n, 100),
        vec![model("always", 10, |s| {
            s.min_replicas = 1;
            s.idle_timeout = Duration::from_secs(1);
        })],
        config(100),
        Arc::new(NoObserver),
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(state_of(&m, "always").await, ModelState::Serving);
    assert_eq!((n.wakes("always"), n.sleeps("always")), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_requests_share_one_wake() {
    let n = node(&[("a", 10)], Duration::from_millis(800));
    let m = ModelManager::start(one(&n, 100), vec![model("a", 10, |_| {})], config(100), Arc::new(NoObserver));
    m.staged().await;
    let leases = futures_join(100, |_| {
        let m = m.clone();
        async move { m.acquire(&name("a")).await }
    })
    .await;
    assert!(leases.iter().all(Result::is_ok));
    assert_eq!(n.wakes("a"), 1);
    let status = m.status().await.unwrap();
    assert_eq!(status.models[0].in_flight, 100);
    drop(leases);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(m.status().await.unwrap().models[0].in_flight, 0);
}

async fn futures_join<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn minimum_residency_protects_a_fresh_model_in_use_until_the_waiter_forces_it() {
    let n = node(&[("a", 100), ("b", 100)], Duration::from_millis(100));
    let m = ModelManager::start(
        one(&n, 100),
        vec![model("a", 100, |_| {}), model("b", 100, |_| {})],
        config(100),
        Arc::new(NoObserver),
    );
    // Two requests: a is in use, not a one-off.
    drop(m.acquire(&name("a")).await.unwrap());
    drop(m.acquire(&name("a")).await.unwrap());
    let asked = Instant::now();
    drop(m.acquire(&name("b")).await.unwrap());
    let waited = asked.elapsed();
    // a had been resident for ~0 s: b waits until it may force preemption (5 s), not the full 10 s.
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(6), "waited {waited:?}");
    assert_eq!(n.sleeps("a"), 1);
    assert_eq!(state_of(&m, "b").await, ModelState::Serving);
}

#[tokio::test(start_paused = true)]
async fn a_fresh_model_woken_for_a_single_request_is_preempted_at_once() {
    let n = node(&[("a", 100), ("b", 100)], Duration::from_millis(100));
    let m = ModelManager::start(
        one(&n, 100),
        vec![model("a", 100, |_| {}), model("b", 100, |_| {})],
        config(100),
        Arc::new(NoObserver),
    );
    drop(m.acquire(&name("a")).await.unwrap());
    let asked = Instant::now();
    drop(m.acquire(&name("b")).await.unwrap());
    assert!(asked.elapsed() < Duration::from_secs(1), "waited {:?}", asked.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_model_past_its_minimum_residency_is_preempted_at_once_lru_first() {
    let n = node(&[("a", 50), ("b", 50), ("c", 50)], Duration::from_millis(100));
    let m = ModelManager::start(
        one(&n, 100),
        vec![model("a", 50, |_| {}), model("b", 50, |_| {}), model("c", 50, |_| {})],
        config(100),
        Arc::new(NoObserver),
    );
    drop(m.acquire(&name("a")).await.unwrap());
    drop(m.acquire(&name("b")).await.unwrap());
    tokio::time::sleep(Duration::from_secs(20)).await;
    drop(m.acquire(&name("b")).await.unwrap()); // b is now the most recently used
    let asked = Instant::now();
    drop(m.acquire(&name("c")).await.unwrap());
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!((n.sleeps("a"), n.sleeps("b")), (1, 0), "the least recently used model went");
}

#[tokio::test(start_paused = true)]
async fn three_models_with_room_for_one_all_get_served_and_the_budget_holds() {
    let models = [("a", 60), ("b", 60), ("c", 60)];
    let n = node(&models, Duration::from_millis(300));
    let m = ModelManager::start(
        one(&n, 100),
        models.iter().map(|(n, b)| model(n, *b, |_| {})).collect(),
        config(100),
        Arc::new(NoObserver),
    );
    for round in 0..3 {
        for (model_name, _) in models {
            let lease =
                m.acquire(&name(model_name)).await.unwrap_or_else(|e| panic!("round {round} {model_name}: {e}"));
            assert_eq!(state_of(&m, model_name).await, ModelState::Serving);
            drop(lease);
        }
    }
    assert!(n.peak() <= 100, "device held {} bytes with a budget of 100", n.peak());
    assert_eq!(n.wakes("a"), 3);
}

#[tokio::test(start_paused = true)]
async fn a_wake_past_the_timeout_answers_retry_later_and_still_completes() {
    let n = node(&[("slow", 10)], Duration::from_secs(20));
    let cfg = ManagerConfig { wake_timeout: Duration::from_secs(5), ..ManagerConfig::default() };
    let m = ModelManager::start(one(&n, 100), vec![model("slow", 10, |_| {})], cfg, Arc::new(NoObserver));
    match m.acquire(&name("slow")).await {
        Err(AcquireError::Timeout { retry_after, .. }) => assert!(retry_after > Duration::ZERO),
        other => panic!("expected a timeout, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(state_of(&m, "slow").await, ModelState::Serving, "the wake went on without its waiter");
    assert!(m.acquire(&name("slow")).await.is_ok());
    assert_eq!(n.wakes("slow"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_broken_artifact_fails_its_requests_with_the_reason_and_disturbs_nothing_else() {
    let mut scripted = ScriptedNode { wake_time: Duration::from_millis(100), ..Default::default() };
    scripted.bytes = [("good".to_string(), 10), ("bad".to_string(), 10)].into();
    scripted.broken = vec!["bad".into()];
    let n = Arc::new(scripted);
    let m = ModelManager::start(
        one(&n, 100),
        vec![model("good", 10, |_| {}), model("bad", 10, |_| {})],
        config(100),
        Arc::new(NoObserver),
    );
    match m.acquire(&name("bad")).await {
        Err(AcquireError::Failed { reason, .. }) => assert!(reason.contains("sha256")),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(matches!(state_of(&m, "bad").await, ModelState::Failed { .. }));
    assert!(m.acquire(&name("good")).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_model_larger_than_the_device_is_refused() {
    let n = node(&[("huge", 500)], Duration::from_millis(100));
    let m = ModelManager::start(one(&n, 100), vec![model("huge", 500, |_| {})], config(100), Arc::new(NoObserver));
    assert!(matches!(m.acquire(&name("huge")).await, Err(AcquireError::TooLarge { .. })));
    assert_eq!(n.wakes("huge"), 0);
}

#[tokio::test(start_paused = true)]
async fn every_transition_is_published_with_its_duration() {
    let n = node(&[("a", 10)], Duration::from_millis(250));
    let m = ModelManager::start(one(&n, 100), vec![model("a", 10, |_| {})], config(100), Arc::new(NoObserver));
    let mut events = m.subscribe();
    m.staged().await;
    drop(m.acquire(&name("a")).await.unwrap());
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push((e.from.name(), e.to.name(), e.after));
    }
    let waking = seen.iter().find(|(from, _, _)| *from == "waking").expect("a waking → serving event");
    assert_eq!(waking.1, "serving");
    assert_eq!(waking.2, Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn a_new_artifact_drains_the_old_replica_and_serves_from_the_new_one() {
    let n = node(&[("a", 10)], Duration::from_millis(100));
    let m = ModelManager::start(one(&n, 100), vec![model("a", 10, |_| {})], config(100), Arc::new(NoObserver));
    let lease = m.acquire(&name("a")).await.unwrap();
    let mut changed = model("a", 10, |_| {});
    changed.spec.artifact = ArtifactUri::File("/m/a-v2.gguf".into());
    m.upsert(changed);
    // A request arriving during the change waits for the new spec, not the old replica.
    let waiting = tokio::spawn({
        let m = m.clone();
        async move { m.acquire(&name("a")).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "the old replica, still in use, must not take new requests");
    assert_eq!(n.sleeps("a"), 0, "a replica with a request in flight is not put to sleep");
    drop(lease);
    let second = waiting.await.unwrap().unwrap();
    assert_eq!(n.sleeps("a"), 1);
    assert_eq!(n.wakes("a"), 2);
    assert_eq!(n.state.lock().unwrap().staged, ["file:///m/a.gguf", "file:///m/a-v2.gguf"]);
    drop(second);
}

#[tokio::test(start_paused = true)]
async fn a_scaling_change_applies_without_restarting() {
    let n = node(&[("a", 10)], Duration::from_millis(100));
    let m = ModelManager::start(one(&n, 100), vec![model("a", 10, |_| {})], config(100), Arc::new(NoObserver));
    drop(m.acquire(&name("a")).await.unwrap());
    m.upsert(model("a", 10, |s| s.min_replicas = 1));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(state_of(&m, "a").await, ModelState::Serving, "min_replicas 1 now keeps it awake");
    assert_eq!((n.wakes("a"), n.sleeps("a")), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_removed_model_finishes_its_request_then_leaves() {
    let n = node(&[("a", 10), ("b", 10)], Duration::from_millis(100));
    let m = ModelManager::start(one(&n, 100), vec![model("a", 10, |_| {})], config(100), Arc::new(NoObserver));
    m.upsert(model("b", 10, |_| {}));
    drop(m.acquire(&name("b")).await.expect("an added model is served"));
    let lease = m.acquire(&name("a")).await.unwrap();
    m.remove(&name("a"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(m.acquire(&name("a")).await, Err(AcquireError::UnknownModel(_))));
    assert_eq!(n.sleeps("a"), 0, "its request in flight finishes first");
    assert!(n.state.lock().unwrap().forgotten.is_empty(), "nothing is dropped while a request runs");
    drop(lease);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(n.sleeps("a"), 1);
    let names: Vec<String> = m.status().await.unwrap().models.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["b"]);
    assert_eq!(n.state.lock().unwrap().forgotten, ["a"], "the node is told to drop its weights and files");
}

#[tokio::test(start_paused = true)]
async fn an_operator_sleep_puts_an_idle_model_to_sleep_at_once_and_a_request_wakes_it() {
    let n = node(&[("a", 10)], Duration::from_millis(100));
    let m = ModelManager::start(
        one(&n, 100),
        vec![model("a", 10, |s| s.idle_timeout = Duration::from_secs(600))],
        config(100),
        Arc::new(NoObserver),
    );
    let mut events = m.subscribe();
    drop(m.acquire(&name("a")).await.unwrap());
    let outcome = m.sleep(&name("a")).await.unwrap();
    assert_eq!(outcome, SleepOutcome { sleeping: 1, kept_for_min: 0, busy: 0 });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(state_of(&m, "a").await, ModelState::Sleeping { tier: Tier::Ram }, "long before its idle timeout");
    let causes: Vec<&str> = std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.cause.as_str()).collect();
    assert_eq!(causes.last(), Some(&"operator"), "{causes:?}");
    drop(m.acquire(&name("a")).await.unwrap());
    assert_eq!((n.wakes("a"), n.sleeps("a")), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn an_operator_sleep_leaves_min_replicas_and_busy_replicas_awake() {
    let n = node(&[("kept", 10), ("busy", 10)], Duration::from_millis(100));
    let m = ModelManager::start(
        one(&n, 100),
        vec![model("kept", 10, |s| s.min_replicas = 1), model("busy", 10, |_| {})],
        config(100),
        Arc::new(NoObserver),
    );
    m.staged().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(m.sleep(&name("kept")).await.unwrap(), SleepOutcome { sleeping: 0, kept_for_min: 1, busy: 0 });
    let lease = m.acquire(&name("busy")).await.unwrap();
    assert_eq!(m.sleep(&name("busy")).await.unwrap(), SleepOutcome { sleeping: 0, kept_for_min: 0, busy: 1 });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(state_of(&m, "kept").await, ModelState::Serving);
    assert_eq!(state_of(&m, "busy").await, ModelState::Serving);
    drop(lease);
    assert_eq!(m.sleep(&name("unknown")).await.unwrap_err(), AcquireError::UnknownModel("unknown".into()));
}

#[tokio::test(start_paused = true)]
async fn a_waking_model_reports_its_progress_estimated_from_its_last_wake() {
    let n = node(&[("a", 10)], Duration::from_millis(1000));
    let m = ModelManager::start(
        one(&n, 100),
        vec![model("a", 10, |s| s.idle_timeout = Duration::from_secs(3))],
        config(100),
        Arc::new(NoObserver),
    );
    let progress = |m: ModelManager| async move {
        let status = m.status().await.unwrap();
        status.models.into_iter().find(|s| s.name.as_str() == "a").and_then(|s| s.wake_progress)
    };
    let first = tokio::spawn({
        let m = m.clone();
        async move { drop(m.acquire(&name("a")).await.unwrap()) }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let p = progress(m.clone()).await.expect("waking");
    assert_eq!((p.from, p.expected), (Tier::Disk, None), "staged on disk, no earlier wake to estimate from");
    assert!(p.elapsed >= Duration::from_millis(300), "{p:?}");
    first.await.unwrap();
    assert_eq!(progress(m.clone()).await, None, "serving: nothing to report");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(matches!(state_of(&m, "a").await, ModelState::Sleeping { .. }));
    let again = tokio::spawn({
        let m = m.clone();
        async move { drop(m.acquire(&name("a")).await.unwrap()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = progress(m.clone()).await.expect("waking again");
    assert_eq!(p.expected, Some(Duration::from_millis(1000)), "the last wake from RAM took a second");
    assert!((40..=60).contains(&p.percent().unwrap_or(0)), "{:?}", p.percent());
    again.await.unwrap();
}

/// Leases taken and given back from many threads at once, racing an
/// operator's sleeps: a replica never begins a sleep while a lease is out,
/// and every request still gets a lease (through a wake when it slept).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_racing_sleeps_never_meet_a_sleeping_replica() {
    let n = node(&[("a", 10)], Duration::from_millis(1));
    let m = ModelManager::start(one(&n, 100), vec![model("a", 10, |_| {})], config(100), Arc::new(NoObserver));
    let deadline = Instant::now() + Duration::from_millis(400);
    let callers = futures_join(8, |_| {
        let (m, held) = (m.clone(), n.held.clone());
        async move {
            let mut leases = 0u32;
            while Instant::now() < deadline {
                let lease = m.acquire(&name("a")).await.unwrap();
                held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                held.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                drop(lease);
                leases += 1;
                // Room between requests, for the sleeps to find the replica idle.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            leases
        }
    });
    let sleeper = tokio::spawn({
        let m = m.clone();
        async move {
            while Instant::now() < deadline {
                m.sleep(&name("a")).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let leases: u32 = callers.await.into_iter().sum();
    sleeper.await.unwrap();
    let (sleeps, slept_while_held) = {
        let log = n.state.lock().unwrap();
        (log.sleeps.get("a").copied().unwrap_or(0), log.slept_while_held)
    };
    assert!(sleeps > 0, "the race needs sleeps to happen");
    assert!(leases > 100, "{leases} leases");
    assert_eq!(slept_while_held, 0, "a sleep began with a lease out ({sleeps} sleeps)");
}
