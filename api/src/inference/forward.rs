//! Forwarding a request to the node that serves its model. A node that
//! cannot be reached, or answers that the model is not awake there, before
//! any of the response has gone out is retried elsewhere; a stream cut
//! after it began ends with an error event the SDKs raise.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;

use super::access::Hold;
use crate::cluster::token::ClusterToken;
use greenthread_protocol::error::ApiError;

/// Why a forward did not produce a response: nothing went out, so another
/// node may be tried.
pub struct Retry(pub String);

/// POSTs `body` to `url` on a node, under the request's id, and turns its
/// answer into this response.
/// `hold` (the replica's lease) lives until the response body has been sent.
///
/// # Errors
/// [`Retry`] when the node is unreachable or does not have the
/// model awake; the node's own error responses are passed through.
pub async fn forward(
    client: &reqwest::Client,
    token: &ClusterToken,
    url: &str,
    body: Bytes,
    hold: Option<Hold>,
    request_id: Option<&str>,
) -> Result<Response, Retry> {
    let mut request =
        client.post(url).header(header::AUTHORIZATION, token.bearer()).header(header::CONTENT_TYPE, "application/json");
    // The node answers under the same id, and passes it on to its engine.
    if let Some(id) = request_id {
        request = request.header(crate::http::stamp::REQUEST_ID, id);
    }
    let answer = request.body(body).send().await.map_err(|e| Retry(format!("{url}: {e}")))?;
    let status = answer.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return Err(Retry(format!("{url}: the model is not awake there")));
    }
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let units = answer.headers().get(crate::usage::UNITS_HEADER).cloned();
    // Events and audio go on as they come; anything else is read whole.
    let events = content_type.as_ref().is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let streaming = events || content_type.as_ref().is_some_and(|v| v.as_bytes().starts_with(b"audio/"));
    let mut response = if streaming && status.is_success() {
        let mut chunks = answer.bytes_stream();
        // Until the first chunk arrives nothing has gone out, so a node that
        // dies now is retried like one that could not be reached.
        let first = match chunks.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => return Err(Retry(format!("{url}: {e}"))),
            None => return Err(Retry(format!("{url}: empty stream"))),
        };
        let stream = async_stream::stream! {
            let _hold = hold;
            yield Ok::<Bytes, std::io::Error>(first);
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(c) => yield Ok(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "The node's stream broke off");
                        let error = ApiError::Unavailable("the node serving this request stopped mid-stream".into());
                        // Events can say so; audio can only break off too.
                        if events {
                            yield Ok(Bytes::from(format!("data: {}\n\n", error.body())));
                        } else {
                            yield Err(std::io::Error::other(error.to_string()));
                        }
                        break;
                    }
                }
            }
        };
        Response::new(Body::from_stream(stream))
    } else {
        let bytes = answer.bytes().await.map_err(|e| Retry(format!("{url}: {e}")))?;
        drop(hold);
        Response::new(Body::from(bytes))
    };
    *response.status_mut() = status;
    if let Some(units) = units {
        response.headers_mut().insert(crate::usage::UNITS_HEADER, units);
    }
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    } else {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(response)
}
