//! Per-key rate limits, counted in the database so that gateway replicas
//! sharing it enforce one budget.

use serde_json::json;

use crate::harness::{ADMIN, Db, Server};
use crate::on_both_databases;

const CREATE_KEY: &str = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { requestsPerMinute } userErrors { field code } } }";

async fn limited_key(s: &Server, rpm: Option<u32>, tpm: Option<u32>) -> String {
    let data = s
        .ok(
            ADMIN,
            CREATE_KEY,
            json!({"i": {"project": "p", "name": "limited", "scopes": ["inference"],
                                             "requestsPerMinute": rpm, "tokensPerMinute": tpm}}),
        )
        .await;
    assert_eq!(data["createApiKey"]["userErrors"], json!([]), "{data}");
    data["createApiKey"]["secret"].as_str().unwrap().to_owned()
}

async fn two_replicas_share_one_request_budget(db: &Db) {
    let a = Server::start(db).await;
    a.project_with_model("p", "m").await;
    let b = Server::start(db).await;
    let key = limited_key(&a, Some(3), None).await;
    for server in [&a, &b, &a] {
        let (status, body) = server.chat(&key, "m").await;
        assert_eq!(status, 200, "{body}");
    }
    let resp = b
        .client
        .post(format!("{}/v1/chat/completions", b.base))
        .bearer_auth(&key)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let h = resp.headers().clone();
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(h["x-ratelimit-limit-requests"], "3");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    assert!(h["x-ratelimit-reset-requests"].to_str().unwrap().ends_with('s'));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    // Anthropic's route answers in its own shape.
    let resp = a
        .client
        .post(format!("{}/v1/messages", a.base))
        .header("x-api-key", &key)
        .json(&json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // Other keys are not affected.
    let (free, _) = a.key(ADMIN, "p", &["inference"]).await;
    assert_eq!(b.chat(&free, "m").await.0, 200);
}
on_both_databases!(two_replicas_share_one_request_budget);

async fn tokens_used_count_against_the_token_limit(db: &Db) {
    let s = Server::start(db).await;
    s.project_with_model("p", "m").await;
    let key = limited_key(&s, None, Some(10)).await;
    let (status, first) = s.chat(&key, "m").await;
    assert_eq!(status, 200);
    assert!(first["usage"]["total_tokens"].as_u64().unwrap() > 10);
    s.state.usage_meter().unwrap().flush().await;
    let (status, body) = s.chat(&key, "m").await;
    assert_eq!(status, 429, "{body}");
    // A limit of zero is refused, not taken as "blocked".
    let data = s
        .ok(
            ADMIN,
            CREATE_KEY,
            json!({"i": {"project": "p", "name": "zero", "scopes": ["inference"], "requestsPerMinute": 0}}),
        )
        .await;
    assert_eq!(data["createApiKey"]["userErrors"][0]["field"], "input.requestsPerMinute");
}
on_both_databases!(tokens_used_count_against_the_token_limit);
