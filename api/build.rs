//! Embeds the web console's assets, which `scripts/build-web.sh` writes to
//! `web/dist` (or `GREENTHREAD_WEB_DIST`). Without them the server still
//! builds, and its console page says how to build the console.

use std::path::PathBuf;

/// The files the console consists of.
const ASSETS: &[&str] = &["index.html", "console.js", "console_bg.wasm", "style.css"];

const PLACEHOLDER: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>GreenThread</title></head>\
<body><h1>GreenThread</h1><p>This build has no web console: run <code>scripts/build-web.sh</code>, then build \
<code>greenthread</code> again.</p><p>The APIs are at <code>/v1</code> and <code>/graphql</code>.</p></body></html>";

fn main() -> std::io::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = std::env::var_os("GREENTHREAD_WEB_DIST").map_or_else(|| manifest.join("../web/dist"), PathBuf::from);
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("web");
    println!("cargo:rerun-if-env-changed=GREENTHREAD_WEB_DIST");
    // A missing path would rerun this script on every build; watch what exists.
    let watched = if dist.exists() { dist.clone() } else { manifest.join("../web") };
    println!("cargo:rerun-if-changed={}", watched.display());
    std::fs::create_dir_all(&out)?;
    let built = ASSETS.iter().all(|a| dist.join(a).is_file());
    for asset in ASSETS {
        let target = out.join(asset);
        if built {
            std::fs::copy(dist.join(asset), &target)?;
        } else {
            std::fs::write(&target, if *asset == "index.html" { PLACEHOLDER } else { "" })?;
        }
    }
    println!("cargo:rustc-env=GREENTHREAD_CONSOLE_BUILT={built}");
    Ok(())
}
