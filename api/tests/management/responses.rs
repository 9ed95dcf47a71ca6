//! Stored responses of the Responses API: kept per project, invisible to
//! another project's keys, gone once their retention has passed.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN, Db, Server};
use crate::on_both_databases;

async fn responses_are_kept_per_project_until_they_expire(db: &Db) {
    let s = Server::start(db).await;
    s.project_with_model("alpha", "alpha-model").await;
    s.project_with_model("beta", "beta-model").await;
    let (alpha, _) = s.key(ADMIN, "alpha", &["inference"]).await;
    let (beta, _) = s.key(ADMIN, "beta", &["inference"]).await;
    let (status, made) = s
        .v1(
            &alpha,
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "alpha-model", "input": "hi", "max_output_tokens": 3})),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    let path = format!("/v1/responses/{}", made["id"].as_str().unwrap());

    // Another project's key: not found, exactly like a response that does not exist.
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = s.v1(&beta, method, &path, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    }
    let (status, body) = s
        .v1(
            &beta,
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "beta-model", "input": "hi", "previous_response_id": made["id"]})),
        )
        .await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("previous_response_id")), "{body}");
    let (status, kept) = s.v1(&alpha, Method::GET, &path, None).await;
    assert_eq!((status, kept["id"].clone()), (200, made["id"].clone()));

    // Bad input: a clear error naming the field, and nothing kept.
    let (status, body) = s
        .v1(
            &alpha,
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "alpha-model", "input": [{"type": "function_call"}]})),
        )
        .await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("input[0].arguments")), "{body}");

    // Past the retention it is gone, and pruning deletes the row.
    s.clock.advance(Duration::from_secs(3601));
    let (status, _) = s.v1(&alpha, Method::GET, &path, None).await;
    assert_eq!(status, 404);
    let store = &s.state.management.as_ref().unwrap().store;
    assert_eq!(store.prune_responses().await.unwrap(), 1);

    // Deleted by its owner: gone at once.
    let (_, again) = s
        .v1(
            &alpha,
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "alpha-model", "input": "hi", "max_output_tokens": 2})),
        )
        .await;
    let path = format!("/v1/responses/{}", again["id"].as_str().unwrap());
    let (status, deleted) = s.v1(&alpha, Method::DELETE, &path, None).await;
    assert_eq!((status, deleted["deleted"].clone()), (200, Value::Bool(true)));
    assert_eq!(s.v1(&alpha, Method::GET, &path, None).await.0, 404);
}
on_both_databases!(responses_are_kept_per_project_until_they_expire);
