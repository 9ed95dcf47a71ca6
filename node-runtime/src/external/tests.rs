//! Supervision of real processes: Python's own HTTP server as a stand-in
//! engine that is ready when `/` answers, and shells that fail.

use std::sync::mpsc;

use greenthread_core::{ArtifactUri, ModelSpec};
use serde_json::json;

use super::*;

fn spec(engine: serde_json::Value) -> ModelSpec {
    let mut spec =
        ModelSpec::new(ModelName::parse("ext").unwrap_or_else(|e| panic!("{e}")), ArtifactUri::File("/m.gguf".into()));
    spec.engine = serde_json::from_value(engine).unwrap_or_else(|e| panic!("{e}"));
    spec
}

fn http_server() -> ModelSpec {
    spec(json!({"kind": "command", "health": "/", "ready_timeout": "20s",
                "argv": ["/usr/bin/env", "python3", "-u", "-m", "http.server", "--bind", "{host}", "{port}"]}))
}

fn model(spec: &ModelSpec, on_exit: Option<ExitReporter>) -> ExternalModel {
    let dir = std::env::temp_dir();
    ExternalModel::new(spec, dir, on_exit, None).unwrap_or_else(|e| panic!("{e}"))
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"))
}

#[test]
fn it_wakes_ready_serves_and_sleeps_by_stopping_without_a_gpu() {
    let m = model(&http_server(), None);
    assert!(!m.is_awake() && m.endpoint().is_none());
    m.wake(WeightSource::File(std::path::Path::new("/unused"))).unwrap_or_else(|e| panic!("{e}"));
    assert!(m.is_awake());
    let endpoint = m.endpoint().unwrap_or_else(|| panic!("an awake engine has an endpoint"));
    let addr: SocketAddr = endpoint.base.trim_start_matches("http://").parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(probe::status(addr, "GET", "/", Duration::from_secs(5)).ok(), Some(200));
    assert!(m.device_bytes() > 0, "its resident memory counts on a CPU node");
    let pid = m.pid().unwrap_or_else(|| panic!("running"));
    m.sleep().unwrap_or_else(|e| panic!("{e}"));
    assert!(!m.is_awake() && m.pid().is_none() && m.device_bytes() == 0);
    assert!(!alive(pid), "without a CUDA checkpoint, sleep stops the process");
    m.wake(WeightSource::File(std::path::Path::new("/unused"))).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(m.pid(), Some(pid), "waking starts it again");
    assert!(m.logs(50).iter().any(|l| l.contains("greenthread: starting")), "{:?}", m.logs(50));
}

#[test]
fn an_engine_that_never_gets_ready_fails_with_its_last_words() {
    let never = spec(json!({"kind": "command", "ready_timeout": "1s",
        "argv": ["/bin/sh", "-c", "echo loading weights for {host}:{port}; exec sleep 60"]}));
    let m = model(&never, None);
    let started = Instant::now();
    let err = m.wake(WeightSource::File(std::path::Path::new("/unused"))).err().map(|e| e.to_string());
    let err = err.unwrap_or_else(|| panic!("it cannot be ready"));
    assert!(err.contains("not ready within") && err.contains("loading weights"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(m.pid().is_none() && !m.is_awake());
}

#[test]
fn an_engine_that_exits_while_starting_says_how() {
    let broken = spec(json!({"kind": "command",
        "argv": ["/bin/sh", "-c", "echo 'error: no such model {host} {port}' >&2; exit 7"]}));
    let err = model(&broken, None).wake(WeightSource::File(std::path::Path::new("/unused"))).err();
    let err = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("exit status 7") && err.contains("no such model"), "{err}");
}

#[test]
fn a_crash_is_reported_and_the_restart_waits_a_backoff() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let report: ExitReporter = Arc::new(move |name, reason| {
        let _ = lock(&tx).send((name.to_string(), reason));
    });
    let m = model(&http_server(), Some(report));
    m.wake(WeightSource::File(std::path::Path::new("/unused"))).unwrap_or_else(|e| panic!("{e}"));
    let pid = m.pid().unwrap_or_else(|| panic!("running"));
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on the engine this test started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    let (name, reason) = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|e| panic!("no report: {e}"));
    assert_eq!(name, "ext");
    assert!(reason.contains("signal 9"), "{reason}");
    assert!(!m.is_awake() && m.endpoint().is_none());
    let restarted = Instant::now();
    m.wake(WeightSource::File(std::path::Path::new("/unused"))).unwrap_or_else(|e| panic!("{e}"));
    assert!(restarted.elapsed() >= Duration::from_millis(400), "the restart waited its backoff");
    assert!(m.is_awake());
}

