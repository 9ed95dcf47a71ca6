//! Failure text as clients may see it. A model's failure reason comes from
//! deep inside a node (file systems, object stores, the engine) and is
//! logged whole where it happens; what is kept for `/status`, GraphQL and
//! API errors holds no internal paths, no credentials or signed query
//! strings in URIs, and no backtraces.

/// `reason` without what only the server's operator should see: its first
/// line only (backtraces and dumps follow on later lines), absolute paths
/// cut to their last component, and URIs without user info or query.
#[must_use]
pub fn public_reason(reason: &str) -> String {
    let first = reason.lines().next().unwrap_or_default();
    let mut out = String::with_capacity(first.len());
    let mut word = String::new();
    for c in first.chars() {
        if c.is_whitespace() {
            out.push_str(&redact_word(&word));
            word.clear();
            out.push(c);
        } else {
            word.push(c);
        }
    }
    out.push_str(&redact_word(&word));
    out
}

/// One whitespace-free piece of text, with any URI or absolute path in it cut.
fn redact_word(word: &str) -> String {
    // Quotes, brackets and a trailing colon or comma are kept around what is cut.
    let start = word.find(|c: char| !"\"'`([{<".contains(c)).unwrap_or(word.len());
    let Some(end) = word[start..]
        .char_indices()
        .rev()
        .find(|(_, c)| !"\"'`)]}>:,;.".contains(*c))
        .map(|(i, c)| start + i + c.len_utf8())
    else {
        return word.to_owned();
    };
    let (head, core, tail) = (&word[..start], &word[start..end], &word[end..]);
    let cut = if let Some((scheme, rest)) = core.split_once("://") {
        uri(scheme, rest)
    } else if core.starts_with('/') || core.starts_with("~/") {
        last_component(core)
    } else {
        return word.to_owned();
    };
    format!("{head}{cut}{tail}")
}

fn uri(scheme: &str, rest: &str) -> String {
    if scheme.eq_ignore_ascii_case("file") {
        return format!("file://{}", last_component(rest));
    }
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    // Everything up to the last `@` may be user info (a password may hold `/`).
    let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    format!("{scheme}://{rest}")
}

/// `…/name` for a path with directories, the name alone otherwise.
fn last_component(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => format!("…/{name}"),
        _ => "…".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn paths_are_cut_to_their_file_name() {
        assert_eq!(
            public_reason("artifact file:///home/ops/models/qwen.gguf: No such file or directory (os error 2)"),
            "artifact file://…/qwen.gguf: No such file or directory (os error 2)"
        );
        assert_eq!(
            public_reason("cannot open \"/var/lib/greenthread/cache/m-1a2b.gguf\": permission denied"),
            "cannot open \"…/m-1a2b.gguf\": permission denied"
        );
    }

    #[test]
    fn credentials_and_signatures_leave_uris() {
        let reason = "artifact s3://AKIA123:s3cr3t@bucket/models/m.gguf: Generic S3 error: https://bucket.s3.amazonaws.com/m.gguf?X-Amz-Signature=abc denied";
        let public = public_reason(reason);
        assert!(!public.contains("s3cr3t") && !public.contains("AKIA") && !public.contains("Signature"), "{public}");
        assert!(public.contains("s3://bucket/models/m.gguf:"), "{public}");
        assert!(public.contains("https://bucket.s3.amazonaws.com/m.gguf"), "{public}");
    }

    #[test]
    fn backtraces_are_dropped() {
        let reason = "engine panicked: index out of bounds\nstack backtrace:\n   0: std::panicking\n   1: /rustc/abc/library/core/src/panicking.rs:69";
        assert_eq!(public_reason(reason), "engine panicked: index out of bounds");
    }

    #[test]
    fn plain_text_is_untouched() {
        let reason = "model m needs 3.2 GB of device memory, more than any node's budget (2.0 GB)";
        assert_eq!(public_reason(reason), reason);
    }

    proptest! {
        #[test]
        fn no_secret_in_user_info_survives(user in "[A-Za-z0-9]{1,12}", secret in "[A-Za-z0-9]{6,20}", path in "[a-z/]{0,20}") {
            let reason = format!("fetch gs://{user}:{secret}@bucket/{path} failed");
            let public = public_reason(&reason);
            prop_assert!(!public.contains(&format!(":{secret}@")), "{}", public);
            prop_assert!(!public.contains('@'), "{}", public);
        }

        #[test]
        fn redaction_never_panics_and_keeps_one_line(text in "\\PC{0,80}(\n\\PC{0,40})?") {
            prop_assert!(!public_reason(&text).contains('\n'));
        }
    }
}
