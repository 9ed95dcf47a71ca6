//! The management plane end to end: GraphQL over loopback HTTP against a
//! real server on a real database — each database test runs on SQLite and
//! on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions;
mod api;
mod crash;
mod crud;
mod domains;
mod gateway;
mod gitops;
pub mod harness;
mod isolation;
mod keys;
mod kubernetes;
mod ratelimit;
mod responses;
mod security;
mod store;
mod usage;
