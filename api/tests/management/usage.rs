//! Usage metering: a record for every request — completed, failed, or
//! abandoned mid-stream — summed in time buckets through GraphQL.

use sea_orm::{EntityTrait, QueryOrder};
use serde_json::json;

use crate::harness::{ADMIN, Db, Server};
use crate::on_both_databases;
use greenthread_node_runtime::fixtures::TinyModel;
use greenthread_store::entities::usage_record;

async fn every_request_is_metered(db: &Db) {
    let s = Server::start(db).await;
    s.project_with_model("p", "m").await;
    // A model with room for a long answer, to hang up on.
    let long = s.artifacts.join("long.gguf");
    TinyModel { context_length: 8192, ..TinyModel::qwen2() }.write(&long).unwrap();
    let created = s
        .ok(
            ADMIN,
            "mutation($i: CreateModelInput!) { createModel(input: $i) { userErrors { message } } }",
            json!({"i": {"project": "p", "name": "long", "artifact": long.to_str().unwrap(), "contextLength": 8192}}),
        )
        .await;
    assert_eq!(created["createModel"]["userErrors"], json!([]));
    let (key, key_id) = s.key(ADMIN, "p", &["inference", "read"]).await;
    let url = format!("{}/v1/chat/completions", s.base);
    let ask = |max_tokens: u32, stream: bool| {
        json!({"model": "m", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": max_tokens,
               "temperature": 0, "stream": stream})
    };

    // Completed, whole and streamed.
    let (status, whole) = s.v1(&key, reqwest::Method::POST, "/v1/chat/completions", Some(ask(8, false))).await;
    assert_eq!(status, 200);
    let streamed =
        s.client.post(&url).bearer_auth(&key).json(&ask(8, true)).send().await.unwrap().text().await.unwrap();
    assert!(streamed.contains("[DONE]"));
    // Failed: a bad parameter.
    let mut bad = ask(8, false);
    bad["temperature"] = json!(9);
    let (status, _) = s.v1(&key, reqwest::Method::POST, "/v1/chat/completions", Some(bad)).await;
    assert_eq!(status, 400);
    // Abandoned: the client hangs up after the first chunk of a long answer.
    let mut hang_up = ask(8000, true);
    hang_up["model"] = json!("long");
    let mut response = s.client.post(&url).bearer_auth(&key).json(&hang_up).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // Anthropic's API is metered the same way.
    let anthropic = json!({"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]});
    let resp = s
        .client
        .post(format!("{}/v1/messages", s.base))
        .header("x-api-key", &key)
        .json(&anthropic)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    s.state.usage_meter().unwrap().flush().await;
    let store = &s.state.management.as_ref().unwrap().store;
    let rows = usage_record::Entity::find().order_by_asc(usage_record::Column::Id).all(store.db()).await.unwrap();
    let statuses: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["ok", "ok", "error", "aborted", "ok"], "{rows:#?}");
    let models: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    assert_eq!(models, ["m", "m", "m", "long", "m"]);
    assert!(rows.iter().all(|r| r.key_id.map(|k| k.to_string()) == Some(key_id.clone())));
    let first = &rows[0];
    assert_eq!(first.input_tokens as u64, whole["usage"]["prompt_tokens"].as_u64().unwrap());
    assert_eq!(first.output_tokens as u64, whole["usage"]["completion_tokens"].as_u64().unwrap());
    assert_eq!(
        (rows[1].input_tokens, rows[1].output_tokens),
        (first.input_tokens, first.output_tokens),
        "the stream counts like the whole answer (greedy)"
    );
    assert_eq!((rows[2].input_tokens, rows[2].output_tokens), (0, 0));
    assert!(rows[3].output_tokens < 8000, "{:?}", rows[3]);

    // Summed per key through GraphQL.
    let since = (s.clock.0.lock().unwrap().to_owned() - chrono::Duration::hours(1)).to_rfc3339();
    let data = s
        .ok(&key, "query($s: DateTime!) { usage(project: \"p\", since: $s, bucket: DAY, groupBy: KEY) { keyId requests errors aborted inputTokens outputTokens woken } }", json!({"s": since}))
        .await;
    let points = data["usage"].as_array().unwrap();
    assert_eq!(points.len(), 1, "{data}");
    assert_eq!(points[0]["keyId"], json!(key_id));
    assert_eq!(
        (points[0]["requests"].as_u64(), points[0]["errors"].as_u64(), points[0]["aborted"].as_u64()),
        (Some(5), Some(1), Some(1))
    );
    let input: i64 = rows.iter().map(|r| i64::from(r.input_tokens)).sum();
    assert_eq!(points[0]["inputTokens"].as_i64(), Some(input));
    // Another project's key sees none of it.
    s.project_with_model("q", "other").await;
    let (theirs, _) = s.key(ADMIN, "q", &["read"]).await;
    let data = s.ok(&theirs, "query($s: DateTime!) { usage(since: $s) { requests } }", json!({"s": since})).await;
    assert_eq!(data["usage"], json!([]));
    assert_eq!(
        s.error_code(
            &theirs,
            "query($s: DateTime!) { usage(project: \"p\", since: $s) { requests } }",
            json!({"s": since})
        )
        .await,
        "NOT_FOUND"
    );
}
on_both_databases!(every_request_is_metered);
