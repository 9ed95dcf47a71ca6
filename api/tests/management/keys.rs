//! API keys: created with the secret shown once, stored hashed, refused at
//! once when revoked, refused when expired or tampered with.

use std::time::Duration;

use base64::Engine;
use greenthread_store::Clock;
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::harness::{ADMIN, Db, Server};
use crate::on_both_databases;

const CREATE_KEY: &str = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { id hint scopes } userErrors { field code } } }";
const REVOKE_KEY: &str =
    "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { apiKey { revokedAt } userErrors { field code } } }";

async fn keys_are_checked_on_every_request(db: &Db) {
    let s = Server::start(db).await;
    s.project_with_model("p", "m").await;
    let data =
        s.ok(ADMIN, CREATE_KEY, json!({"i": {"project": "p", "name": "ci", "scopes": ["inference", "read"]}})).await;
    let payload = &data["createApiKey"];
    let secret = payload["secret"].as_str().unwrap().to_owned();
    let id = payload["apiKey"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("gt_"), "{secret}");
    assert_eq!(payload["apiKey"]["scopes"], json!(["inference", "read"]));
    let hint = payload["apiKey"]["hint"].as_str().unwrap();
    assert!(hint.ends_with(&secret[secret.len() - 6..]) && hint.len() < 16, "{hint}");

    // Only the hash is stored: the secret appears nowhere in the database.
    let stored = s.state.management.as_ref().unwrap().store.db();
    let backend = stored.get_database_backend();
    let rows = stored
        .query_all_raw(Statement::from_string(backend, "SELECT secret_hash, secret_hint FROM api_keys".to_owned()))
        .await
        .unwrap();
    for row in rows {
        let hash: String = row.try_get("", "secret_hash").unwrap();
        assert_ne!(hash, secret);
        assert_eq!(hash.len(), 64);
    }
    // Listing keys shows the hint, never the secret.
    let listed = s.gql(ADMIN, "{ apiKeys { nodes { hint } } }", json!({})).await.to_string();
    assert!(!listed.contains(&secret));

    let (status, body) = s.chat(&secret, "m").await;
    assert_eq!(status, 200, "{body}");

    // Tampered: the payload changed (another project), the signature kept.
    let jwt = secret.strip_prefix("gt_").unwrap();
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
    claims["scp"] = json!("inference read manage admin");
    parts[1] = b64.encode(claims.to_string());
    let tampered = format!("gt_{}", parts.join("."));
    let (status, body) = s.chat(&tampered, "m").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(s.error_code(&tampered, "{ viewer { keyName } }", json!({})).await, "UNAUTHENTICATED");
    let (status, _) = s.chat("gt_not.a.jwt", "m").await;
    assert_eq!(status, 401);
    let resp = s.client.get(format!("{}/v1/models", s.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401, "no key at all");

    // Revoked: refused on the very next request.
    let data = s.ok(ADMIN, REVOKE_KEY, json!({"i": {"id": id}})).await;
    assert!(data["revokeApiKey"]["apiKey"]["revokedAt"].is_string());
    let (status, body) = s.chat(&secret, "m").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");
    let data = s.ok(ADMIN, REVOKE_KEY, json!({"i": {"id": id}})).await;
    assert_eq!(data["revokeApiKey"]["userErrors"][0]["code"], "ALREADY_REVOKED");
    assert_eq!(
        s.error_code(ADMIN, REVOKE_KEY, json!({"i": {"id": uuid::Uuid::now_v7().to_string()}})).await,
        "NOT_FOUND"
    );
}
on_both_databases!(keys_are_checked_on_every_request);

async fn an_expired_key_is_refused(db: &Db) {
    let s = Server::start(db).await;
    s.project_with_model("p", "m").await;
    let expires = (s.clock.now() + chrono::Duration::hours(1)).to_rfc3339();
    let data = s
        .ok(
            ADMIN,
            CREATE_KEY,
            json!({"i": {"project": "p", "name": "short", "scopes": ["inference"], "expiresAt": expires}}),
        )
        .await;
    let secret = data["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let (status, _) = s.v1(&secret, Method::GET, "/v1/models", None).await;
    assert_eq!(status, 200);
    s.clock.advance(Duration::from_secs(2 * 3600));
    let (status, body) = s.v1(&secret, Method::GET, "/v1/models", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
}
on_both_databases!(an_expired_key_is_refused);

async fn bad_key_requests_write_nothing(db: &Db) {
    let s = Server::start(db).await;
    s.project_with_model("p", "m").await;
    let (manager, _) = s.key(ADMIN, "p", &["manage"]).await;
    let before = (s.snapshot().await, s.audit_count().await);
    let past = (s.clock.now() - chrono::Duration::hours(1)).to_rfc3339();
    for (token, input, field, code) in [
        (ADMIN, json!({"project": "p", "name": "x", "scopes": ["root"]}), "input.scopes", "INVALID"),
        (ADMIN, json!({"project": "p", "name": "x", "scopes": []}), "input.scopes", "INVALID"),
        (ADMIN, json!({"project": "p", "name": "", "scopes": ["read"]}), "input.name", "INVALID"),
        (
            ADMIN,
            json!({"project": "p", "name": "x", "scopes": ["read"], "expiresAt": past}),
            "input.expiresAt",
            "INVALID",
        ),
        (manager.as_str(), json!({"project": "p", "name": "x", "scopes": ["admin"]}), "input.scopes", "FORBIDDEN"),
    ] {
        let data = s.ok(token, CREATE_KEY, json!({"i": input})).await;
        let errors = data["createApiKey"]["userErrors"].as_array().unwrap().clone();
        assert!(errors.iter().any(|e| e["field"] == field && e["code"] == code), "{field}/{code}: {errors:?}");
        assert!(data["createApiKey"]["secret"].is_null());
    }
    assert_eq!((s.snapshot().await, s.audit_count().await), before);
    // A read-only key may not write.
    let (reader, _) = s.key(ADMIN, "p", &["read"]).await;
    let code = s.error_code(&reader, CREATE_KEY, json!({"i": {"project": "p", "name": "x", "scopes": ["read"]}})).await;
    assert_eq!(code, "FORBIDDEN");
    // An inference-only key may not read the management API, nor a read key call models.
    let (caller, _) = s.key(ADMIN, "p", &["inference"]).await;
    assert_eq!(s.error_code(&caller, "{ models { nodes { name } } }", json!({})).await, "FORBIDDEN");
    let (status, body) = s.chat(&reader, "m").await;
    assert_eq!(status, 403, "{body}");
}
on_both_databases!(bad_key_requests_write_nothing);

async fn a_key_revoked_on_another_replica_is_refused_within_the_verification_bound(db: &Db) {
    let a = Server::start(db).await;
    a.project_with_model("p", "m").await;
    let b = Server::start(db).await;
    let data = a.ok(ADMIN, CREATE_KEY, json!({"i": {"project": "p", "name": "ci", "scopes": ["inference"]}})).await;
    let secret = data["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let id = data["createApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned();
    assert_eq!(b.chat(&secret, "m").await.0, 200, "b has verified the key");
    assert_eq!(a.chat(&secret, "m").await.0, 200, "and so has a");
    a.ok(ADMIN, REVOKE_KEY, json!({"i": {"id": id}})).await;
    assert_eq!(a.chat(&secret, "m").await.0, 401, "the replica that revoked it forgets it at once");
    // b trusts its verification for at most VERIFIED_FOR, then reads the row again.
    assert_eq!(b.chat(&secret, "m").await.0, 200, "b's verification is still fresh");
    b.clock.advance(greenthread_store::auth::VERIFIED_FOR + Duration::from_millis(1));
    let (status, body) = b.chat(&secret, "m").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");
}
on_both_databases!(a_key_revoked_on_another_replica_is_refused_within_the_verification_bound);
