//! The web console (`web/`), embedded at build time and served at `/ui/`;
//! `/` leads there. Paths the console does not know are its own client-side
//! routes and get its page.

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::state::AppState;

macro_rules! asset {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/web/", $name)).as_slice()
    };
}

const INDEX: &[u8] = asset!("index.html");
const SCRIPT: &[u8] = asset!("console.js");
const WASM: &[u8] = asset!("console_bg.wasm");
const STYLE: &[u8] = asset!("style.css");

/// Whether this binary carries the built console (else a page saying how to build it).
pub const BUILT: bool = matches!(env!("GREENTHREAD_CONSOLE_BUILT").as_bytes(), b"true");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(page))
        .route("/ui/{*path}", get(asset))
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX).into_response()
}

async fn asset(Path(path): Path<String>) -> Response {
    let (kind, body) = match path.as_str() {
        // Browsers run module scripts only with a JavaScript type.
        "console.js" => ("text/javascript", SCRIPT),
        "console_bg.wasm" => ("application/wasm", WASM),
        "style.css" => ("text/css", STYLE),
        _ => return page().await,
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
