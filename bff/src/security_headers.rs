//! The security headers every gateway response carries unless the response already set its own (catalogue
//! §F7): local answers (`/bff/*`, static files, refusals) and proxied ones alike.
//!
//! - `X-Content-Type-Options: nosniff` on everything (BFF-HD03, ASVS 5.0 3.4.4);
//! - `Cross-Origin-Resource-Policy: same-origin` on everything (BFF-HD07, ASVS 5.0 3.5.8): the gateway's
//!   answers are for the application's own pages only;
//! - `Referrer-Policy: no-referrer` on everything (BFF-HD04, RFC 9700 §4.2.4: the callback URL carries a code);
//! - on HTML documents, `Cross-Origin-Opener-Policy: same-origin` (BFF-HD05, ASVS 5.0 3.4.8);
//! - `Strict-Transport-Security: max-age=31536000` only on answers sent over TLS (BFF-HD01; RFC 6797 §7.2: a
//!   host must not send it over plain HTTP, where browsers ignore it anyway). `includeSubDomains` is left out on
//!   purpose: the gateway does not know whether every subdomain of its host is served over HTTPS.

/// Two years would also do; one year is the ASVS 5.0 3.4.1 minimum and what preload lists require.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// The headers (lower-case name, value) to add to a response whose existing headers are answered by
/// `present(name)`, whose `Content-Type` is `content_type`, sent over TLS or not.
pub fn missing(
    present: impl Fn(&str) -> bool,
    content_type: Option<&str>,
    tls: bool,
) -> Vec<(&'static str, &'static str)> {
    let html = content_type.is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"));
    let mut wanted = vec![
        ("x-content-type-options", "nosniff"),
        ("cross-origin-resource-policy", "same-origin"),
        ("referrer-policy", "no-referrer"),
    ];
    if html {
        wanted.push(("cross-origin-opener-policy", "same-origin"));
    }
    if tls {
        wanted.push(("strict-transport-security", STRICT_TRANSPORT_SECURITY));
    }
    wanted.into_iter().filter(|(name, _)| !present(name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_over_http() {
        let added = missing(|_| false, Some("application/json"), false);
        assert_eq!(
            added,
            [
                ("x-content-type-options", "nosniff"),
                ("cross-origin-resource-policy", "same-origin"),
                ("referrer-policy", "no-referrer")
            ]
        );
    }

    #[test]
    fn html_over_tls() {
        let added = missing(|_| false, Some("text/html; charset=utf-8"), true);
        assert!(added.contains(&("cross-origin-opener-policy", "same-origin")));
        assert!(added.contains(&("strict-transport-security", STRICT_TRANSPORT_SECURITY)));
    }

    #[test]
    fn existing_headers_are_kept() {
        let added = missing(|name| name == "referrer-policy" || name == "x-content-type-options", None, false);
        assert_eq!(added, [("cross-origin-resource-policy", "same-origin")]);
    }
}
