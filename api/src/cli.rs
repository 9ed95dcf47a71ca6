//! The `greenthread` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use greenthread_core::{ByteSize, NodeId, parse_duration};

#[derive(Debug, Parser)]
#[command(
    name = "greenthread",
    version = crate::build_info::VERSION,
    long_version = crate::build_info::long_version(),
    about = "Serve many language models on shared hardware"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the models of a config file over the OpenAI API: gateway and
    /// scheduler, with a node in this process (unless --no-local-node) and
    /// remote nodes (with --cluster-token).
    Serve(ServeArgs),
    /// Run a node of a cluster: its models' weights and engines, driven by
    /// the scheduler at --control-plane.
    Node(NodeArgs),
    /// Run a gateway of a cluster: the OpenAI and Anthropic APIs, GraphQL and
    /// the console from the shared database, with each request's replica
    /// leased from the scheduler at --scheduler and sent straight to its node.
    Gateway(GatewayArgs),
    /// Show what applying a desired-state folder would change. Exit code:
    /// 0 no changes, 2 changes pending, 1 error.
    Plan(GitopsArgs),
    /// Apply a desired-state folder (plan, then apply exactly that plan).
    /// Exit code: 0 applied or nothing to do, 1 error.
    Apply(GitopsArgs),
    /// Print the management API's GraphQL schema (SDL).
    Schema,
    /// Print the Kubernetes CustomResourceDefinitions (YAML), as
    /// `charts/greenthread/crds/` holds them.
    Crd,
}

#[derive(Debug, Args)]
pub struct GitopsArgs {
    /// A desired-state file, or a folder of *.yaml files.
    #[arg(short = 'f', long = "file")]
    pub path: PathBuf,
    /// The server's base URL.
    #[arg(long, env = "GREENTHREAD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An API key with the manage scope (admin to create projects). Never logged.
    #[arg(long, env = "GREENTHREAD_API_KEY", hide_env_values = true)]
    pub api_key: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Desired-state document (a YAML file or a folder of them: projects,
    /// services, models), applied at start to the projects it names.
    #[arg(long, env = "GREENTHREAD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the server's state (the disk tier lives in its `cache/`); one server per directory.
    #[arg(long, env = "GREENTHREAD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "GREENTHREAD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Run no node in this process: models run only on nodes that join (needs --cluster-token).
    #[arg(long, env = "GREENTHREAD_NO_LOCAL_NODE")]
    pub no_local_node: bool,
    /// Secret shared with the nodes; nodes holding it may join. Never logged.
    #[arg(long, env = "GREENTHREAD_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
    /// Database of the management plane: `postgres://…`, or `sqlite://…` [default: SQLite in the data directory].
    #[arg(long, env = "GREENTHREAD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub management: ManagementArgs,
    #[command(flatten)]
    pub tiers: TierArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    #[command(flatten)]
    pub drain: DrainArgs,
}

/// How a server stops on SIGTERM.
#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// After SIGTERM, `GET /ready` answers 503 and no new connection is
    /// taken; requests in flight (streams too) have this long to finish.
    #[arg(long, env = "GREENTHREAD_DRAIN_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub drain_timeout: Duration,
}

/// Running as a scheduler replica on Kubernetes.
#[derive(Debug, Args)]
pub struct KubernetesArgs {
    /// Run as one of several scheduler replicas on Kubernetes: wait for the
    /// Lease, serve while holding it (exit when it is lost, so the pod
    /// restarts as a follower), and reconcile `Model` resources.
    #[arg(long, env = "GREENTHREAD_KUBERNETES")]
    pub kubernetes: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "GREENTHREAD_LEASE_NAME", default_value = "greenthread-scheduler")]
    pub lease_name: String,
    /// This replica's identity in the Lease [default: the pod name, else the host name].
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Only this namespace's `Model` resources [default: every namespace].
    #[arg(long, env = "GREENTHREAD_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Label selector of the node-runtime pods (in the Lease's namespace):
    /// a node whose pod is gone or not ready is taken out at once.
    #[arg(long, env = "GREENTHREAD_NODE_POD_SELECTOR", default_value = "app.kubernetes.io/component=node")]
    pub node_pod_selector: String,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Base URL of the scheduler (`greenthread serve`) to join.
    #[arg(long, env = "GREENTHREAD_CONTROL_PLANE")]
    pub control_plane: String,
    /// Secret shared with the scheduler. Never logged.
    #[arg(long, env = "GREENTHREAD_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: String,
    /// Address to listen on.
    #[arg(long, env = "GREENTHREAD_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// URL the scheduler reaches this node at [default: http://<listen address>].
    #[arg(long, env = "GREENTHREAD_ADVERTISE")]
    pub advertise: Option<String>,
    /// This node's id [default: node-<port>].
    #[arg(long, env = "GREENTHREAD_NODE_ID")]
    pub id: Option<NodeId>,
    /// Directory for the node's disk tier; one node per directory.
    #[arg(long, env = "GREENTHREAD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub drain: DrainArgs,
    #[command(flatten)]
    pub tiers: TierArgs,
    /// Sequences each model generates at once; more requests wait their turn.
    #[arg(long, env = "GREENTHREAD_MAX_SEQUENCES", default_value_t = greenthread_node_runtime::builtin::DEFAULT_MAX_SEQUENCES)]
    pub max_sequences: usize,
    /// Largest request body, in bytes.
    #[arg(long, env = "GREENTHREAD_MAX_REQUEST_BYTES", default_value_t = crate::http::limits::Limits::default().max_request_bytes)]
    pub max_request_bytes: usize,
    /// Folders this node opens local model files from, whoever asks (repeatable)
    /// [default: <data-dir>/artifacts and the models cache].
    #[arg(long = "artifact-dir", env = "GREENTHREAD_ARTIFACT_DIRS", value_delimiter = ':')]
    pub artifact_dirs: Vec<PathBuf>,
}

