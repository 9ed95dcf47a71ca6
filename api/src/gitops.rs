//! `greenthread plan` and `greenthread apply`: a GraphQL client that sends a
//! desired-state folder to a server and prints the changes the way
//! Terraform does. The operations (`api/graphql/gitops.graphql`) are
//! checked against `api/schema.graphql` when this is compiled, and answers
//! are read into their generated types: an answer this client does not
//! understand is an error, never "No changes".

use graphql_client::{GraphQLQuery, Response};
use serde_json::Value;

use crate::cli::GitopsArgs;
use crate::config::{Config, to_json};

/// The schema's `JSON` scalar, under the name the generated code looks up.
#[allow(clippy::upper_case_acronyms)]
type JSON = Value;

#[derive(GraphQLQuery)]
#[graphql(schema_path = "schema.graphql", query_path = "graphql/gitops.graphql", response_derives = "Debug, Clone")]
pub struct Plan;

#[derive(GraphQLQuery)]
#[graphql(schema_path = "schema.graphql", query_path = "graphql/gitops.graphql", response_derives = "Debug, Clone")]
pub struct Apply;

/// How a plan or apply ended, as its exit code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitopsExit {
    /// Nothing to change (plan), or everything applied (apply).
    Clean = 0,
    Failed = 1,
    /// Changes are pending (plan only).
    Pending = 2,
}

async fn call<Q: GraphQLQuery>(args: &GitopsArgs, variables: Q::Variables) -> Result<Q::ResponseData, String> {
    let url = format!("{}/graphql", args.url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&args.api_key)
        .json(&Q::build_query(variables))
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("{url} answered {status}, then broke off: {e}"))?;
    let body: Response<Q::ResponseData> = serde_json::from_str(&text)
        .map_err(|e| format!("{url} answered {status} with a response this client does not understand: {e}"))?;
    if let Some(errors) = body.errors.filter(|e| !e.is_empty()) {
        let messages: Vec<String> = errors
            .iter()
            .map(|e| {
                let code = e.extensions.as_ref().and_then(|x| x.get("code")).and_then(Value::as_str).unwrap_or("ERROR");
                format!("{code}: {}", e.message)
            })
            .collect();
        return Err(messages.join("\n"));
    }
    body.data.ok_or_else(|| format!("{url} answered {status} with neither data nor errors"))
}

/// The payload's user errors as one message, one per line: `field (CODE): message`.
/// (Each operation's generated module has its own error type, hence the triples.)
fn user_errors<'a>(errors: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) -> Result<(), String> {
    let lines: Vec<String> =
        errors.into_iter().map(|(field, code, message)| format!("{field} ({code}): {message}")).collect();
    if lines.is_empty() { Ok(()) } else { Err(lines.join("\n")) }
}

/// The changes as lines: `+ create`, `~ update` (with field diffs), `- delete`.
pub fn render(changes: &[plan::ChangeParts]) -> String {
    let mut out = String::new();
    let (mut create, mut update, mut delete) = (0, 0, 0);
    for c in changes {
        let sign = match c.action {
            plan::ChangeAction::CREATE => {
                create += 1;
                "+"
            }
            plan::ChangeAction::DELETE => {
                delete += 1;
                "-"
            }
            plan::ChangeAction::UPDATE | plan::ChangeAction::Other(_) => {
                update += 1;
                "~"
            }
        };
        let note = if c.destructive { "  (destructive)" } else { "" };
        out.push_str(&format!("  {sign} {}{note}\n", c.address));
        for f in &c.fields {
            let show =
                |v: &Option<Value>| v.as_ref().filter(|v| !v.is_null()).map_or("(none)".to_owned(), Value::to_string);
            out.push_str(&format!("      {}: {} -> {}\n", f.field, show(&f.before), show(&f.after)));
        }
    }
    out.push_str(&format!("Plan: {create} to create, {update} to update, {delete} to delete.\n"));
    out
}

async fn plan(args: &GitopsArgs, desired: &Value) -> Result<plan::PlanPlan, String> {
    let data = call::<Plan>(args, plan::Variables { desired: desired.clone() }).await?;
    user_errors(data.plan.user_errors.iter().map(|e| (e.field.as_str(), e.code.as_str(), e.message.as_str())))?;
    Ok(data.plan)
}

