//! Accepting connections: HTTP/1.1 and HTTP/2 (with upgrades, for the
//! GraphQL websocket) through hyper, with the limits a public listener
//! needs against slow or greedy clients, and graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

/// How long a client may take to send a request's headers (from the
/// connection's start, or the end of its previous request): a client that
/// trickles its headers (slowloris), sends nothing, or keeps an idle
/// connection open is cut off here.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most headers one request may have.
pub const MAX_HEADERS: usize = 100;
/// Most connections served at once. Each costs a task and its buffers, a
/// few tens of kilobytes; past this, new connections are closed at once,
/// so a flood of idle connections cannot exhaust memory or descriptors.
pub const MAX_CONNECTIONS: usize = 4096;
/// How often an HTTP/2 connection is pinged, and how long a ping may go
/// unanswered before the connection is closed.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// Streams (requests) one HTTP/2 connection may have open at once.
const HTTP2_MAX_STREAMS: u32 = 256;
/// How long in-flight requests may take to finish after a shutdown signal,
/// unless `--drain-timeout` says otherwise. Streams of a few hundred tokens
/// finish well inside it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Whether a server still takes new work: from its shutdown signal on it is
/// draining, and `GET /ready` answers 503 so a load balancer stops sending
/// it requests while those in flight finish.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn drain(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// How a server stops: the readiness it turns off, and how long requests in
/// flight then have to finish.
#[derive(Debug, Clone)]
pub struct Drain {
    pub readiness: Readiness,
    pub timeout: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Self { readiness: Readiness::default(), timeout: SHUTDOWN_GRACE }
    }
}

/// What connections may do.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { header_read_timeout: HEADER_READ_TIMEOUT, max_connections: MAX_CONNECTIONS }
    }
}

/// Serves `router` on `listener` until SIGTERM or Ctrl-C, then stops taking
/// connections and waits up to [`SHUTDOWN_GRACE`] for requests in flight.
///
/// # Errors
/// When the listener fails in a way that is not one client's fault.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    serve_draining(listener, router, Drain::default()).await
}

/// As [`serve`], draining as `drain` says: readiness off first, then no new
/// connections, then up to `drain.timeout` for requests in flight.
///
/// # Errors
/// As [`serve`].
pub async fn serve_draining(listener: tokio::net::TcpListener, router: Router, drain: Drain) -> std::io::Result<()> {
    serve_with(listener, router, ConnectionLimits::default(), drain, shutdown_signal()).await
}

/// As [`serve_draining`], with `limits`, until `signal` completes.
///
/// # Errors
/// As [`serve`].
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    drain: Drain,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_headers(MAX_HEADERS);
    // HTTP/2 websockets use the CONNECT protocol; pings find peers that
    // vanished, and streams per connection are bounded like connections are.
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .keep_alive_interval(Some(HTTP2_KEEP_ALIVE))
        .keep_alive_timeout(HTTP2_KEEP_ALIVE)
        .max_concurrent_streams(HTTP2_MAX_STREAMS);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut signal = std::pin::pin!(signal);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // A client that reset its connection, or a full descriptor
                    // table: wait a little and go on.
                    tracing::debug!(error = %e, "Cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = signal.as_mut() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "Too many connections; closing a new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(
            router.clone().map_request(|req: Request<hyper::body::Incoming>| req.map(axum::body::Body::new)),
        );
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            if tokio::time::timeout(header_read_timeout, version_known(&stream)).await.is_err() {
                tracing::debug!(%peer, "No request within the header timeout; closing");
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::trace!(%peer, error = %e, "Connection ended with an error");
            }
        });
    }
    drain.readiness.drain();
    drop(listener);
    let in_flight = limits.max_connections - slots.available_permits();
    tracing::info!(
        drain_timeout_s = drain.timeout.as_secs_f64(),
        connections = in_flight,
        "Draining: no new connections; finishing requests in flight"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("Drained: every request in flight finished"),
        () = tokio::time::sleep(drain.timeout) => {
            tracing::warn!("Drain timeout over; dropping the remaining requests");
        }
    }
    Ok(())
}

/// Waits until a connection's first bytes tell HTTP/1 from HTTP/2 (whose
/// connection preface is 24 bytes), or it closes. hyper's header timeout
/// starts only after that, so without this a client that connects and sends
/// nothing (or part of the preface) would hold its slot forever.
async fn version_known(stream: &tokio::net::TcpStream) {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut first = [0u8; 24];
    loop {
        match stream.peek(&mut first).await {
            Ok(n) if n == 0 || n >= PREFACE.len() || !PREFACE.starts_with(&first[..n]) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(_) => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "Cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
