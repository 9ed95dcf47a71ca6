//! `/v1/rerank` and `/v1/score` over real HTTP on loopback: a tiny
//! cross-encoder and a tiny embedding model behind them, and model kinds
//! refusing the routes they do not serve.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use greenthread_core::ModelKind;
use greenthread_node_runtime::fixtures::{TinyBert, TinyModel};
use serde_json::{Value, json};
use support::{Served, TestServer, chat};

async fn server() -> TestServer {
    let reranker = Served::embedding("tiny-reranker", TinyBert { cross_encoder: true, ..TinyBert::default() })
        .scaling(|s| s.idle_timeout = Duration::from_millis(300));
    TestServer::start(vec![
        reranker,
        Served::embedding("tiny-bert", TinyBert::default()),
        Served::new("tiny-qwen", TinyModel::qwen2()),
        // Declared an embedding model, but its artifact is a chat model.
        Served::new("mislabelled", TinyModel::qwen2()).kind(ModelKind::Embedding),
        // Declared a chat model: other routes are refused before it wakes.
        Served::new("declared-chat", TinyModel::qwen2()).kind(ModelKind::Chat),
    ])
    .await
}

const DOCUMENTS: [&str; 4] = ["the man is eating food.", "hello world", "a girl carrying a baby", "hello world"];

fn results(body: &Value) -> Vec<(usize, f64)> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|r| (r["index"].as_u64().unwrap() as usize, r["relevance_score"].as_f64().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_cross_encoder_ranks_every_document_once_best_first() {
    let s = server().await;
    let body = json!({"model": "tiny-reranker", "query": "who is eating?", "documents": DOCUMENTS});
    let (status, answer) = s.post("/v1/rerank", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], "tiny-reranker");
    let ranked = results(&answer);
    let mut indices: Vec<usize> = ranked.iter().map(|r| r.0).collect();
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2, 3], "every document once");
    assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1), "best first: {ranked:?}");
    assert!(ranked.iter().all(|r| r.1 > 0.0 && r.1 < 1.0), "a sigmoid of the logit: {ranked:?}");
    let score_of = |i: usize| ranked.iter().find(|r| r.0 == i).unwrap().1;
    assert!((score_of(1) - score_of(3)).abs() < 1e-5, "the same document, the same score");
    assert!((score_of(0) - score_of(1)).abs() > 1e-6, "different documents, different scores: {ranked:?}");
    for r in answer["results"].as_array().unwrap() {
        let index = r["index"].as_u64().unwrap() as usize;
        assert_eq!(r["document"], json!({"text": DOCUMENTS[index]}), "documents come back by default");
    }
    // Pairs of [CLS] query [SEP] document [SEP]: "who is eating?" is w-h-o, is, e-a-t-i-n-g, ? in letters and words.
    assert!(answer["usage"]["total_tokens"].as_u64().unwrap() > 4 * 3, "{answer}");

    // top_n, no documents, objects kept whole; the scores do not depend on the batch.
    let body = json!({"model": "tiny-reranker", "query": "who is eating?", "top_n": 2, "return_documents": false,
                      "documents": DOCUMENTS});
    let (_, top) = s.post("/v2/rerank", body).await;
    assert_eq!(results(&top), ranked[..2]);
    assert!(top["results"][0].get("document").is_none(), "{top}");
    let body = json!({"model": "tiny-reranker", "query": "who is eating?",
                      "documents": [{"text": DOCUMENTS[2], "id": "doc-2"}]});
    let (_, one) = s.post("/v1/rerank", body).await;
    assert_eq!(one["results"][0]["document"], json!({"text": DOCUMENTS[2], "id": "doc-2"}));
    assert!((results(&one)[0].1 - score_of(2)).abs() < 1e-5, "alone or batched, one score");
}

