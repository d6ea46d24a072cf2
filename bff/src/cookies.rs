//! Reading `Cookie` request headers and building `Set-Cookie` response headers (RFC 6265 §4.1, §5.4), with the
//! `cookie` crate; no hand-written cookie parsing.
//!
//! Every cookie the gateway sets is a `__Host-` style cookie (RFC 6265bis §4.1.3.2): `Secure`, `Path=/`, no
//! `Domain`, plus `HttpOnly` so page scripts never read it (catalogue: session cookie attributes).

use cookie::time::{Duration, OffsetDateTime};
use cookie::{Cookie, SameSite as CookieSameSite};

use crate::settings::SameSite;

/// The cookies of a request's `Cookie` headers, as `parse` reads them.
pub fn from_headers(headers: &http::HeaderMap) -> Vec<(String, String)> {
    let values: Vec<&str> = headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    parse(&values)
}

/// All (name, value) pairs from one or more `Cookie` request header values (split on `;`, tolerant of junk: skip
/// unparsable pairs). Values are returned as sent (not percent-decoded); order and duplicates are kept.
pub fn parse(header_values: &[&str]) -> Vec<(String, String)> {
    header_values
        .iter()
        .flat_map(|header| Cookie::split_parse(*header))
        .filter_map(Result::ok)
        .map(|cookie| (cookie.name().to_owned(), cookie.value().to_owned()))
        .collect()
}

/// Set-Cookie for a `__Host-` style cookie: Secure, HttpOnly, Path=/, no Domain, SameSite as given, Max-Age when
/// Some (seconds). Without Max-Age it is a browser-session cookie.
pub fn set(name: &str, value: &str, same_site: SameSite, max_age: Option<i64>) -> String {
    let same_site = match same_site {
        SameSite::Strict => CookieSameSite::Strict,
        SameSite::Lax => CookieSameSite::Lax,
    };
    let mut cookie = host_cookie(name, value, same_site);
    if let Some(seconds) = max_age {
        cookie.set_max_age(Duration::seconds(seconds));
    }
    cookie.to_string()
}

/// Set-Cookie that deletes `name` (empty value, Max-Age=0 and an Expires in the past for old browsers, same
/// attributes so the browser matches it: RFC 6265 §5.3 step 11 matches on name, domain and path).
pub fn clear(name: &str) -> String {
    let mut cookie = host_cookie(name, "", CookieSameSite::Lax);
    cookie.set_max_age(Duration::ZERO);
    cookie.set_expires(OffsetDateTime::UNIX_EPOCH);
    cookie.to_string()
}

/// RFC 6265bis §4.1.3.2: the `__Host-` prefix requires Secure, Path=/ and no Domain.
fn host_cookie<'c>(name: &'c str, value: &'c str, same_site: CookieSameSite) -> Cookie<'c> {
    Cookie::build((name, value)).secure(true).http_only(true).path("/").same_site(same_site).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(set_cookie: &str) -> Vec<String> {
        set_cookie.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect()
    }

    #[test]
    fn parse_several_headers_and_pairs() {
        let pairs = parse(&["a=1; b=2", "__Host-gatehouse=k1.abc_-; c="]);
        let expected = [("a", "1"), ("b", "2"), ("__Host-gatehouse", "k1.abc_-"), ("c", "")];
        assert_eq!(pairs, expected.map(|(n, v)| (n.to_owned(), v.to_owned())));
    }

    #[test]
    fn parse_skips_junk() {
        let pairs = parse(&["junk; =novalue; a=1;; ;b=2=3 ; \u{0}", "", ";;;", "no-equals"]);
        let expected = [("a", "1"), ("b", "2=3")];
        assert_eq!(pairs, expected.map(|(n, v)| (n.to_owned(), v.to_owned())));
    }

    #[test]
    fn parse_keeps_duplicates_and_raw_values() {
        let pairs = parse(&["a=1; a=2; b=%20x"]);
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0], ("a".to_owned(), "1".to_owned()));
        assert_eq!(pairs[1], ("a".to_owned(), "2".to_owned()));
        assert_eq!(pairs[2], ("b".to_owned(), "%20x".to_owned()));
    }

    #[test]
    fn parse_huge_header_does_not_panic() {
        let header = "x=y;".repeat(10_000);
        assert_eq!(parse(&[&header]).len(), 10_000);
    }

    #[test]
    fn set_has_host_prefix_attributes() {
        let header = set("__Host-gatehouse", "k1.v", SameSite::Strict, None);
        assert!(header.starts_with("__Host-gatehouse=k1.v;"), "{header}");
        let attrs = attributes(&header);
        for expected in ["secure", "httponly", "path=/", "samesite=strict"] {
            assert!(attrs.contains(&expected.to_owned()), "{expected} missing in {header}");
        }
        assert!(!attrs.iter().any(|a| a.starts_with("domain")), "{header}");
        assert!(!attrs.iter().any(|a| a.starts_with("max-age") || a.starts_with("expires")), "{header}");
    }

    #[test]
    fn set_lax_with_max_age() {
        let header = set("__Host-gatehouse-tx-x", "v", SameSite::Lax, Some(600));
        let attrs = attributes(&header);
        assert!(attrs.contains(&"samesite=lax".to_owned()), "{header}");
        assert!(attrs.contains(&"max-age=600".to_owned()), "{header}");
        assert!(attrs.contains(&"secure".to_owned()) && attrs.contains(&"httponly".to_owned()), "{header}");
    }

    #[test]
    fn set_round_trips_through_parse() {
        let header = set("__Host-gatehouse", "k1.abc", SameSite::Strict, Some(10));
        let parsed = Cookie::parse(header.as_str()).unwrap();
        assert_eq!(parsed.name_value(), ("__Host-gatehouse", "k1.abc"));
        assert_eq!(parsed.secure(), Some(true));
        assert_eq!(parsed.http_only(), Some(true));
        assert_eq!(parsed.path(), Some("/"));
        assert_eq!(parsed.domain(), None);
        assert_eq!(parsed.max_age(), Some(Duration::seconds(10)));
    }

    #[test]
    fn clear_deletes_with_matching_attributes() {
        let header = clear("__Host-gatehouse");
        let parsed = Cookie::parse(header.as_str()).unwrap();
        assert_eq!(parsed.name_value(), ("__Host-gatehouse", ""));
        assert_eq!(parsed.max_age(), Some(Duration::ZERO));
        assert_eq!(parsed.expires_datetime(), Some(OffsetDateTime::UNIX_EPOCH));
        assert_eq!(parsed.secure(), Some(true));
        assert_eq!(parsed.http_only(), Some(true));
        assert_eq!(parsed.path(), Some("/"));
        assert_eq!(parsed.domain(), None);
    }
}
