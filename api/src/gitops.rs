//! `greenthread plan` and `greenthread apply`: a GraphQL client that sends a
//! desired-state folder to a server and prints the changes the way
//! Terraform does.

use serde_json::{Value, json};

use crate::cli::GitopsArgs;
use crate::config::{Config, to_json};

/// How a plan or apply ended, as its exit code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitopsExit {
    /// Nothing to change (plan), or everything applied (apply).
    Clean = 0,
    Failed = 1,
    /// Changes are pending (plan only).
    Pending = 2,
}

const CHANGE_FIELDS: &str =
    "changes { action address destructive fields { field before after } } etag userErrors { field message code }";

async fn call(args: &GitopsArgs, query: &str, variables: Value) -> Result<Value, String> {
    let url = format!("{}/graphql", args.url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&args.api_key)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| format!("{url} answered {status} with no JSON: {e}"))?;
    if let Some(errors) = body.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
        let messages: Vec<String> = errors
            .iter()
            .map(|e| {
                let code = e.pointer("/extensions/code").and_then(Value::as_str).unwrap_or("ERROR");
                format!("{code}: {}", e.get("message").and_then(Value::as_str).unwrap_or("?"))
            })
            .collect();
        return Err(messages.join("\n"));
    }
    Ok(body["data"].clone())
}

fn user_errors(payload: &Value) -> Option<String> {
    let errors = payload.get("userErrors")?.as_array()?;
    if errors.is_empty() {
        return None;
    }
    Some(
        errors
            .iter()
            .map(|e| {
                format!(
                    "{} ({}): {}",
                    e["field"].as_str().unwrap_or("?"),
                    e["code"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The changes as lines: `+ create`, `~ update` (with field diffs), `- delete`.
pub fn render(changes: &[Value]) -> String {
    let mut out = String::new();
    let (mut create, mut update, mut delete) = (0, 0, 0);
    for c in changes {
        let sign = match c["action"].as_str() {
            Some("CREATE") => {
                create += 1;
                "+"
            }
            Some("DELETE") => {
                delete += 1;
                "-"
            }
            _ => {
                update += 1;
                "~"
            }
        };
        let note = if c["destructive"].as_bool() == Some(true) { "  (destructive)" } else { "" };
        out.push_str(&format!("  {sign} {}{note}\n", c["address"].as_str().unwrap_or("?")));
        for f in c["fields"].as_array().into_iter().flatten() {
            let show = |v: &Value| if v.is_null() { "(none)".to_owned() } else { v.to_string() };
            out.push_str(&format!(
                "      {}: {} -> {}\n",
                f["field"].as_str().unwrap_or("?"),
                show(&f["before"]),
                show(&f["after"])
            ));
        }
    }
    out.push_str(&format!("Plan: {create} to create, {update} to update, {delete} to delete.\n"));
    out
}

async fn plan(args: &GitopsArgs, desired: &Value) -> Result<Value, String> {
    let query = format!("mutation($d: JSON!) {{ plan(desired: $d) {{ {CHANGE_FIELDS} }} }}");
    let data = call(args, &query, json!({"d": desired})).await?;
    let payload = data["plan"].clone();
    match user_errors(&payload) {
        Some(e) => Err(e),
        None => Ok(payload),
    }
}

fn load(args: &GitopsArgs) -> Result<Value, String> {
    Config::load(&args.path).map(|c| to_json(&c.state)).map_err(|e| e.to_string())
}

/// `greenthread plan -f DIR`.
pub async fn run_plan(args: GitopsArgs) -> GitopsExit {
    let result = async {
        let desired = load(&args)?;
        let payload = plan(&args, &desired).await?;
        let changes = payload["changes"].as_array().cloned().unwrap_or_default();
        if changes.is_empty() {
            println!("No changes. The server matches {}.", args.path.display());
            return Ok(GitopsExit::Clean);
        }
        print!("{}", render(&changes));
        Ok::<_, String>(GitopsExit::Pending)
    }
    .await;
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        GitopsExit::Failed
    })
}

/// `greenthread apply -f DIR`: plans, shows the plan, applies exactly it.
pub async fn run_apply(args: GitopsArgs) -> GitopsExit {
    let result = async {
        let desired = load(&args)?;
        let payload = plan(&args, &desired).await?;
        let changes = payload["changes"].as_array().cloned().unwrap_or_default();
        if changes.is_empty() {
            println!("No changes. The server matches {}.", args.path.display());
            return Ok(GitopsExit::Clean);
        }
        print!("{}", render(&changes));
        let etag = payload["etag"].as_str().unwrap_or_default().to_owned();
        let query = format!(
            "mutation($d: JSON!, $e: String!, $k: String) {{ apply(desired: $d, baseEtag: $e, idempotencyKey: $k) {{ applied {CHANGE_FIELDS} }} }}"
        );
        let key = uuid::Uuid::now_v7().to_string();
        let data = call(&args, &query, json!({"d": desired, "e": etag, "k": key})).await?;
        let applied = &data["apply"];
        if let Some(e) = user_errors(applied) {
            return Err(e);
        }
        let count = applied["changes"].as_array().map_or(0, Vec::len);
        println!("Applied {count} changes.");
        Ok::<_, String>(GitopsExit::Clean)
    }
    .await;
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        GitopsExit::Failed
    })
}
