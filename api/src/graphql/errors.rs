//! GraphQL errors with a machine-readable `extensions.code`.

use async_graphql::{Context, ErrorExtensions};

use crate::manage::{OpError, UserError};
use greenthread_store::auth::Principal;

pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
pub const FORBIDDEN: &str = "FORBIDDEN";
pub const NOT_FOUND: &str = "NOT_FOUND";
pub const CONFLICT: &str = "CONFLICT";
pub const RATE_LIMITED: &str = "RATE_LIMITED";
pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
/// The HTTP request is not a GraphQL request this server runs: not JSON,
/// batched, nested too deep, too many mutation fields.
pub const BAD_REQUEST: &str = "BAD_REQUEST";
pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
/// The server cannot do this (it runs no scheduler, say); another may.
pub const UNAVAILABLE: &str = "UNAVAILABLE";
pub const INTERNAL: &str = "INTERNAL_SERVER_ERROR";

/// An error carrying `extensions.code`.
pub fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

/// The scheduler's failure to answer: `UNAVAILABLE` while a cluster has no
/// leader (a gateway's case, for seconds), else internal.
pub fn scheduler_error(e: crate::scheduler_link::LinkError) -> async_graphql::Error {
    match e {
        crate::scheduler_link::LinkError::NoLeader(_) => {
            coded(UNAVAILABLE, "the scheduler is changing leaders; retry in a few seconds")
        }
        other => internal(other),
    }
}

/// The request's credential, as the handler found it.
pub struct Auth(pub Result<Principal, String>);

/// The caller, or UNAUTHENTICATED.
pub fn principal<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Principal> {
    match ctx.data_opt::<Auth>() {
        Some(Auth(Ok(p))) => Ok(p),
        Some(Auth(Err(why))) => Err(coded(UNAUTHENTICATED, why.clone())),
        None => Err(coded(UNAUTHENTICATED, "no API key given: send `Authorization: Bearer <key>`")),
    }
}

/// An internal failure: logged in full, answered without details.
pub fn internal(e: impl std::fmt::Display) -> async_graphql::Error {
    tracing::error!(error = %e, "GraphQL request failed");
    coded(INTERNAL, "internal error; the server log has the details")
}

/// An operation's failure: user errors for the payload, the rest as GraphQL errors.
pub fn split(e: OpError) -> async_graphql::Result<Vec<UserError>> {
    match e {
        OpError::User(errors) => Ok(errors),
        OpError::Forbidden(m) => Err(coded(FORBIDDEN, m)),
        OpError::NotFound(m) => Err(coded(NOT_FOUND, m)),
        OpError::Conflict(m) => Err(coded(CONFLICT, m)),
        OpError::Store(e) => Err(internal(e)),
    }
}
