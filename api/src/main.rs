//! The `greenthread` binary: parse arguments, set up logging, run.

use clap::Parser;
use greenthread_api::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Crd) {
        return match greenthread_kube::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write the CRDs: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let telemetry = match greenthread_api::telemetry::init(cli.log.log_format, cli.log.otlp_endpoint.as_deref()) {
        Ok(t) => t,
        Err(message) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = run(cli);
    telemetry.shutdown();
    code
}

fn run(cli: Cli) -> std::process::ExitCode {
    if let Err(message) = check_cpu() {
        eprintln!("error: {message}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => greenthread_api::run_serve(args).await.map_err(Stopped::from),
            Command::Node(args) => greenthread_api::run_node(args).await.map_err(Stopped::from),
            Command::Gateway(args) => greenthread_api::gateway::run_gateway(args).await.map_err(Stopped::from),
            Command::Plan(args) => Err(Stopped::from(greenthread_api::gitops::run_plan(args).await)),
            Command::Apply(args) => Err(Stopped::from(greenthread_api::gitops::run_apply(args).await)),
            Command::Schema => {
                print!("{}", greenthread_api::graphql::sdl());
                Ok(())
            }
            Command::Crd => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(Stopped::Gitops(exit)) => std::process::ExitCode::from(exit as u8),
        Err(Stopped::Serve(e)) => {
            tracing::error!(error = %e, "greenthread stopped");
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How a command ended other than cleanly.
enum Stopped {
    Serve(greenthread_api::ServeError),
    /// A plan or apply, with its exit code (which may be a success).
    Gitops(greenthread_api::gitops::GitopsExit),
}

impl From<greenthread_api::ServeError> for Stopped {
    fn from(e: greenthread_api::ServeError) -> Self {
        Self::Serve(e)
    }
}

impl From<greenthread_api::gitops::GitopsExit> for Stopped {
    fn from(e: greenthread_api::gitops::GitopsExit) -> Self {
        Self::Gitops(e)
    }
}

/// x86-64 builds target x86-64-v3 (see `.cargo/config.toml`); say so plainly
/// on an older CPU instead of dying on an illegal instruction mid-request.
fn check_cpu() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
        return Err("this build of greenthread needs an x86-64 CPU with AVX2 and FMA (x86-64-v3)".into());
    }
    Ok(())
}
