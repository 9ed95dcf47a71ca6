//! The GraphQL surface itself: authentication, limits, pagination,
//! subscriptions, the exported SDL.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{ADMIN, Db, Server};

#[test]
fn the_exported_schema_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let sdl = greenthread_api::graphql::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &sdl).unwrap();
    }
    let exported = std::fs::read_to_string(&path).unwrap();
    assert!(
        exported == sdl,
        "api/schema.graphql is out of date: run `UPDATE_SCHEMA=1 cargo test -p greenthread-api --test management schema` \
         or `greenthread schema > api/schema.graphql`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_key_are_unauthenticated() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    let resp = s
        .client
        .post(format!("{}/graphql", s.base))
        .json(&json!({"query": "{ viewer { keyName } }"}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{body}");
    assert_eq!(s.error_code("nonsense", "{ viewer { keyName } }", json!({})).await, "UNAUTHENTICATED");
    let viewer = s.ok(ADMIN, "{ viewer { scopes project { name } } }", json!({})).await;
    assert_eq!(viewer["viewer"], json!({"scopes": ["read", "manage", "admin"], "project": {"name": "default"}}));
    // GraphiQL in a browser.
    let page = s.client.get(format!("{}/graphql", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.to_lowercase().contains("graphiql"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_complexity_and_page_size_are_limited() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    let deep = "{ projects(first: 1) { nodes { services(first: 1) { nodes { project { services(first: 1) { nodes { project { services(first: 1) { nodes { project { models(first: 1) { nodes { project { name } } } } } } } } } } } } } } }";
    let answer = s.gql(ADMIN, deep, json!({})).await;
    assert!(answer["errors"][0]["message"].as_str().unwrap().contains("nested too deep"), "{answer}");
    let wide = format!(
        "{{ {} }}",
        (0..80)
            .map(|i| format!("p{i}: projects(first: 100) {{ nodes {{ name description }} }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let answer = s.gql(ADMIN, &wide, json!({})).await;
    assert!(answer["errors"][0]["message"].as_str().unwrap().contains("complex"), "{answer}");
    assert_eq!(s.error_code(ADMIN, "{ projects(first: 1000) { nodes { name } } }", json!({})).await, "BAD_USER_INPUT");
    assert_eq!(
        s.error_code(ADMIN, "{ projects(after: \"garbage\") { nodes { name } } }", json!({})).await,
        "BAD_USER_INPUT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_page_with_cursors() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    for i in 0..5 {
        let input = json!({"i": {"name": format!("p{i}")}});
        s.ok(ADMIN, "mutation($i: CreateProjectInput!) { createProject(input: $i) { userErrors { code } } }", input)
            .await;
    }
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s
            .ok(ADMIN, "query($a: String) { projects(first: 2, after: $a) { edges { cursor node { name } } pageInfo { hasNextPage endCursor } } }", json!({"a": after}))
            .await;
        let conn = &page["projects"];
        names.extend(conn["edges"].as_array().unwrap().iter().map(|e| e["node"]["name"].as_str().unwrap().to_owned()));
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(names, ["default", "p0", "p1", "p2", "p3", "p4"]);
    // The audit log pages newest first.
    let page = s.ok(ADMIN, "{ auditEvents(first: 2, filter: {action: \"project.create\"}) { nodes { objectName } pageInfo { hasNextPage } } }", json!({})).await;
    assert_eq!(page["auditEvents"]["nodes"], json!([{"objectName": "p4"}, {"objectName": "p3"}]));
    assert_eq!(page["auditEvents"]["pageInfo"]["hasNextPage"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_from_one_key_is_rate_limited() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    let mut limited = None;
    for _ in 0..150 {
        let resp = s
            .client
            .post(format!("{}/graphql", s.base))
            .bearer_auth(ADMIN)
            .json(&json!({"query": "{ viewer { keyName } }"}))
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 429 {
            let retry_after = resp.headers()["retry-after"].to_str().unwrap().to_owned();
            limited = Some((retry_after, resp.json::<Value>().await.unwrap()));
            break;
        }
    }
    let (retry_after, body) = limited.expect("150 requests at once must hit the limit of a burst of 100");
    assert!(retry_after.parse::<u64>().unwrap() >= 1);
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_streams_a_models_wake() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    s.project_with_model("live", "live-model").await;
    let (reader, _) = s.key(ADMIN, "live", &["read", "inference"]).await;
    let mut request = format!("{}/graphql/ws", s.base.replace("http", "ws")).into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "graphql-transport-ws");
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {reader}")}})))
        .await
        .unwrap();
    let ack: Value = serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(ack["type"], "connection_ack");
    ws.send(send(json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { modelEvents { model project from to tier cause } }"}})))
        .await
        .unwrap();
    // Give the subscription a moment to be registered before causing events.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (status, _) = s.chat(&reader, "live-model").await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    while !seen.iter().any(|(to, _): &(String, Value)| to == "serving") {
        let message =
            tokio::time::timeout(std::time::Duration::from_secs(20), ws.next()).await.unwrap().unwrap().unwrap();
        let event: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        assert_eq!(event["type"], "next", "{event}");
        let e = event["payload"]["data"]["modelEvents"].clone();
        assert_eq!((e["model"].as_str(), e["project"].as_str()), (Some("live-model"), Some("live")));
        seen.push((e["to"].as_str().unwrap().to_owned(), e));
    }
    let states: Vec<&str> = seen.iter().map(|(to, _)| to.as_str()).collect();
    assert!(states.contains(&"waking"), "{states:?}");
    assert_eq!(seen.last().unwrap().1["tier"], "device");
    assert_eq!(seen.last().unwrap().1["cause"], "request");

    // A key without a valid credential is refused at connection_init.
    let mut request = format!("{}/graphql/ws", s.base.replace("http", "ws")).into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(send(json!({"type": "connection_init", "payload": {"authorization": "Bearer wrong"}}))).await.unwrap();
    let answer = ws.next().await.unwrap();
    assert!(!matches!(answer, Ok(Message::Text(ref t)) if t.contains("connection_ack")), "{answer:?}");
}
