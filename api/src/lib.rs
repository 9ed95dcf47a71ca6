//! GreenThread's gateway: the OpenAI-compatible HTTP API in front of the
//! models, the config file, and the `greenthread serve` entry point.

pub mod cli;
pub mod config;
pub mod http;
pub mod openai;
pub mod registry;
mod serve;

pub use serve::{ServeError, run_serve};
