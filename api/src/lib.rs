//! GreenThread's gateway: the OpenAI-compatible HTTP API in front of the
//! models, the config file, status and metrics, and the `greenthread serve`
//! entry point that runs gateway, scheduler and node in one process.

pub mod anthropic;
pub mod build_info;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod domains;
pub mod engine_errors;
pub mod gate;
pub mod gateway;
pub mod gitops;
pub mod graphql;
pub mod http;
pub mod inference;
pub mod kube_operator;
pub mod kube_store;
pub mod manage;
pub mod metrics;
pub mod node_server;
pub mod openai;
pub mod router;
pub mod scheduler_link;
mod serve;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod usage;

// The fuzz targets of the API's inputs: the file is compiled only in tests.
mod fuzz;

pub use serve::{
    Budgets, LOCAL_NODE, ManagedOptions, Platform, SYNC_EVERY, ServeError, Started, run_node, run_serve, start_managed,
    start_platform,
};
