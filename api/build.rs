//! Embeds the web console's assets, which `scripts/build-web.sh` writes to
//! `web/dist` (or `GREENTHREAD_WEB_DIST`). Without them the server still
//! builds, and its console page says how to build the console.
//!
//! Also records what `greenthread --version` reports about the build: the
//! commit (`GREENTHREAD_COMMIT`, else git's `HEAD`, else `unknown`), the
//! target and the SIMD extensions the code was compiled for.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    println!("cargo:rustc-env=GREENTHREAD_COMMIT={}", commit(&manifest));
    println!("cargo:rustc-env=GREENTHREAD_TARGET={}", std::env::var("TARGET").unwrap_or_default());
    println!("cargo:rustc-env=GREENTHREAD_TARGET_SIMD={}", compiled_simd());
    Ok(())
}

/// The commit being built, and the files whose change means another one.
/// (`vergen-gitcl` does this too, through the same git CLI, with a larger
/// dependency tree than these lines for the one value needed here.)
fn commit(manifest: &Path) -> String {
    println!("cargo:rerun-if-env-changed=GREENTHREAD_COMMIT");
    if let Some(commit) = std::env::var("GREENTHREAD_COMMIT").ok().filter(|c| !c.is_empty()) {
        return commit;
    }
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).current_dir(manifest).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]).map(PathBuf::from) else {
        return "unknown".to_string();
    };
    // HEAD moves with a checkout, the branch's ref with a commit (or packed-refs once packed).
    let branch = git(&["symbolic-ref", "-q", "HEAD"]).map(|r| git_dir.join(r));
    for watched in [Some(git_dir.join("HEAD")), branch, Some(git_dir.join("packed-refs"))].into_iter().flatten() {
        if watched.exists() {
            println!("cargo:rerun-if-changed={}", watched.display());
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
}

/// The SIMD extensions every function may use (the target's baseline and
/// `-C target-cpu`/`target-feature`); kernels pick wider ones at run time.
fn compiled_simd() -> String {
    const NAMED: &[&str] = &["sse4.2", "avx", "avx2", "fma", "avx512f", "avx512vnni", "avxvnni", "neon"];
    let enabled = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let enabled: Vec<&str> = enabled.split(',').collect();
    let named: Vec<&str> = NAMED.iter().copied().filter(|f| enabled.contains(f)).collect();
    if named.is_empty() { "baseline".to_string() } else { named.join(",") }
}
