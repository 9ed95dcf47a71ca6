//! A key of one project can neither see nor touch another project, through
//! GraphQL or `/v1`, in either direction.

use reqwest::Method;
use serde_json::json;

use crate::harness::{Db, Server};
use crate::on_both_databases;

async fn projects_are_isolated_both_ways(db: &Db) {
    let s = Server::start(db).await;
    s.project_with_model("alpha", "alpha-model").await;
    s.project_with_model("beta", "beta-model").await;
    let mut keys = Vec::new();
    for project in ["alpha", "beta"] {
        let (key, id) = s.key(crate::harness::ADMIN, project, &["inference", "manage"]).await;
        keys.push((project, key, id));
    }
    for (mine, theirs) in [(0, 1), (1, 0)] {
        let (own_project, key, _) = &keys[mine];
        let (other_project, _, other_key_id) = &keys[theirs];
        let own_model = format!("{own_project}-model");
        let other_model = format!("{other_project}-model");

        // /v1: the list holds only the key's models; the other's are not found.
        let (status, list) = s.v1(key, Method::GET, "/v1/models", None).await;
        assert_eq!(status, 200);
        let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [own_model.as_str()]);
        let (status, _) = s.chat(key, &own_model).await;
        assert_eq!(status, 200);
        let (status, body) = s.chat(key, &other_model).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "model_not_found");
        let per_model = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
        let (status, _) =
            s.v1(key, Method::POST, &format!("/{other_model}/v1/chat/completions"), Some(per_model)).await;
        assert_eq!(status, 404);
        let (status, _) = s.v1(key, Method::GET, &format!("/v1/models/{other_model}"), None).await;
        assert_eq!(status, 404);

        // GraphQL reads: not found, exactly like something that does not exist.
        let q = |query: &str| query.replace("OTHER_MODEL", &other_model).replace("OTHER", other_project);
        for query in [
            "{ model(name: \"OTHER_MODEL\") { name } }",
            "{ project(name: \"OTHER\") { name } }",
            "{ models(project: \"OTHER\") { nodes { name } } }",
            "{ apiKeys(project: \"OTHER\") { nodes { id } } }",
            "{ auditEvents(filter: {project: \"OTHER\"}) { nodes { id } } }",
        ] {
            assert_eq!(s.error_code(key, &q(query), json!({})).await, "NOT_FOUND", "{}", q(query));
        }
        let lists = s
            .ok(key, "{ projects { nodes { name } } models { nodes { name } } apiKeys { nodes { project { name } } } auditEvents { nodes { objectName } } }", json!({}))
            .await
            .to_string();
        assert!(!lists.contains(other_project.to_string().as_str()), "{lists}");
        assert_eq!(s.error_code(key, "{ nodes { id } }", json!({})).await, "FORBIDDEN");

        // GraphQL writes: refused, and nothing changes.
        let before = s.snapshot().await;
        for (query, input) in [
            (
                "mutation($i: UpdateModelInput!) { updateModel(input: $i) { userErrors { code } } }",
                json!({"name": other_model, "scaling": {"minReplicas": 1}}),
            ),
            (
                "mutation($i: DeleteModelInput!) { deleteModel(input: $i) { userErrors { code } } }",
                json!({"name": other_model}),
            ),
            (
                "mutation($i: CreateModelInput!) { createModel(input: $i) { userErrors { code } } }",
                json!({"project": other_project, "name": "intruder", "artifact": s.artifacts.join("tiny.gguf").to_str().unwrap()}),
            ),
            (
                "mutation($i: CreateServiceInput!) { createService(input: $i) { userErrors { code } } }",
                json!({"project": other_project, "name": "intruder"}),
            ),
            (
                "mutation($i: DeleteProjectInput!) { deleteProject(input: $i) { userErrors { code } } }",
                json!({"name": other_project}),
            ),
            (
                "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { userErrors { code } } }",
                json!({"project": other_project, "name": "x", "scopes": ["inference"]}),
            ),
            (
                "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { userErrors { code } } }",
                json!({"id": other_key_id}),
            ),
        ] {
            assert_eq!(s.error_code(key, query, json!({"i": input})).await, "NOT_FOUND", "{query}");
        }
        // A document naming the other project is refused as a whole.
        let doc = json!({"projects": [{"name": other_project}], "models": []});
        let code = s
            .error_code(key, "mutation($d: JSON!) { plan(desired: $d) { changes { address } } }", json!({"d": doc}))
            .await;
        assert_eq!(code, "FORBIDDEN");
        // A model named like the other project's is taken, without saying by whom.
        let taken = s
            .ok(key, "mutation($i: CreateModelInput!) { createModel(input: $i) { userErrors { code message } } }",
                json!({"i": {"project": own_project, "name": other_model, "artifact": s.artifacts.join("tiny.gguf").to_str().unwrap()}}))
            .await;
        assert_eq!(taken["createModel"]["userErrors"][0]["code"], "TAKEN");
        assert!(!taken.to_string().contains(other_project.to_string().as_str()), "{taken}");
        assert_eq!(s.snapshot().await, before);
        let (status, _) = s.chat(&keys[theirs].1, &other_model).await;
        assert_eq!(status, 200, "the other project still works");
    }
}
on_both_databases!(projects_are_isolated_both_ways);
