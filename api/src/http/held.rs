//! An answer's body with something riding along: a slot the request holds,
//! given back when the last byte has gone out or the client went away, or
//! a watcher that sees each chunk as it goes (the request metrics). One
//! wrapper for both, so size hints and end-of-stream pass through alike.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// What rides along with a body: told of each chunk, dropped after the body.
pub trait Rider: Send + Unpin + 'static {
    fn saw(&mut self, chunk: &Bytes) {
        let _ = chunk;
    }
}

/// `response`, carrying `rider` until its body is sent or dropped.
pub fn hold_until_sent<R: Rider>(response: Response, rider: R) -> Response {
    response.map(|inner| Body::new(Held { inner, rider }))
}

/// The body is declared first, so it is dropped first: whatever it does on
/// drop (the usage meter noting its counts) is done before the rider's drop.
struct Held<R> {
    inner: Body,
    rider: R,
}

impl<R: Rider> http_body::Body for Held<R> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(chunk) = frame.data_ref()
        {
            this.rider.saw(chunk);
        }
        polled
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

    impl Rider for Arc<()> {}

    #[tokio::test]
    async fn the_rider_lives_until_the_body_is_read() {
        let guard = Arc::new(());
        let response = hold_until_sent("hello".into_response(), guard.clone());
        assert_eq!(Arc::strong_count(&guard), 2, "held while the body is unsent");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap_or_default();
        assert_eq!(&body[..], b"hello");
        assert_eq!(Arc::strong_count(&guard), 1, "given back once sent");
    }
}
