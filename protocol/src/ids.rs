//! Response ids, tool-call ids and `created` timestamps, as the OpenAI API writes them.

/// A response id: `prefix` and 24 random alphanumerics.
pub fn response_id(prefix: &str) -> String {
    format!("{prefix}-{}", random_suffix())
}

/// 24 random alphanumerics, the unique part of response and tool-call ids.
pub fn random_suffix() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng().sample_iter(Alphanumeric).take(24).map(char::from).collect()
}

/// Seconds since the Unix epoch, for `created` fields.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Identifies the build in `system_fingerprint`.
pub const SYSTEM_FINGERPRINT: &str = concat!("greenthread-", env!("CARGO_PKG_VERSION"));
