//! ONNX Runtime, its library loaded once per process at run time:
//! `GREENTHREAD_ONNXRUNTIME` (a path to `libonnxruntime.so`), else ort's own
//! `ORT_DYLIB_PATH`, else the system's library.

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;

const LIBRARY_ENV: &str = "GREENTHREAD_ONNXRUNTIME";
const SYSTEM_LIBRARY: &str = "libonnxruntime.so";

static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

fn environment() -> Result<&'static Environment, String> {
    RUNTIME
        .get_or_init(|| {
            let path = std::env::var_os(LIBRARY_ENV)
                .or_else(|| std::env::var_os("ORT_DYLIB_PATH"))
                .map_or_else(|| PathBuf::from(SYSTEM_LIBRARY), PathBuf::from);
            let advice = format!(
                "text to speech needs ONNX Runtime's library: set {LIBRARY_ENV} to libonnxruntime.so \
                 (scripts/onnxruntime.sh fetches it from the onnxruntime wheel)"
            );
            let builder =
                ort::init_from(&path).map_err(|e| format!("cannot load {}: {e}; {advice}", path.display()))?;
            builder.with_name("greenthread").build().map_err(|e| format!("ONNX Runtime could not start: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Loads ONNX Runtime once; later calls return the first outcome.
///
/// # Errors
/// A message naming the library that could not be loaded, and how to supply one.
pub fn ready() -> Result<(), String> {
    environment().map(drop)
}

/// A session of the model in `bytes`, running on `threads` threads.
///
/// # Errors
/// When ONNX Runtime is missing or refuses the model.
pub fn session(bytes: &[u8], threads: usize) -> Result<Session, String> {
    let environment = environment()?;
    let fail = |e: ort::Error| format!("ONNX Runtime refused the model: {e}");
    Session::builder(environment)
        .map_err(fail)?
        .with_intra_threads(threads)
        .map_err(|e| fail(e.into()))?
        .with_inter_threads(1)
        .map_err(|e| fail(e.into()))?
        .commit_from_memory(bytes)
        .map_err(fail)
}