fn load(args: &GitopsArgs) -> Result<Value, String> {
    Config::load(&args.path).map(|c| to_json(&c.state)).map_err(|e| e.to_string())
}

fn exit_code(result: Result<GitopsExit, String>) -> GitopsExit {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        GitopsExit::Failed
    })
}

/// Plans the folder and prints the plan: the desired state and the plan,
/// or `None` when the server already matches.
async fn shown_plan(args: &GitopsArgs) -> Result<Option<(Value, plan::PlanPlan)>, String> {
    let desired = load(args)?;
    let planned = plan(args, &desired).await?;
    if planned.changes.is_empty() {
        println!("No changes. The server matches {}.", args.path.display());
        return Ok(None);
    }
    print!("{}", render(&planned.changes));
    Ok(Some((desired, planned)))
}

/// `greenthread plan -f DIR`.
pub async fn run_plan(args: GitopsArgs) -> GitopsExit {
    exit_code(
        shown_plan(&args).await.map(|shown| if shown.is_some() { GitopsExit::Pending } else { GitopsExit::Clean }),
    )
}

/// `greenthread apply -f DIR`: plans, shows the plan, applies exactly it.
pub async fn run_apply(args: GitopsArgs) -> GitopsExit {
    exit_code(
        async {
            let Some((desired, planned)) = shown_plan(&args).await? else { return Ok(GitopsExit::Clean) };
            let base_etag = planned.etag.ok_or("the plan came without an etag to apply it against")?;
            let variables =
                apply::Variables { desired, base_etag, idempotency_key: Some(uuid::Uuid::now_v7().to_string()) };
            let applied = call::<Apply>(&args, variables).await?.apply;
            user_errors(applied.user_errors.iter().map(|e| (e.field.as_str(), e.code.as_str(), e.message.as_str())))?;
            if !applied.applied {
                return Err("the server did not apply the plan and gave no reason".into());
            }
            println!("Applied {} changes.", applied.changes.len());
            Ok(GitopsExit::Clean)
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::post;
    use serde_json::json;

    use super::*;

    /// A server on loopback that answers every GraphQL request with `answer`.
    async fn answering(answer: Value) -> GitopsArgs {
        let app = Router::new().route("/graphql", post(move || async move { axum::Json(answer) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        GitopsArgs { url, api_key: "gt-test".into(), path: std::path::PathBuf::from(".") }
    }

    #[tokio::test]
    async fn a_plan_without_changes_is_an_error_not_no_changes() {
        let args = answering(json!({"data": {"plan": {"etag": "e1", "userErrors": []}}})).await;
        let err = plan(&args, &json!({})).await.unwrap_err();
        assert!(err.contains("does not understand") && err.contains("changes"), "{err}");
    }

    #[tokio::test]
    async fn an_unknown_action_or_missing_data_is_caught() {
        let args = answering(json!({"errors": []})).await;
        assert!(plan(&args, &json!({})).await.unwrap_err().contains("neither data nor errors"));
        let change = json!({"action": "CREATE", "address": "model/m", "destructive": false, "fields": []});
        let args = answering(json!({"data": {"plan": {"changes": [change], "etag": "e", "userErrors": []}}})).await;
        let planned = plan(&args, &json!({})).await.unwrap();
        assert_eq!(render(&planned.changes), "  + model/m\nPlan: 1 to create, 0 to update, 0 to delete.\n");
    }

    #[tokio::test]
    async fn graphql_errors_and_user_errors_are_reported_with_their_codes() {
        let args = answering(json!({"errors": [{"message": "no", "extensions": {"code": "FORBIDDEN"}}]})).await;
        assert_eq!(plan(&args, &json!({})).await.unwrap_err(), "FORBIDDEN: no");
        let bad = json!({"field": "desired.models", "message": "bad name", "code": "INVALID"});
        let args = answering(json!({"data": {"plan": {"changes": [], "etag": null, "userErrors": [bad]}}})).await;
        assert_eq!(plan(&args, &json!({})).await.unwrap_err(), "desired.models (INVALID): bad name");
    }
}
