//! A node's tiers with real (tiny) GGUF artifacts: staging, verification,
//! waking from RAM and from disk, sleeping to each warm tier.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use greenthread_core::{
    ArtifactUri, ModelName, ModelSpec, NodeControl, NodeError, SamplingParams, Sha256Digest, Tier, WarmTier,
};
use greenthread_node_runtime::builtin::{BuiltinEngine, sha256_file};
use greenthread_node_runtime::fixtures::TinyModel;
use greenthread_node_runtime::node::{LocalArtifacts, LocalNode, NodeConfig, TierBudgets};
use greenthread_node_runtime::{GenerateRequest, GenerationEvent};

fn name(s: &str) -> ModelName {
    ModelName::parse(s).unwrap()
}

fn spec(n: &str, artifact: &Path, warm: WarmTier) -> ModelSpec {
    let mut s = ModelSpec::new(name(n), ArtifactUri::File(artifact.to_path_buf()));
    s.scaling.warm_tier = warm;
    s
}

fn node(dir: &Path, specs: &[ModelSpec], budgets: TierBudgets) -> LocalNode {
    let config = NodeConfig {
        cache_dir: dir.join("cache"),
        budgets,
        engine: BuiltinEngine::cpu(),
        local_artifacts: LocalArtifacts::within([dir.to_path_buf()], []),
    };
    LocalNode::new(config, specs).unwrap()
}

const PLENTY: TierBudgets = TierBudgets { ram: 1 << 30, disk: 1 << 30 };

async fn greedy(node: &LocalNode, model: &str) -> String {
    let m = node.instance(&name(model)).unwrap();
    let prompt = m.text_prompt("the world");
    let mut stream = m
        .generate(GenerateRequest {
            prompt,
            sampling: SamplingParams::greedy(),
            max_tokens: Some(12),
            stop: vec![],
            grammar: None,
            logprobs: None,
        })
        .unwrap();
    let mut out = String::new();
    while let Some(e) = stream.next().await {
        match e {
            GenerationEvent::Text(t) => out.push_str(&t),
            GenerationEvent::Done { .. } => break,
            GenerationEvent::Failed { message, .. } => panic!("{message}"),
            GenerationEvent::Logprob(_) => unreachable!("not asked for"),
        }
    }
    out
}

#[tokio::test]
async fn a_staged_model_wakes_from_ram_or_disk_with_the_same_answers_and_sleeps_to_zero_device_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("q.gguf");
    TinyModel::qwen2().write(&artifact).unwrap();
    let n = node(dir.path(), &[spec("q", &artifact, WarmTier::Ram)], PLENTY);

    let staged = n.stage_named(&name("q")).await.unwrap();
    assert_eq!(staged.tier, Tier::Ram);
    assert!(staged.device_bytes > 0);
    let cached: Vec<String> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".gguf"))
        .collect();
    assert!(
        matches!(cached.as_slice(), [one] if one.starts_with("q-")),
        "the artifact is cached by name and URI: {cached:?}"
    );

    let woke = n.wake(&name("q")).await.unwrap();
    assert_eq!(woke.from, Tier::Ram);
    assert_eq!(woke.device_bytes, staged.device_bytes);
    let from_ram = greedy(&n, "q").await;

    assert_eq!(n.sleep(&name("q"), WarmTier::Disk).await.unwrap(), Tier::Disk);
    let model = n.model(&name("q")).unwrap();
    assert_eq!((model.is_awake(), model.device_bytes()), (false, 0));
    assert!(matches!(
        model.generate(GenerateRequest {
            prompt: vec![1],
            sampling: SamplingParams::greedy(),
            max_tokens: Some(1),
            stop: vec![],
            grammar: None,
            logprobs: None,
        }),
        Err(greenthread_node_runtime::Error::Asleep)
    ));

    let woke = n.wake(&name("q")).await.unwrap();
    assert_eq!(woke.from, Tier::Disk);
    assert_eq!(greedy(&n, "q").await, from_ram, "the same weights from either tier");
}

#[tokio::test]
async fn sleeping_to_the_object_tier_clears_the_node_and_the_next_stage_fetches_again() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("g.gguf");
    TinyModel::gemma3().write(&artifact).unwrap();
    let n = node(dir.path(), &[spec("g", &artifact, WarmTier::Object)], PLENTY);
    assert_eq!(n.stage_named(&name("g")).await.unwrap().tier, Tier::Disk, "object-tier models are not kept in RAM");
    n.wake(&name("g")).await.unwrap();
    assert_eq!(n.sleep(&name("g"), WarmTier::Object).await.unwrap(), Tier::Object);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("g-"))
        .collect();
    assert!(left.is_empty(), "the object tier keeps no local copy: {left:?}");
    assert_eq!(n.stage_named(&name("g")).await.unwrap().tier, Tier::Disk);
    assert_eq!(n.wake(&name("g")).await.unwrap().from, Tier::Disk);
}

