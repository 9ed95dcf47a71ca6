//! The HTTP layer every route stands on: request limits, body intake, the
//! JSON extractor, the headers every answer carries, and the server with
//! its connection limits and graceful shutdown. It names no handler and no service (the router does that).

pub mod access;
pub mod held;
pub mod intake;
pub mod json;
pub mod limits;
mod server;
pub mod shape;
pub mod stamp;

pub use self::server::{
    ConnectionLimits, Drain, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, MAX_HEADERS, Readiness, SHUTDOWN_GRACE, serve,
    serve_draining, serve_with,
};