#[test]
fn backoff_doubles_and_is_bounded() {
    let now = Instant::now();
    let waits: Vec<Duration> = (1..=10).map(|count| Crashes { count, last: Some(now) }.backoff()).collect();
    assert!(waits[0] <= Duration::from_millis(500) && waits[0] > Duration::from_millis(400));
    assert!(waits[1] > waits[0] && waits[9] <= MAX_BACKOFF);
    assert_eq!(Crashes::default().backoff(), Duration::ZERO);
}

/// A stand-in with vLLM's command line and its development-mode sleep
/// endpoints: it prints what it was started with and what it was asked.
const VLLM_STAND_IN: &str = r#"#!/usr/bin/env python3
import http.server, os, sys
args = sys.argv[1:]
print("argv", " ".join(args), "dev-mode", os.environ.get("VLLM_SERVER_DEV_MODE"), flush=True)
host, port = args[args.index("--host") + 1], int(args[args.index("--port") + 1])
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        self.answer(200 if self.path == "/health" else 404)
    def do_POST(self):
        print("POST", self.path, flush=True)
        self.answer(200 if self.path in ("/sleep?level=1", "/wake_up") else 404)
http.server.HTTPServer((host, port), Handler).serve_forever()
"#;

#[test]
fn vllms_own_sleep_keeps_the_process_and_calls_its_endpoints() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let script = dir.path().join("vllm");
    std::fs::write(&script, VLLM_STAND_IN).unwrap_or_else(|e| panic!("{e}"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    }
    let vllm = spec(json!({"kind": "vllm", "binary": script, "sleep": "engine", "ready_timeout": "20s"}));
    assert_eq!(vllm.engine.validate(), Ok(()));
    let m = ExternalModel::new(&vllm, PathBuf::from("/models/qwen"), None, None).unwrap_or_else(|e| panic!("{e}"));
    m.wake(WeightSource::File(std::path::Path::new(""))).unwrap_or_else(|e| panic!("{e}"));
    let pid = m.pid().unwrap_or_else(|| panic!("running"));
    let started = m.logs(10).into_iter().find(|l| l.starts_with("argv ")).unwrap_or_default();
    assert!(started.starts_with("argv serve /models/qwen --host 127.0.0.1 --port "), "{started}");
    assert!(started.contains("--served-model-name ext --enable-sleep-mode dev-mode 1"), "{started}");
    m.sleep().unwrap_or_else(|e| panic!("{e}"));
    assert!(!m.is_awake() && m.endpoint().is_none() && m.device_bytes() == 0);
    assert_eq!(m.pid(), Some(pid), "the engine's own sleep keeps its process");
    m.wake(WeightSource::File(std::path::Path::new(""))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.pid(), Some(pid));
    std::thread::sleep(Duration::from_millis(100));
    let asked: Vec<String> = m.logs(10).into_iter().filter(|l| l.starts_with("POST")).collect();
    assert_eq!(asked, ["POST /sleep?level=1", "POST /wake_up"]);
}

#[test]
fn a_llama_server_with_declared_memory_gets_the_context_that_fits_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("tiny.gguf");
    crate::fixtures::tiny_model::TinyModel::qwen2().write(&path).unwrap_or_else(|e| panic!("{e}"));
    let declared = |memory: &str, args: serde_json::Value| {
        spec(json!({"kind": "llama-server", "binary": "/opt/llama-server", "device_memory": memory, "args": args}))
    };
    let fitted =
        ExternalModel::new(&declared("1GiB", json!([])), path.clone(), None, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fitted.inner.launch.argv[fitted.inner.launch.argv.len() - 2..], ["-c", "512"], "its trained context");
    let own = ExternalModel::new(&declared("1GiB", json!(["-c", "128"])), path.clone(), None, None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(own.inner.launch.argv.iter().filter(|a| *a == "-c").count(), 1, "a context of its own is kept");
    let err = ExternalModel::new(&declared("1KiB", json!([])), path, None, None).err().map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("does not hold")));
}
