//! The `greenthread` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "greenthread", version, about = "Serve many language models on shared hardware")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the models of a config file over the OpenAI API (all in one process).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// YAML file with a `models:` list (name, artifact, …).
    #[arg(long, env = "GREENTHREAD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the server's state; one server per directory.
    #[arg(long, env = "GREENTHREAD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "GREENTHREAD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Request and engine limits.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Largest request body, in bytes.
    #[arg(long, env = "GREENTHREAD_MAX_REQUEST_BYTES", default_value_t = crate::http::state::Limits::default().max_request_bytes)]
    pub max_request_bytes: usize,
    /// Sequences each model generates at once; more requests wait their turn.
    #[arg(long, env = "GREENTHREAD_MAX_SEQUENCES", default_value_t = greenthread_node_runtime::builtin::DEFAULT_MAX_SEQUENCES)]
    pub max_sequences: usize,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, global = true, env = "GREENTHREAD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
