//! Custom domains: a verified domain routes to its service's models; one
//! not yet verified answers 404; verification reads a real DNS answer from a
//! zone on loopback.

use reqwest::Method;
use serde_json::json;

use crate::harness::{ADMIN, Db, Server};
use crate::on_both_databases;

const ADD: &str = "mutation($i: AddDomainInput!) { addDomain(input: $i) {
    domain { hostname verified verificationRecord { name kind value } service { name } } userErrors { field code message } } }";
const VERIFY: &str =
    "mutation($i: DomainInput!) { verifyDomain(input: $i) { domain { verified } userErrors { field code message } } }";

async fn a_verified_domain_routes_to_its_service(db: &Db) {
    let s = Server::start(db).await;
    s.project_with_model("shop", "shop-general").await;
    let tiny = s.artifacts.join("tiny.gguf");
    let data = s
        .ok(ADMIN, "mutation($m: CreateModelInput!) { createService(input: {project: \"shop\", name: \"chat\"}) { userErrors { code } }
                    createModel(input: $m) { userErrors { message } } }",
            json!({"m": {"project": "shop", "service": "chat", "name": "shop-chat", "artifact": tiny.to_str().unwrap()}}))
        .await;
    assert_eq!(data["createModel"]["userErrors"], json!([]));
    let (key, _) = s.key(ADMIN, "shop", &["inference", "manage"]).await;

    let added =
        s.ok(&key, ADD, json!({"i": {"project": "shop", "service": "chat", "hostname": "Chat.Shop.Example"}})).await;
    let domain = &added["addDomain"]["domain"];
    assert_eq!((domain["hostname"].as_str(), domain["verified"].as_bool()), (Some("chat.shop.example"), Some(false)));
    let record = domain["verificationRecord"].clone();
    assert_eq!(record["name"], "_greenthread-challenge.chat.shop.example");

    let via_domain = |path: &str| {
        s.client
            .request(Method::GET, format!("{}{path}", s.base))
            .bearer_auth(&key)
            .header("host", "chat.shop.example:8080")
    };
    // Not verified yet: the hostname answers nothing.
    let resp = via_domain("/v1/models").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_host");
    // Verification fails while DNS has no record, and succeeds once it has.
    let failed = s.ok(&key, VERIFY, json!({"i": {"hostname": "chat.shop.example"}})).await;
    assert_eq!(failed["verifyDomain"]["userErrors"][0]["code"], "NOT_VERIFIED", "{failed}");
    s.dns.publish(record["name"].as_str().unwrap(), "some-other-site-verification=abc");
    let failed = s.ok(&key, VERIFY, json!({"i": {"hostname": "chat.shop.example"}})).await;
    assert_eq!(failed["verifyDomain"]["userErrors"][0]["code"], "NOT_VERIFIED");
    s.dns.publish(record["name"].as_str().unwrap(), record["value"].as_str().unwrap());
    let verified = s.ok(&key, VERIFY, json!({"i": {"hostname": "chat.shop.example"}})).await;
    assert_eq!(verified["verifyDomain"]["domain"]["verified"], true, "{verified}");

    // Through the domain only the service's models exist.
    let list: serde_json::Value = via_domain("/v1/models").send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["shop-chat"]);
    let chat = |model: &str| {
        s.client
            .post(format!("{}/v1/chat/completions", s.base))
            .bearer_auth(&key)
            .header("host", "chat.shop.example")
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}))
            .send()
    };
    assert_eq!(chat("shop-chat").await.unwrap().status().as_u16(), 200);
    assert_eq!(chat("shop-general").await.unwrap().status().as_u16(), 404);
    // The server's own address still sees the whole project.
    let (_, all) = s.v1(&key, Method::GET, "/v1/models", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);

    // Bad input, and other projects' domains.
    for (input, field, code) in [
        (json!({"project": "shop", "service": "chat", "hostname": "10.0.0.1"}), "input.hostname", "INVALID"),
        (json!({"project": "shop", "service": "chat", "hostname": "localhost"}), "input.hostname", "INVALID"),
        (json!({"project": "shop", "service": "nope", "hostname": "x.shop.example"}), "input.service", "NOT_FOUND"),
        (json!({"project": "shop", "service": "chat", "hostname": "chat.shop.example"}), "input.hostname", "TAKEN"),
    ] {
        let data = s.ok(&key, ADD, json!({"i": input})).await;
        assert_eq!(data["addDomain"]["userErrors"][0]["field"], field, "{data}");
        assert_eq!(data["addDomain"]["userErrors"][0]["code"], code, "{data}");
    }
    s.project_with_model("other", "other-model").await;
    let (theirs, _) = s.key(ADMIN, "other", &["manage"]).await;
    assert_eq!(s.error_code(&theirs, VERIFY, json!({"i": {"hostname": "chat.shop.example"}})).await, "NOT_FOUND");
    let listed = s.ok(&theirs, "{ domains { hostname } }", json!({})).await;
    assert_eq!(listed["domains"], json!([]));

    // Removed: the hostname is the server's again.
    let removed = s
        .ok(&key, "mutation { removeDomain(input: {hostname: \"chat.shop.example\"}) { deletedId } }", json!({}))
        .await;
    assert!(removed["removeDomain"]["deletedId"].is_string());
    let list: serde_json::Value = via_domain("/v1/models").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}
on_both_databases!(a_verified_domain_routes_to_its_service);