#[tokio::test]
async fn an_embedding_model_reranks_by_cosine_similarity_and_scores() {
    let s = server().await;
    let body = json!({"model": "tiny-bert", "query": "hello world", "documents": DOCUMENTS});
    let (status, answer) = s.post("/v1/rerank", body).await;
    assert_eq!(status, 200, "{answer}");
    let ranked = results(&answer);
    // The query itself is among the documents (twice): a cosine of 1, first.
    assert_eq!([ranked[0].0, ranked[1].0].iter().copied().collect::<std::collections::BTreeSet<_>>(), [1, 3].into());
    assert!((ranked[0].1 - 1.0).abs() < 1e-4, "{ranked:?}");
    assert!(ranked[2].1 < 0.9999, "{ranked:?}");

    let (status, scored) =
        s.post("/v1/score", json!({"model": "tiny-bert", "text_1": "hello world", "text_2": DOCUMENTS})).await;
    assert_eq!(status, 200, "{scored}");
    assert_eq!(scored["object"], "list");
    let data = scored["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    for (i, d) in data.iter().enumerate() {
        assert_eq!((d["index"].as_u64(), d["object"].as_str()), (Some(i as u64), Some("score")));
        let in_rerank = ranked.iter().find(|r| r.0 == i).unwrap().1;
        assert!((d["score"].as_f64().unwrap() - in_rerank).abs() < 1e-5, "score and rerank agree");
    }
}

#[tokio::test]
async fn the_reranker_sleeps_when_idle_and_wakes_to_the_same_scores() {
    let s = server().await;
    let body = json!({"model": "tiny-reranker", "query": "a baby", "documents": DOCUMENTS});
    let (_, first) = s.post("/v1/rerank", body.clone()).await;
    assert_eq!(s.model_status("tiny-reranker").await["state"], "serving");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = s.model_status("tiny-reranker").await;
    assert_eq!((status["state"].as_str(), status["device_bytes"].as_u64()), (Some("sleeping"), Some(0)), "{status}");
    let (status, second) = s.post("/v1/rerank", body).await;
    assert_eq!(status, 200);
    assert_eq!(results(&first), results(&second));
}

#[tokio::test]
async fn routes_a_kind_does_not_serve_are_refused_naming_the_kinds_that_do() {
    let s = server().await;
    let message = |b: &Value| b["error"]["message"].as_str().unwrap_or_default().to_owned();
    let (status, err) = s.post("/v1/rerank", json!({"model": "tiny-qwen", "query": "q", "documents": ["a"]})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("model")), "{err}");
    assert!(message(&err).contains("served by embedding and reranker models"), "{err}");
    let (status, err) = s.post("/v1/chat/completions", chat("tiny-reranker", "hello", 4)).await;
    assert_eq!(status, 400, "{err}");
    assert!(message(&err).contains("is a reranker model"), "{err}");
    let (status, err) = s.post("/v1/embeddings", json!({"model": "tiny-reranker", "input": "x"})).await;
    assert_eq!(status, 400, "{err}");

    // A declared kind refuses at once, without waking the model.
    let (status, err) = s.post("/v1/embeddings", json!({"model": "declared-chat", "input": "x"})).await;
    assert_eq!(status, 400, "{err}");
    assert!(message(&err).contains("/v1/embeddings is served by embedding models"), "{err}");
    assert_ne!(s.model_status("declared-chat").await["state"], "serving");

    // A declared kind the artifact is not: the model cannot be served, and says why.
    let (status, err) = s.post("/v1/embeddings", json!({"model": "mislabelled", "input": "x"})).await;
    assert_ne!(status, 200, "{err}");
    assert!(message(&err).contains("declares kind embedding, but the artifact is a chat model"), "{status} {err}");

    // Bad bodies are refused by field.
    let (status, err) = s.post("/v1/rerank", json!({"model": "tiny-reranker", "query": "", "documents": ["a"]})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("query")), "{err}");
    let (status, err) =
        s.post("/v1/rerank", json!({"model": "tiny-reranker", "query": "q", "documents": [{"title": "x"}]})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("documents")), "{err}");
}