#[tokio::test]
async fn a_corrupt_artifact_is_refused_leaves_no_file_behind_and_disturbs_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.gguf");
    let bad = dir.path().join("bad.gguf");
    TinyModel::qwen2().write(&good).unwrap();
    TinyModel::llama().write(&bad).unwrap();
    let mut bad_spec = spec("bad", &bad, WarmTier::Ram);
    // The digest of a different file: what a tampered or truncated download looks like.
    bad_spec.sha256 = Some(Sha256Digest::parse(&sha256_file(&good).unwrap()).unwrap());
    let mut good_spec = spec("good", &good, WarmTier::Ram);
    good_spec.sha256 = Some(Sha256Digest::parse(&sha256_file(&good).unwrap()).unwrap());
    let n = node(dir.path(), &[good_spec, bad_spec], PLENTY);

    match n.stage_named(&name("bad")).await {
        Err(NodeError::Artifact(msg)) => assert!(msg.contains("sha256") && msg.contains("refused"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let cached: Vec<String> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(cached.is_empty(), "nothing of the refused artifact may remain: {cached:?}");
    n.stage_named(&name("good")).await.unwrap();
    n.wake(&name("good")).await.unwrap();
    assert!(!greedy(&n, "good").await.is_empty());
}

#[tokio::test]
async fn the_ram_tier_keeps_within_its_budget_giving_up_the_least_recently_used_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    TinyModel::qwen2().write(&a).unwrap();
    TinyModel::qwen2().write(&b).unwrap();
    let size = std::fs::metadata(&a).unwrap().len();
    let budgets = TierBudgets { ram: size + size / 2, disk: 1 << 30 };
    let n = node(dir.path(), &[spec("a", &a, WarmTier::Ram), spec("b", &b, WarmTier::Ram)], budgets);
    assert_eq!(n.stage_named(&name("a")).await.unwrap().tier, Tier::Ram);
    assert_eq!(n.stage_named(&name("b")).await.unwrap().tier, Tier::Ram);
    assert_eq!(n.residency(&name("a")), Tier::Disk, "a's RAM copy made room for b");
    let ram = n.tiers().into_iter().find(|t| t.tier == Tier::Ram).unwrap();
    assert!(ram.used <= ram.budget);
    assert_eq!(n.wake(&name("a")).await.unwrap().from, Tier::Disk);
}

#[tokio::test]
async fn a_restarted_node_reuses_its_verified_cache_without_fetching() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("q.gguf");
    TinyModel::qwen2().write(&artifact).unwrap();
    let s = spec("q", &artifact, WarmTier::Disk);
    node(dir.path(), std::slice::from_ref(&s), PLENTY).stage_named(&name("q")).await.unwrap();
    // The source disappears; a new node over the same cache still stages.
    std::fs::remove_file(&artifact).unwrap();
    let again = node(dir.path(), &[s], PLENTY);
    assert_eq!(again.stage_named(&name("q")).await.unwrap().tier, Tier::Disk);
    again.wake(&name("q")).await.unwrap();
}

/// Stages ten models of the same file at once while watching the tiers:
/// neither may pass its budget at any moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stages_never_pass_the_budgets_and_forgotten_models_free_every_tier() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("shared.gguf");
    TinyModel::qwen2().write(&artifact).unwrap();
    let size = std::fs::metadata(&artifact).unwrap().len();
    let budgets = TierBudgets { ram: size * 5 / 2, disk: size * 4 + size / 2 };
    let specs: Vec<ModelSpec> = (0..10).map(|i| spec(&format!("m{i}"), &artifact, WarmTier::Ram)).collect();
    let n = node(dir.path(), &specs, budgets);
    let watcher = {
        let n = n.clone();
        tokio::spawn(async move {
            let mut peak = (0, 0);
            loop {
                let tiers = n.tiers();
                let used = |t: Tier| tiers.iter().find(|u| u.tier == t).unwrap().used;
                peak = (peak.0.max(used(Tier::Ram)), peak.1.max(used(Tier::Disk)));
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                if peak.0 > budgets.ram || peak.1 > budgets.disk {
                    return peak;
                }
            }
        })
    };
    let stages = specs.iter().map(|s| {
        let n = n.clone();
        let name = s.name.clone();
        tokio::spawn(async move { n.stage_named(&name).await })
    });
    let results = futures_util::future::join_all(stages).await;
    let staged = results.into_iter().filter(|r| r.as_ref().unwrap().is_ok()).count();
    assert!(staged >= 4, "as many as the disk budget holds are staged: {staged}");
    assert!(!watcher.is_finished(), "a tier passed its budget: {:?}", watcher.await.unwrap());
    watcher.abort();
    let cached = || std::fs::read_dir(dir.path().join("cache")).unwrap().count();
    assert!(cached() > 0);

    for s in &specs {
        n.forget(s).await.unwrap();
    }
    let tiers = n.tiers();
    assert!(tiers.iter().all(|t| t.used == 0), "every tier is free: {tiers:?}");
    assert_eq!(cached(), 0, "no cached file is left of forgotten models");
}

