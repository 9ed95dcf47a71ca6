//! `POST /graphql`: one operation per request as JSON, answered in
//! GraphQL's JSON shape whatever goes wrong, with the HTTP status of the
//! GraphQL-over-HTTP convention (400 for a request that is not a GraphQL
//! request, 413 past the body limit, 429 when rate limited).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::errors::{BAD_REQUEST, PAYLOAD_TOO_LARGE, coded};
use super::{GraphqlState, Refusal, authenticate};
use crate::gate::bearer;

/// A request that is not a GraphQL request this server runs.
struct Unreadable {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Unreadable {
    fn bad(message: String) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code: BAD_REQUEST, message }
    }

    fn into_response(self) -> Response {
        let error = coded(self.code, self.message).into_server_error(Default::default());
        json(self.status, &async_graphql::Response::from_errors(vec![error]))
    }
}

/// `POST /graphql`.
pub async fn execute(
    State(state): State<GraphqlState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = match body.map_err(|e| rejected_body(&e)).and_then(|b| parse_request(&b)) {
        Ok(request) => request,
        Err(refused) => return refused.into_response(),
    };
    let auth = authenticate(&state, bearer(&headers)).await;
    match state.run(auth, request).await {
        Ok(response) => json(StatusCode::OK, &response),
        Err(refusal) => {
            let mut http = json(refusal.status(), &async_graphql::Response::from_errors(vec![refusal.error()]));
            if let Refusal::RateLimited(wait) = refusal
                && let Ok(v) = wait.as_secs().max(1).to_string().parse()
            {
                http.headers_mut().insert(header::RETRY_AFTER, v);
            }
            http
        }
    }
}

/// The body as one GraphQL request.
fn parse_request(body: &[u8]) -> Result<async_graphql::Request, Unreadable> {
    match serde_json::from_slice::<async_graphql::BatchRequest>(body) {
        Ok(async_graphql::BatchRequest::Single(request)) => Ok(request),
        Ok(async_graphql::BatchRequest::Batch(_)) => {
            Err(Unreadable::bad("batched requests are not supported: send one operation per request".into()))
        }
        Err(e) => {
            Err(Unreadable::bad(format!("the body is not a GraphQL request (JSON with a \"query\" string): {e}")))
        }
    }
}

fn rejected_body(e: &BytesRejection) -> Unreadable {
    // The limit itself is not needed here: the message names no number.
    match crate::http::intake::body_rejection(e, 0) {
        greenthread_protocol::error::ApiError::PayloadTooLarge { .. } => Unreadable {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: PAYLOAD_TOO_LARGE,
            message: "the request body is larger than the server accepts".into(),
        },
        other => Unreadable {
            status: other.status(),
            code: BAD_REQUEST,
            message: format!("the request body could not be read: {other}"),
        },
    }
}

fn json(status: StatusCode, response: &async_graphql::Response) -> Response {
    (status, axum::Json(response)).into_response()
}
