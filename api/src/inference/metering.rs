//! What a request cost, recorded where this server meters: the usage meter
//! follows each answer (see [`crate::usage`]) and writes one record per request.

use std::future::Future;
use std::sync::Arc;

use axum::response::Response;
use greenthread_protocol::error::ApiResult;

use super::Inference;
use crate::catalog::CatalogEntry;
use crate::gate::Caller;
use crate::manage::Registry;
use crate::usage::{Tally, UsageContext, UsageMeter};

/// Metering on a server with a database: the meter, and the registry that
/// says whose project a model is (for requests without a key, in open mode).
#[derive(Clone)]
pub struct Metering {
    pub meter: UsageMeter,
    pub registry: Arc<Registry>,
}

impl Metering {
    /// The metering context of a request by `caller` for `entry`.
    fn context(&self, caller: &Caller, entry: &CatalogEntry) -> Option<UsageContext> {
        let (key_id, project_id) = match caller.key() {
            Some(p) => (Some(p.key_id), p.project_id),
            None => (None, self.registry.project_id(entry.spec.project.as_str())?),
        };
        Some(UsageContext {
            meter: self.meter.clone(),
            key_id,
            project_id,
            model: entry.spec.name.to_string(),
            started: tokio::time::Instant::now(),
            access: caller.access.clone(),
            request_id: caller.request_id.clone(),
        })
    }
}

/// `response` with the [`Tally`] its handler reports its token counts to,
/// which the meter reads instead of the answer's text.
pub(crate) fn tallied(mut response: Response, tally: Tally) -> Response {
    response.extensions_mut().insert(tally);
    response
}

/// A whole answer's counts, known as it is sent.
pub(crate) fn counted(response: Response, prompt_tokens: u32, completion_tokens: u32) -> Response {
    let tally = Tally::default();
    tally.tokens(prompt_tokens, completion_tokens);
    tallied(response, tally)
}

/// The SSE comment every stream ends with: its exact token counts, for
/// metering at the gateway (clients ignore comment lines).
pub(crate) fn usage_comment(prompt_tokens: u32, completion_tokens: u32) -> axum::response::sse::Event {
    let usage = serde_json::json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens});
    axum::response::sse::Event::default().comment(format!("usage {usage}"))
}

impl Inference {
    /// Meters `run`'s answer for `caller` and `entry`, where this server meters.
    pub(crate) async fn metered(
        &self,
        caller: &Caller,
        entry: &CatalogEntry,
        run: impl Future<Output = ApiResult<Response>>,
    ) -> ApiResult<Response> {
        let started = tokio::time::Instant::now();
        let ctx = self.metering.as_ref().and_then(|m| m.context(caller, entry));
        // The place is held from before the model is asked for (a wake's
        // wait counts) until the answer's last byte has gone out.
        let admitted = tracing::info_span!("admission", model = %entry.spec.name)
            .in_scope(|| self.admissions.admit(&entry.spec, caller.key()));
        let answer = match admitted {
            Ok(ticket) => run.await.map(|response| crate::http::held::hold_until_sent(response, ticket)),
            Err(refused) => Err(refused),
        };
        match answer {
            Ok(response) => {
                let response = match ctx {
                    Some(ctx) => crate::usage::observe(ctx, response),
                    None => response,
                };
                let (metrics, model) = (self.metrics.clone(), entry.spec.name.to_string());
                Ok(super::timing::timed(response, metrics, model, started, caller.access.clone()))
            }
            Err(e) => {
                if let Some(ctx) = ctx {
                    ctx.record_failure();
                }
                Err(e)
            }
        }
    }
}
