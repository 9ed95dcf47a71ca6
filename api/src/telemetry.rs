//! Logs and traces: the log lines on stderr (text or JSON), and — with
//! `--otlp-endpoint` — every `tracing` span (a request, its admission, its
//! wait for the model, its generation) exported as an OpenTelemetry span
//! over OTLP/HTTP to a collector (Jaeger, Tempo, an OpenTelemetry Collector).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::cli::LogFormat;

/// What must be flushed before the process exits.
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.traces
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: traces could not all be exported: {e}");
        }
    }
}

/// The OTLP/HTTP traces URL of a collector given as `http://host:4318`:
/// its `/v1/traces`, unless the URL already names a path.
pub fn traces_url(endpoint: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("--otlp-endpoint {endpoint:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("--otlp-endpoint {endpoint:?}: use an http:// or https:// URL (OTLP over HTTP)"));
    }
    Ok(match url.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_owned(),
    })
}

/// Installs the global subscriber: the log lines, filtered by `RUST_LOG`
/// (INFO by default), and span export to `otlp_endpoint` when given.
///
/// # Errors
/// When the endpoint is not an HTTP URL or the exporter cannot be built.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<Telemetry, String> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let Some(endpoint) = otlp_endpoint else {
        tracing_subscriber::registry().with(lines.with_filter(filter())).init();
        return Ok(Telemetry { traces: None });
    };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url(endpoint)?)
        .build()
        .map_err(|e| format!("cannot export traces to {endpoint}: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("greenthread").build())
        .build();
    let spans = tracing_opentelemetry::layer().with_tracer(provider.tracer("greenthread"));
    tracing_subscriber::registry().with(lines.with_filter(filter())).with(spans.with_filter(filter())).init();
    Ok(Telemetry { traces: Some(provider) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collector_address_gets_the_traces_path_and_a_full_url_is_kept() {
        assert_eq!(traces_url("http://127.0.0.1:4318").as_deref(), Ok("http://127.0.0.1:4318/v1/traces"));
        assert_eq!(traces_url("http://collector:4318/").as_deref(), Ok("http://collector:4318/v1/traces"));
        assert_eq!(
            traces_url("https://otel.example/otlp/v1/traces").as_deref(),
            Ok("https://otel.example/otlp/v1/traces")
        );
        assert!(traces_url("grpc://collector:4317").is_err());
        assert!(traces_url("collector:4318").is_err());
    }
}