#[tokio::test]
async fn forgetting_a_removed_spec_keeps_the_names_new_spec() {
    let dir = tempfile::tempdir().unwrap();
    let (old_file, new_file) = (dir.path().join("old.gguf"), dir.path().join("new.gguf"));
    TinyModel::qwen2().write(&old_file).unwrap();
    TinyModel { seed: 9, ..TinyModel::qwen2() }.write(&new_file).unwrap();
    let removed = spec("m", &old_file, WarmTier::Disk);
    let n = node(dir.path(), std::slice::from_ref(&removed), PLENTY);
    n.stage_named(&name("m")).await.unwrap();
    // Deleted, then created again with another file, before the node hears of the deletion.
    let again = spec("m", &new_file, WarmTier::Disk);
    n.stage(&again).await.unwrap();
    n.forget(&removed).await.unwrap();
    assert!(n.model(&name("m")).is_some(), "the new model stays staged");
    assert_eq!(n.wake(&name("m")).await.unwrap().from, Tier::Disk, "with its cached file");
}

#[tokio::test]
async fn a_restart_counts_the_verified_cache_and_removes_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("q.gguf");
    TinyModel::qwen2().write(&artifact).unwrap();
    let size = std::fs::metadata(&artifact).unwrap().len();
    let (a, b) = (spec("a", &artifact, WarmTier::Disk), spec("b", &artifact, WarmTier::Disk));
    let first = node(dir.path(), &[a.clone(), b.clone()], PLENTY);
    first.stage_named(&name("a")).await.unwrap();
    first.stage_named(&name("b")).await.unwrap();
    drop(first);
    let cache = dir.path().join("cache");
    std::fs::write(cache.join("stray.bin"), vec![7u8; 1 << 16]).unwrap();
    std::fs::write(cache.join(".a-000000000000.gguf.partial-1"), b"half").unwrap();

    // Restarted knowing only `a`, with room for one file.
    let budgets = TierBudgets { ram: 1 << 30, disk: size + size / 2 };
    let again = node(dir.path(), std::slice::from_ref(&a), budgets);
    let disk = again.tiers().into_iter().find(|t| t.tier == Tier::Disk).unwrap();
    assert_eq!(disk.used, size, "a's verified file is counted");
    let left: Vec<String> =
        std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.iter().all(|f| f.starts_with("a-")), "only a's file and stamp remain: {left:?}");
    assert_eq!(again.stage_named(&name("a")).await.unwrap().tier, Tier::Disk);
}

/// A stage abandoned at any point (its future dropped, as when the
/// scheduler's connection to a node closes) gives back the room it reserved
/// and leaves no file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_stage_gives_its_room_back() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("q.gguf");
    TinyModel::qwen2().write(&artifact).unwrap();
    for micros in (0..60).map(|i| i * 200) {
        let cache = tempfile::tempdir_in(dir.path()).unwrap();
        let n = node(cache.path(), &[spec("q", &artifact, WarmTier::Ram)], PLENTY);
        let finished =
            tokio::time::timeout(std::time::Duration::from_micros(micros), n.stage_named(&name("q"))).await.is_ok();
        // Blocking work already started ends on its own.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let used: u64 = n.tiers().iter().map(|t| t.used).sum();
        let files = std::fs::read_dir(cache.path().join("cache")).unwrap().count();
        if !finished && n.residency(&name("q")) == Tier::Object {
            assert_eq!((used, files), (0, 0), "after {micros} µs: room or files left by an abandoned stage");
        }
    }
}
