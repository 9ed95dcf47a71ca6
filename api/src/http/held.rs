//! Keeping something alive exactly as long as an answer's body: a slot a
//! request holds is given back when the last byte has gone out, or when
//! the client goes away.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// `response`, holding `guard` until its body is sent or dropped.
pub fn hold_until_sent<G: Send + Unpin + 'static>(response: Response, guard: G) -> Response {
    response.map(|inner| Body::new(Held { inner, _guard: guard }))
}

struct Held<G> {
    inner: Body,
    _guard: G,
}

impl<G: Unpin> http_body::Body for Held<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::response::IntoResponse;

    use super::*;

    #[tokio::test]
    async fn the_guard_lives_until_the_body_is_read() {
        let guard = Arc::new(());
        let response = hold_until_sent("hello".into_response(), guard.clone());
        assert_eq!(Arc::strong_count(&guard), 2, "held while the body is unsent");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap_or_default();
        assert_eq!(&body[..], b"hello");
        assert_eq!(Arc::strong_count(&guard), 1, "given back once sent");
    }
}
