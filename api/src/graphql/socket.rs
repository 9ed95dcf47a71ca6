//! `GET /graphql/ws`: operations and subscriptions over `graphql-transport-ws`
//! (or the older `graphql-ws`). The key given in `connection_init` (or the
//! upgrade request's `Authorization`) is checked again for every operation,
//! which passes the same guard as over HTTP, and every
//! [`VERIFIED_FOR`](greenthread_store::auth::VERIFIED_FOR) while the socket is open: once
//! the key is revoked or expires, the socket closes with 4403 and its
//! subscriptions end.

use std::any::TypeId;
use std::sync::{Arc, OnceLock};

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocket, WebSocketProtocols as Protocols, WsMessage};
use async_graphql::{Data, Executor, Request, Response};
use axum::extract::ws::{CloseFrame, Message};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};

use super::errors::{Auth, UNAUTHENTICATED, coded};
use super::{GraphqlState, authenticate, types};
use crate::gate::bearer;
use greenthread_store::auth::{AuthError, VERIFIED_FOR};

/// The close code `graphql-transport-ws` gives a connection that is not allowed.
const FORBIDDEN_CLOSE: u16 = 4403;
/// The close code `graphql-transport-ws` gives a connection that sent no
/// `connection_init` in time.
const INIT_TIMEOUT_CLOSE: u16 = 4408;
/// How long a socket may stay open without a successful `connection_init`.
const INIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Most GraphQL websockets open at once. A socket no longer holds one of
/// the server's connection slots once upgraded, so it has its own bound;
/// the console opens one per tab.
pub const MAX_SOCKETS: usize = 1024;

/// The socket's credential, kept in its session data.
struct SocketKey(String);

/// Runs each operation of a socket through the guard with the socket's key,
/// checked afresh.
#[derive(Clone)]
struct SocketExecutor(GraphqlState);

impl Executor for SocketExecutor {
    async fn execute(&self, request: Request) -> Response {
        // Operations on a socket arrive through `execute_stream`; a request
        // without a socket's session has no key.
        let auth = authenticate(&self.0, None).await;
        match self.0.run(auth, request).await {
            Ok(response) => response,
            Err(refusal) => Response::from_errors(vec![refusal.error()]),
        }
    }

    fn execute_stream(&self, mut request: Request, session: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        let state = self.0.clone();
        futures_util::stream::once(async move {
            let key = session
                .as_ref()
                .and_then(|d| d.get(&TypeId::of::<SocketKey>()))
                .and_then(|k| k.downcast_ref::<SocketKey>())
                .map(|k| k.0.clone());
            let auth = authenticate(&state, key.as_deref()).await;
            if let Auth(Err(why)) = &auth {
                // The socket's key no longer holds (revoked, expired): nothing runs.
                let error = coded(UNAUTHENTICATED, why.clone()).into_server_error(Default::default());
                return futures_util::stream::once(async move { Response::from_errors(vec![error]) }).boxed();
            }
            if let Err(refusal) = state.admit(&auth, &mut request) {
                return futures_util::stream::once(async move { Response::from_errors(vec![refusal.error()]) }).boxed();
            }
            let request = request.data(auth).data(types::StatusOnce::default());
            state.schema.execute_stream_with_session_data(request, session.unwrap_or_default())
        })
        .flatten()
        .boxed()
    }
}

/// The subprotocol the client offers first among those served.
fn offered_protocol(headers: &HeaderMap) -> Option<Protocols> {
    let offered = headers.get(header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    offered.split(',').find_map(|p| p.trim().parse().ok())
}

/// `GET /graphql/ws`.
pub async fn websocket(
    State(state): State<GraphqlState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> axum::response::Response {
    let Some(protocol) = offered_protocol(&headers) else {
        return (StatusCode::BAD_REQUEST, "offer the graphql-transport-ws (or graphql-ws) subprotocol").into_response();
    };
    let Ok(slot) = state.sockets.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many GraphQL websockets are open; retry later").into_response();
    };
    let from_header = bearer(&headers).map(str::to_owned);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(state.max_message_bytes)
        .on_upgrade(move |socket| async move {
            serve(state, socket, protocol, from_header).await;
            drop(slot);
        })
        .into_response()
}

async fn serve(
    state: GraphqlState,
    socket: axum::extract::ws::WebSocket,
    protocol: Protocols,
    from_header: Option<String>,
) {
    let (mut sink, stream) = socket.split();
    let input = stream.take_while(|m| futures_util::future::ready(m.is_ok())).filter_map(|m| {
        futures_util::future::ready(match m {
            Ok(Message::Text(text)) => Some(axum::body::Bytes::from(text)),
            Ok(Message::Binary(bytes)) => Some(bytes),
            _ => None,
        })
    });
    // Set once `connection_init` is accepted; watched from then on.
    let key: Arc<OnceLock<String>> = Arc::default();
    let init_state = state.clone();
    let init_key = key.clone();
    let output =
        WebSocket::new(SocketExecutor(state.clone()), input, protocol).on_connection_init(move |payload| async move {
            let from_payload = payload
                .get("authorization")
                .or_else(|| payload.get("Authorization"))
                .and_then(|v| v.as_str())
                .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_owned());
            let token = from_payload.or(from_header);
            if let Auth(Err(why)) = authenticate(&init_state, token.as_deref()).await {
                return Err(coded(UNAUTHENTICATED, why));
            }
            let mut data = Data::default();
            if let Some(token) = token {
                let _ = init_key.set(token.clone());
                data.insert(SocketKey(token));
            }
            Ok(data)
        });
    futures_util::pin_mut!(output);
    let mut recheck = tokio::time::interval(VERIFIED_FOR);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let init_by = tokio::time::Instant::now() + INIT_TIMEOUT;
    loop {
        tokio::select! {
            message = output.next() => {
                let message = match message {
                    Some(WsMessage::Text(text)) => Message::Text(text.into()),
                    Some(WsMessage::Close(code, reason)) => Message::Close(Some(CloseFrame { code, reason: reason.into() })),
                    None => break,
                };
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            _ = recheck.tick() => {
                let Some(token) = key.get() else {
                    if tokio::time::Instant::now() >= init_by {
                        let close = CloseFrame { code: INIT_TIMEOUT_CLOSE, reason: "Connection initialisation timeout".into() };
                        let _ = sink.send(Message::Close(Some(close))).await;
                        break;
                    }
                    continue;
                };
                if let Err(why @ (AuthError::Invalid | AuthError::Revoked | AuthError::Expired)) =
                    state.management.keys.still_valid(token).await
                {
                    tracing::info!(reason = %why, "Closing a GraphQL websocket whose key no longer holds");
                    let close = CloseFrame { code: FORBIDDEN_CLOSE, reason: format!("Forbidden: {why}").into() };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    break;
                }
            }
        }
    }
}
