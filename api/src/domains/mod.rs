//! Custom domains: a hostname bound to a service of a project. Requests
//! whose `Host` is a verified domain see only that service's models; a
//! domain that is registered but not yet verified answers 404. Ownership is
//! proven with a TXT record `_greenthread-challenge.<hostname>` holding the
//! domain's token. TLS for custom domains is the operator's certificate
//! (in front of GreenThread or on it); ACME is not built yet.

pub mod dns;

use base64::Engine;
use rand::RngCore;

pub use self::dns::{DnsError, HickoryResolver, TxtResolver};

/// The name whose TXT record proves a domain.
pub fn challenge_name(hostname: &str) -> String {
    format!("_greenthread-challenge.{hostname}")
}

/// A fresh verification token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("greenthread-verify={}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A hostname as stored: lowercase, no trailing dot, no port.
///
/// # Errors
/// A message for what a custom domain cannot be: an IP address, a single
/// label, a wildcard, or anything that is not a DNS name.
pub fn parse_hostname(raw: &str) -> Result<String, String> {
    let host = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.len() > 253 {
        return Err("a hostname has 1 to 253 characters".into());
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err("a custom domain is a name, not an IP address".into());
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 {
        return Err("a custom domain has at least two labels (chat.example.com)".into());
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{label:?} is not a DNS label (letters, digits and inner hyphens, up to 63)"));
        }
    }
    Ok(host)
}

/// The hostname a request was sent to, from its `Host` header (port removed).
pub fn request_host(value: &str) -> String {
    let value = value.trim();
    let host = if value.starts_with('[') {
        value.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        value.rsplit_once(':').map_or(value, |(h, _)| h).to_owned()
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_normalized_or_refused() {
        assert_eq!(parse_hostname("Chat.Example.COM.").unwrap(), "chat.example.com");
        for bad in ["localhost", "10.0.0.1", "*.example.com", "a_b.example.com", "-a.example.com", "", "a..b"] {
            assert!(parse_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_host_header_loses_its_port() {
        assert_eq!(request_host("Chat.Example.com:8080"), "chat.example.com");
        assert_eq!(request_host("chat.example.com"), "chat.example.com");
        assert_eq!(request_host("[::1]:8080"), "[::1]");
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(new_token(), new_token());
        assert!(challenge_name("a.example").starts_with("_greenthread-challenge."));
    }
}
