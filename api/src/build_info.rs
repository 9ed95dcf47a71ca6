//! What `greenthread --version` says: the version, the commit it was built
//! from, and what the build can run on (the CPU kernels this machine gets,
//! whether CUDA is compiled in), so a bug report names the exact build.

use std::sync::LazyLock;

/// `0.1.0 (commit 1a2b3c4d5e6f)`: the one-line `-V`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GREENTHREAD_COMMIT"), ")");

/// The commit this binary was built from (`unknown` outside a git checkout
/// unless `GREENTHREAD_COMMIT` named it).
pub const COMMIT: &str = env!("GREENTHREAD_COMMIT");

/// Whether the GPU build (the CUDA weight tiers and inference) is compiled in.
pub const CUDA: bool = cfg!(feature = "cuda");

/// `--version`: the line above, then one line per property of the build.
pub fn long_version() -> &'static str {
    static LONG: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{VERSION}\ntarget: {} (compiled for SIMD: {})\ncpu kernels, chosen for this CPU at run time: {}\ncuda: {}\nconsole: {}",
            env!("GREENTHREAD_TARGET"),
            env!("GREENTHREAD_TARGET_SIMD"),
            greenthread_kernels::level().name(),
            if CUDA { "compiled in (used when a device answers)" } else { "not compiled in (the cuda feature)" },
            if env!("GREENTHREAD_CONSOLE_BUILT") == "true" { "embedded" } else { "not built (scripts/build-web.sh)" },
        )
    });
    LONG.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_package_version_and_a_commit() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(!COMMIT.is_empty());
        // Built from this repository's checkout, the commit is git's, not the fallback.
        if std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.git")).exists() {
            assert!(COMMIT.len() >= 12 && COMMIT.chars().all(|c| c.is_ascii_hexdigit()), "{COMMIT}");
        }
    }

    #[test]
    fn the_long_version_says_what_the_build_runs_on() {
        let long = long_version();
        for line in ["target: ", "cpu kernels, chosen for this CPU at run time: ", "cuda: ", "console: "] {
            assert!(long.contains(line), "{long}");
        }
        assert_eq!(long.contains("cuda: compiled in"), CUDA, "{long}");
    }
}
