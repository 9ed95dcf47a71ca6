//! Sleep and wake through the real HTTP API, with tiny generated models:
//! wake on request, one wake for many requests, swaps under a device budget,
//! idle sleep, wake timeouts and refused artifacts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use greenthread_api::http::limits::Limits;
use greenthread_node_runtime::fixtures::TinyModel;
use support::{Served, Setup, TestServer, chat};

#[tokio::test]
async fn a_hundred_concurrent_requests_to_a_sleeping_model_share_one_wake_and_all_succeed() {
    // Room for all hundred at once: this is about one wake, not about overload.
    let s = TestServer::start(vec![Served::new("a", TinyModel::qwen2()).scaling(|sc| sc.max_queue = Some(100))]).await;
    assert_eq!(s.model_status("a").await["state"], "staged");
    assert_eq!(s.model_status("a").await["device_bytes"], 0);
    let requests = (0..100).map(|i| s.post("/v1/chat/completions", chat("a", &format!("Hello {i}"), 3)));
    let answers = futures_util::future::join_all(requests).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    assert_eq!(s.metric(r#"greenthread_model_wakes_total{model="a",tier="ram"}"#).await, 1.0);
    let status = s.model_status("a").await;
    assert_eq!(status["state"], "serving");
    assert_eq!(status["replicas"], 1);
    assert!(status["device_bytes"].as_u64().unwrap() > 0);
    assert_eq!(status["last_wake"]["from_tier"], "ram");
}

#[tokio::test]
async fn three_models_with_device_room_for_one_take_turns_and_every_swap_shows() {
    // Three models of one size (different weights); the budget fits one and a half.
    let seeded = |seed| TinyModel { seed, ..TinyModel::qwen2() };
    let models = vec![Served::new("a", seeded(1)), Served::new("b", seeded(2)), Served::new("c", seeded(3))];
    // Weights, and the KV cache: 512 bytes a token (f32) × 512 tokens × 8 sequences.
    let footprint = 119_128 + 512 * 512 * 8;
    let s = TestServer::start_with(models, Setup { device_budget: footprint * 3 / 2, ..Setup::default() }).await;
    let (_, status) = s.get("/status").await;
    let mut footprints = Vec::new();
    for m in status["models"].as_array().unwrap() {
        assert_eq!(m["device_bytes"], 0, "all asleep at start: {status}");
        footprints.push(m["footprint_bytes"].as_u64().unwrap());
    }
    assert_eq!(footprints, [footprint; 3], "the budget above assumes this footprint");

    let mut expected = Vec::new();
    for round in 0..2 {
        for m in ["a", "b", "c"] {
            let (code, body) = s.post("/v1/chat/completions", chat(m, "the world", 4)).await;
            assert_eq!(code, 200, "round {round} {m}: {body}");
            let text = body["choices"][0]["message"]["content"].clone();
            if round == 0 {
                expected.push(text);
            } else {
                let i = ["a", "b", "c"].iter().position(|x| *x == m).unwrap();
                assert_eq!(text, expected[i], "{m} answered differently after a swap");
            }
            let (_, status) = s.get("/status").await;
            let serving: Vec<&str> = status["models"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["state"] == "serving")
                .map(|x| x["name"].as_str().unwrap())
                .collect();
            assert_eq!(serving, [m], "only the model just used is on the device");
            let device = &status["tiers"][0];
            assert!(device["used_bytes"].as_u64() <= device["budget_bytes"].as_u64(), "{status}");
        }
    }
    for m in ["a", "b", "c"] {
        assert_eq!(s.metric(&format!(r#"greenthread_model_wakes_total{{model="{m}",tier="ram"}}"#)).await, 2.0);
    }
    assert!(s.metric(r#"greenthread_model_sleeps_total{model="a",cause="preempted"}"#).await >= 2.0);
}

#[tokio::test]
async fn an_idle_model_sleeps_and_releases_its_device_bytes_then_wakes_for_the_next_request() {
    let model = Served::new("a", TinyModel::qwen2()).scaling(|s| s.idle_timeout = Duration::from_millis(300));
    let s = TestServer::start(vec![model]).await;
    let first = s.post("/v1/chat/completions", chat("a", "Hello", 6)).await.1;
    assert_eq!(s.model_status("a").await["state"], "serving");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = s.model_status("a").await;
    assert_eq!(status["state"], "sleeping");
    assert_eq!(status["tier"], "ram");
    assert_eq!(status["device_bytes"], 0);
    assert_eq!(s.metric(r#"greenthread_model_sleeps_total{model="a",cause="idle"}"#).await, 1.0);
    let second = s.post("/v1/chat/completions", chat("a", "Hello", 6)).await.1;
    assert_eq!(first["choices"], second["choices"]);
}

/// A Hugging Face checkpoint (config, safetensors, tokenizer.json) is the
/// same model as the GGUF file of its weights, asleep and awake.
#[tokio::test]
async fn a_hugging_face_checkpoint_answers_as_its_gguf_twin_and_sleeps_and_wakes_like_it() {
    let weights = TinyModel::qwen2().with_dtype(candle_core::quantized::GgmlDType::F32);
    let checkpoint = Served::checkpoint("hf", weights.clone(), candle_core::DType::F32)
        .scaling(|s| s.idle_timeout = Duration::from_millis(300));
    let s = TestServer::start(vec![checkpoint, Served::new("gguf", weights)]).await;
    let (status, first) = s.post("/v1/chat/completions", chat("hf", "Hello world", 8)).await;
    assert_eq!(status, 200, "{first}");
    let (_, twin) = s.post("/v1/chat/completions", chat("gguf", "Hello world", 8)).await;
    assert_eq!(first["choices"], twin["choices"]);
    assert_eq!(first["usage"], twin["usage"]);
    assert!(s.model_status("hf").await["device_bytes"].as_u64().unwrap() > 0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = s.model_status("hf").await;
    assert_eq!((status["state"].as_str(), status["device_bytes"].as_u64()), (Some("sleeping"), Some(0)), "{status}");
    let (_, second) = s.post("/v1/chat/completions", chat("hf", "Hello world", 8)).await;
    assert_eq!(first["choices"], second["choices"]);
    assert_eq!(s.metric(r#"greenthread_model_wakes_total{model="hf",tier="ram"}"#).await, 2.0);
}

#[tokio::test]
async fn a_model_with_min_replicas_one_is_awake_before_any_request_and_stays() {
    let model = Served::new("a", TinyModel::qwen2()).scaling(|s| {
        s.min_replicas = 1;
        s.idle_timeout = Duration::from_millis(100);
    });
    let s = TestServer::start(vec![model]).await;
    let mut state = s.model_status("a").await["state"].clone();
    for _ in 0..50 {
        if state == "serving" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        state = s.model_status("a").await["state"].clone();
    }
    assert_eq!(state, "serving");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.model_status("a").await["state"], "serving");
}

#[tokio::test]
async fn a_wake_past_the_timeout_is_a_503_with_retry_after_and_the_server_stays_healthy() {
    let setup =
        Setup { limits: Limits { wake_timeout: Duration::from_millis(1), ..Limits::default() }, ..Setup::default() };
    // Big enough (~30 MB) that its wake takes far longer than the 1 ms timeout.
    let mut slow = TinyModel::qwen2().with_shape(512, 8, 2, 64, 2048);
    slow.layers = 8;
    let s = TestServer::start_with(vec![Served::new("a", slow)], setup).await;
    let resp = s.client.post(s.url("/v1/chat/completions")).json(&chat("a", "Hello", 2)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_waking");
    assert_eq!(s.metric(r#"greenthread_wake_timeouts_total{model="a"}"#).await, 1.0);
    assert_eq!(s.get("/health").await.0, 200);
    // The wake went on; once it is done, requests are served.
    for _ in 0..100 {
        if s.model_status("a").await["state"] == "serving" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, body) = s.post("/v1/chat/completions", chat("a", "Hello", 2)).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn a_corrupt_artifact_is_refused_with_its_reason_and_the_other_models_serve_on() {
    let s = TestServer::start(vec![
        Served::new("good", TinyModel::qwen2()),
        Served::new("bad", TinyModel::llama()).corrupt(),
    ])
    .await;
    let bad = s.model_status("bad").await;
    assert_eq!(bad["state"], "failed");
    assert!(bad["error"].as_str().unwrap().contains("sha256"), "{bad}");
    let resp = s.client.post(s.url("/v1/chat/completions")).json(&chat("bad", "Hello", 2)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_failed");
    assert!(body["error"]["message"].as_str().unwrap().contains("sha256"));
    let (code, body) = s.post("/v1/chat/completions", chat("good", "Hello", 2)).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn status_reports_every_tier_with_its_budget_and_use() {
    let s = TestServer::start(vec![Served::new("a", TinyModel::qwen2())]).await;
    s.post("/v1/chat/completions", chat("a", "Hello", 2)).await;
    let (code, status) = s.get("/status").await;
    assert_eq!(code, 200);
    let tiers: Vec<&str> = status["tiers"].as_array().unwrap().iter().map(|t| t["tier"].as_str().unwrap()).collect();
    assert_eq!(tiers, ["device", "ram", "disk"]);
    for t in status["tiers"].as_array().unwrap() {
        assert!(t["used_bytes"].as_u64().unwrap() > 0, "{t}");
        assert!(t["used_bytes"].as_u64() <= t["budget_bytes"].as_u64(), "{t}");
    }
    let a = &status["models"][0];
    assert_eq!(a["project"], "default");
    assert!(a["last_used"].as_f64().unwrap() > 1.7e9);
    assert!(a["last_wake"]["seconds"].as_f64().unwrap() > 0.0);
    let metrics = s.client.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"greenthread_tier_budget_bytes{tier="ram"}"#), "{metrics}");
    assert!(metrics.contains("greenthread_model_state_duration_seconds_bucket"), "{metrics}");
}
