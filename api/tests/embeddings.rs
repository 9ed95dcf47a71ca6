//! `/v1/embeddings` over real HTTP on loopback, with a tiny BERT in the
//! Hugging Face directory layout behind it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use greenthread_node_runtime::fixtures::{TinyBert, TinyModel};
use serde_json::{Value, json};
use support::{Served, TestServer, chat};

async fn server() -> TestServer {
    let bert =
        Served::embedding("tiny-bert", TinyBert::default()).scaling(|s| s.idle_timeout = Duration::from_millis(300));
    TestServer::start(vec![bert, Served::new("tiny-qwen", TinyModel::qwen2())]).await
}

fn vectors(body: &Value) -> Vec<Vec<f64>> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!((d["object"].as_str(), d["index"].as_u64()), (Some("embedding"), Some(i as u64)), "{d}");
            d["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
        })
        .collect()
}

#[tokio::test]
async fn texts_become_unit_vectors_in_order_with_their_token_counts() {
    let s = server().await;
    let body =
        json!({"model": "tiny-bert", "input": ["the man is eating food.", "hello world", "the man is eating food."]});
    let (status, answer) = s.post("/v1/embeddings", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["object"].as_str(), answer["model"].as_str()), (Some("list"), Some("tiny-bert")));
    let v = vectors(&answer);
    assert_eq!(v.len(), 3);
    for x in &v {
        assert_eq!(x.len(), 32);
        let norm: f64 = x.iter().map(|a| a * a).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    assert_eq!(v[0], v[2], "the same text, the same vector, wherever it is in the batch");
    assert_ne!(v[0], v[1]);
    // [CLS] the man is eating food . [SEP] and [CLS] hello world [SEP]
    assert_eq!(answer["usage"], json!({"prompt_tokens": 8 + 4 + 8, "total_tokens": 20}));

    // Alone, padding-free, a text gets the vector it got in the padded batch.
    let (_, single) = s.post("/v1/embeddings", json!({"model": "tiny-bert", "input": "hello world"})).await;
    let one = &vectors(&single)[0];
    let close = one.iter().zip(&v[1]).all(|(a, b)| (a - b).abs() < 1e-5);
    assert!(close, "{one:?} vs {:?}", v[1]);
}

#[tokio::test]
async fn the_embedding_model_sleeps_when_idle_and_wakes_to_the_same_vectors() {
    let s = server().await;
    let body = json!({"model": "tiny-bert", "input": "a girl carrying a baby", "encoding_format": "float"});
    let (_, first) = s.post("/v1/embeddings", body.clone()).await;
    assert_eq!(s.model_status("tiny-bert").await["state"], "serving");
    assert!(s.model_status("tiny-bert").await["device_bytes"].as_u64().unwrap() > 0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = s.model_status("tiny-bert").await;
    assert_eq!((status["state"].as_str(), status["device_bytes"].as_u64()), (Some("sleeping"), Some(0)), "{status}");
    let (status, second) = s.post("/v1/embeddings", body).await;
    assert_eq!(status, 200);
    assert_eq!(vectors(&first), vectors(&second));
    assert_eq!(s.metric(r#"greenthread_model_wakes_total{model="tiny-bert",tier="ram"}"#).await, 2.0);
}

#[tokio::test]
async fn wrong_kinds_and_bad_inputs_are_refused_by_field() {
    let s = server().await;
    let param = |b: &Value| b["error"]["param"].as_str().map(str::to_owned);
    let (status, err) = s.post("/v1/embeddings", json!({"model": "tiny-qwen", "input": "x"})).await;
    assert_eq!((status, param(&err)), (400, Some("model".into())), "{err}");
    let (status, err) = s.post("/v1/chat/completions", chat("tiny-bert", "hello", 4)).await;
    assert_eq!((status, param(&err)), (400, Some("model".into())), "{err}");
    let (status, err) = s.post("/v1/embeddings", json!({"model": "tiny-bert", "input": "x", "dimensions": 8})).await;
    assert_eq!((status, param(&err)), (400, Some("dimensions".into())), "{err}");
    let (status, err) = s.post("/v1/embeddings", json!({"model": "tiny-bert", "input": [[1, 2, 9999]]})).await;
    assert_eq!((status, param(&err)), (400, Some("input".into())), "{err}");
    let (status, _) =
        s.post("/v1/embeddings", json!({"model": "tiny-bert", "input": [[4, 5, 6]], "dimensions": 32})).await;
    assert_eq!(status, 200);
    // A text longer than the model's window is cut to it, not refused.
    let long = "hello ".repeat(500);
    let (status, answer) = s.post("/v1/embeddings", json!({"model": "tiny-bert", "input": long})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["usage"]["prompt_tokens"], 64);
}