/// Byte budgets of the weight tiers (bytes, or units: 700MiB, 2GiB, 1.5GB).
#[derive(Debug, Args)]
pub struct TierArgs {
    /// Device memory the awake models may hold together [default: on a CPU node, half the RAM].
    #[arg(long, env = "GREENTHREAD_DEVICE_MEMORY", value_parser = parse_size)]
    pub device_memory: Option<ByteSize>,
    /// Host memory for sleeping models' weights [default: a quarter of the RAM].
    #[arg(long, env = "GREENTHREAD_RAM_CACHE", value_parser = parse_size)]
    pub ram_cache: Option<ByteSize>,
    /// Disk for cached artifacts [default: half the free space of the data directory].
    #[arg(long, env = "GREENTHREAD_DISK_CACHE", value_parser = parse_size)]
    pub disk_cache: Option<ByteSize>,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The scheduler's base URL (on Kubernetes, the leader's Service).
    #[arg(long, env = "GREENTHREAD_SCHEDULER")]
    pub scheduler: String,
    /// The cluster's shared secret, as the scheduler and nodes have it. Never logged.
    #[arg(long, env = "GREENTHREAD_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: String,
    /// The scheduler's database (`postgres://…`). Never logged.
    #[arg(long, env = "GREENTHREAD_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Address to listen on.
    #[arg(long, env = "GREENTHREAD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub management: ManagementArgs,
    /// Largest request body, in bytes.
    #[arg(long, env = "GREENTHREAD_MAX_REQUEST_BYTES", default_value_t = crate::http::limits::Limits::default().max_request_bytes)]
    pub max_request_bytes: usize,
    /// Longest a request waits for its replica (a wake, or a scheduler
    /// leader change) before it gets 503 with Retry-After.
    #[arg(long, env = "GREENTHREAD_WAKE_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub wake_timeout: Duration,
    /// How often the models, projects and domains are re-read from the database.
    #[arg(long, env = "GREENTHREAD_SYNC_EVERY", value_parser = parse_duration, default_value = "5s")]
    pub sync_every: Duration,
    #[command(flatten)]
    pub drain: DrainArgs,
}

/// The management plane's settings, for `serve` and `gateway` alike.
#[derive(Debug, Args)]
pub struct ManagementArgs {
    /// Open mode for a demo: requests without an API key may call every
    /// model until the first key with the inference scope is created.
    #[arg(long, env = "GREENTHREAD_OPEN")]
    pub open: bool,
    /// Directories that artifacts of models created through the API may
    /// come from (repeatable) [default for `serve`: <data-dir>/artifacts and the models cache].
    #[arg(long = "artifact-dir", env = "GREENTHREAD_ARTIFACT_DIRS", value_delimiter = ':')]
    pub artifact_dirs: Vec<PathBuf>,
    /// The window per-key rate limits are counted in; limits are per
    /// minute and scale to it. Shorter windows smooth bursts and make
    /// `Retry-After` shorter.
    #[arg(long, env = "GREENTHREAD_RATE_WINDOW", value_parser = parse_duration, default_value = "60s")]
    pub rate_window: Duration,
    /// How long stored responses of the Responses API are kept
    /// (`GET /v1/responses/{id}`, `previous_response_id`).
    #[arg(long, env = "GREENTHREAD_RESPONSES_RETENTION", value_parser = parse_duration, default_value = "30d")]
    pub responses_retention: Duration,
    /// DNS server that custom domains' TXT records are looked up at [default: the system's].
    #[arg(long, env = "GREENTHREAD_DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,
}

/// Request and engine limits.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Largest request body, in bytes.
    #[arg(long, env = "GREENTHREAD_MAX_REQUEST_BYTES", default_value_t = crate::http::limits::Limits::default().max_request_bytes)]
    pub max_request_bytes: usize,
    /// Sequences each model generates at once; more requests wait their turn.
    #[arg(long, env = "GREENTHREAD_MAX_SEQUENCES", default_value_t = greenthread_node_runtime::builtin::DEFAULT_MAX_SEQUENCES)]
    pub max_sequences: usize,
    /// Longest a request waits for a sleeping model to wake before it gets 503 with Retry-After.
    #[arg(long, env = "GREENTHREAD_WAKE_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub wake_timeout: Duration,
    /// A model keeps the device at least this long after waking, so two hot models do not thrash.
    #[arg(long, env = "GREENTHREAD_MIN_RESIDENCY", value_parser = parse_duration, default_value = "10s")]
    pub min_residency: Duration,
    /// A request that has waited this long may preempt models inside their minimum residency.
    #[arg(long, env = "GREENTHREAD_PREEMPT_AFTER", value_parser = parse_duration, default_value = "5s")]
    pub preempt_after: Duration,
}

fn parse_size(raw: &str) -> Result<ByteSize, String> {
    ByteSize::parse(raw).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, global = true, env = "GREENTHREAD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Export traces (a span per request and per stage: admission, the wait
    /// for the model, generation, forwarding) to this OpenTelemetry
    /// collector over OTLP/HTTP, e.g. `http://127.0.0.1:4318`.
    #[arg(long, global = true, env = "GREENTHREAD_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
