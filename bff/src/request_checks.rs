//! Refusals decided from a request's head alone, before any session lookup or forwarding: methods a gateway
//! never serves, ambiguous message framing (request smuggling), request paths that could leave a route's
//! prefix once an upstream normalises them, oversized `Cookie` headers, and cross-site requests to API routes
//! (Fetch Metadata and `Origin`).
//!
//! Each check is a plain function returning `Some(refusal)` or `None`; `proxy` calls them in order. Catalogue
//! rows: BFF-PX01 (paths), BFF-PX06 (methods), BFF-PX09 (framing), BFF-CSRF05/06/07 (cross-site), CRYPT-22
//! (cookie bombs).

use http::HeaderMap;
use percent_encoding::percent_decode;

use crate::response::LocalResponse;

/// Total bytes of all `Cookie` header values accepted. Browsers keep at most ~180 cookies of 4096 bytes per
/// site, but this gateway sets at most four (session + three pending logins, each well under 1 KiB); 16 KiB
/// leaves room for the application's own cookies and bounds what a cookie bomb makes the gateway parse.
pub const MAX_COOKIE_BYTES: usize = 16 * 1024;
/// Percent-decoding rounds applied to a path while looking for hidden dot segments or separators.
const MAX_DECODE_ROUNDS: usize = 3;

/// BFF-PX06, RFC 9110 §9.3.8: `TRACE` reflects the request (credentials included) back; `CONNECT` would turn the
/// gateway into a tunnel; `TRACK` is IIS's `TRACE`. None is ever served or forwarded.
pub fn method_refusal(method: &http::Method) -> Option<LocalResponse> {
    let refused = matches!(method.as_str(), "TRACE" | "TRACK" | "CONNECT");
    refused.then(|| {
        LocalResponse::error(405, "method_not_allowed", "this method is not served")
            .header("allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
    })
}

/// BFF-PX09, RFC 9112 §6.3: a request whose body length two parsers could read differently is refused rather
/// than forwarded — `Content-Length` together with `Transfer-Encoding` (step 3: "ought to be handled as an
/// error"), several or non-numeric `Content-Length` values (step 5), or a transfer coding other than exactly
/// `chunked` (step 4: a final coding that is not chunked makes the length unknowable).
pub fn framing_refusal(headers: &HeaderMap) -> Option<LocalResponse> {
    let refuse = || Some(LocalResponse::error(400, "bad_request", "the request's message framing is ambiguous"));
    let lengths: Vec<&[u8]> = headers.get_all(http::header::CONTENT_LENGTH).iter().map(|v| v.as_bytes()).collect();
    let codings: Vec<&[u8]> = headers.get_all(http::header::TRANSFER_ENCODING).iter().map(|v| v.as_bytes()).collect();
    if !lengths.is_empty() && !codings.is_empty() {
        return refuse();
    }
    if lengths.len() > 1 || lengths.iter().any(|v| v.is_empty() || !v.iter().all(u8::is_ascii_digit)) {
        return refuse();
    }
    if codings.len() > 1 || codings.iter().any(|v| !v.eq_ignore_ascii_case(b"chunked")) {
        return refuse();
    }
    None
}

/// BFF-PX01: a path is forwarded only when every form of it — as sent and after each round of percent-decoding —
/// has no dot segment (`.`, `..`), no empty segment (`//`), no backslash, no control character and no encoded
/// `/`. An upstream (or a framework in front of it) that normalises such a path could serve something outside the
/// route's prefix, or a path the route table never saw.
pub fn path_refusal(path: &str) -> Option<LocalResponse> {
    let refuse = || Some(LocalResponse::error(400, "bad_request", "the request path is not in canonical form"));
    if !path.starts_with('/') {
        return refuse();
    }
    let mut current = path.as_bytes().to_vec();
    for round in 0..=MAX_DECODE_ROUNDS {
        if !canonical(&current) {
            return refuse();
        }
        let next: Vec<u8> = percent_decode(&current).collect();
        if next == current {
            return None;
        }
        // An encoded '/' becomes a separator the route table did not see.
        let slashes = |bytes: &[u8]| bytes.iter().filter(|b| **b == b'/').count();
        if slashes(&next) != slashes(&current) || round == MAX_DECODE_ROUNDS {
            return refuse();
        }
        current = next;
    }
    refuse()
}

fn canonical(path: &[u8]) -> bool {
    if path.iter().any(|b| *b == b'\\' || b.is_ascii_control()) {
        return false;
    }
    // The first segment is the empty one before the leading '/'; `/` alone has one empty segment after it.
    let segments: Vec<&[u8]> = path.split(|b| *b == b'/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    segments.iter().enumerate().all(|(i, segment)| match *segment {
        b"." | b".." => false,
        b"" => i == last,
        _ => true,
    })
}

/// CRYPT-22: `Cookie` headers larger than `MAX_COOKIE_BYTES` in total are refused before anything parses them.
pub fn cookie_refusal(headers: &HeaderMap) -> Option<LocalResponse> {
    let total: usize = headers.get_all(http::header::COOKIE).iter().map(|v| v.len()).sum();
    (total > MAX_COOKIE_BYTES)
        .then(|| LocalResponse::error(431, "request_header_fields_too_large", "the Cookie header is too large"))
}

/// BFF-CSRF05/06/07, ASVS 5.0 3.5.3 and 3.2.1: requests to API routes (and `/bff/user`) must come from the
/// application's own pages. Refused with 403:
/// - `Sec-Fetch-Site` other than `same-origin` or `none` (a sibling subdomain is `same-site`, not same-origin);
/// - an `Origin` header that is not the gateway's public origin (`null` included);
/// - a navigation (`Sec-Fetch-Mode: navigate`) or a document destination (`Sec-Fetch-Dest: document`, `iframe`,
///   `frame`, `embed`, `object`): an API answer is never rendered as a page.
///
/// Requests without Fetch Metadata or `Origin` (older browsers, non-browser clients) pass here; the `X-CSRF: 1`
/// header check still applies to them.
pub fn cross_site_refusal(headers: &HeaderMap, public_origin: &str) -> Option<LocalResponse> {
    let value = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}").trim().to_ascii_lowercase());
    let refuse = |why: &str| Some(LocalResponse::error(403, "forbidden", why));
    if let Some(site) = value("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return refuse("cross-site requests are not allowed on this route");
    }
    for origin in headers.get_all(http::header::ORIGIN) {
        if origin.as_bytes() != public_origin.as_bytes() {
            return refuse("requests from another origin are not allowed on this route");
        }
    }
    if value("sec-fetch-mode").as_deref() == Some("navigate")
        || value("sec-fetch-dest")
            .is_some_and(|d| matches!(d.as_str(), "document" | "iframe" | "frame" | "embed" | "object"))
    {
        return refuse("this route is an API and cannot be opened as a page");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn methods() {
        for refused in ["TRACE", "TRACK", "CONNECT"] {
            let method = http::Method::from_bytes(refused.as_bytes()).unwrap();
            assert_eq!(method_refusal(&method).unwrap().status, 405, "{refused}");
        }
        for allowed in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            assert!(method_refusal(&http::Method::from_bytes(allowed.as_bytes()).unwrap()).is_none(), "{allowed}");
        }
    }

    #[test]
    fn catalogue_bff_px09_framing() {
        let refused: &[&[(&str, &str)]] = &[
            &[("content-length", "5"), ("transfer-encoding", "chunked")],
            &[("content-length", "5"), ("content-length", "6")],
            &[("content-length", "5"), ("content-length", "5")],
            &[("content-length", "5, 5")],
            &[("content-length", "-1")],
            &[("content-length", "")],
            &[("transfer-encoding", "chunked, identity")],
            &[("transfer-encoding", "identity")],
            &[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")],
            &[("transfer-encoding", "gzip, chunked")],
        ];
        for case in refused {
            assert_eq!(framing_refusal(&headers(case)).map(|r| r.status), Some(400), "{case:?}");
        }
        for case in [&[][..], &[("content-length", "0")], &[("transfer-encoding", "Chunked")]] {
            assert!(framing_refusal(&headers(case)).is_none(), "{case:?}");
        }
    }

    #[test]
    fn catalogue_bff_px01_paths() {
        for bad in [
            "/api/../admin",
            "/api/./x",
            "/api/..",
            "/api/%2e%2e/admin",
            "/api/%2E%2E/admin",
            "/api/%252e%252e/admin",
            "/api/%25252e%25252e/admin",
            "/api//evil.example/",
            "//evil.example/",
            "/api/%2fevil",
            "/api/%2F%2Fevil",
            "/api/%5c..%5cadmin",
            "/api\\..\\admin",
            "/api/%00",
            "/api/x%0d%0a",
            "api/x",
            "",
        ] {
            assert_eq!(path_refusal(bad).map(|r| r.status), Some(400), "{bad}");
        }
        for good in [
            "/",
            "/api",
            "/api/",
            "/api/x",
            "/api/x/",
            "/api/@evil.example",
            "/api/a.b/.c/..d",
            "/api/100%25",
            "/api/%20x",
        ] {
            assert!(path_refusal(good).is_none(), "{good}");
        }
    }

    #[test]
    fn catalogue_crypt_22_cookie_size() {
        assert!(cookie_refusal(&headers(&[("cookie", &"a".repeat(MAX_COOKIE_BYTES))])).is_none());
        let big = headers(&[
            ("cookie", &"a".repeat(MAX_COOKIE_BYTES / 2)),
            ("cookie", &"b".repeat(MAX_COOKIE_BYTES / 2 + 1)),
        ]);
        assert_eq!(cookie_refusal(&big).unwrap().status, 431);
    }

    #[test]
    fn catalogue_bff_csrf05_06_cross_site() {
        let origin = "https://app.example";
        let refused: &[&[(&str, &str)]] = &[
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site")],
            &[("sec-fetch-site", "Cross-Site")],
            &[("origin", "null")],
            &[("origin", "https://evil.example")],
            &[("origin", "https://other.app.example")],
            &[("origin", "http://app.example")],
            &[("origin", "https://app.example:443")],
            &[("origin", "https://app.example"), ("origin", "https://evil.example")],
            &[("sec-fetch-mode", "navigate")],
            &[("sec-fetch-dest", "document")],
            &[("sec-fetch-dest", "iframe")],
            &[("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document")],
        ];
        for case in refused {
            assert_eq!(cross_site_refusal(&headers(case), origin).map(|r| r.status), Some(403), "{case:?}");
        }
        let allowed: &[&[(&str, &str)]] = &[
            &[],
            &[("origin", origin)],
            &[("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "cors"), ("sec-fetch-dest", "empty")],
            &[("sec-fetch-site", "none"), ("sec-fetch-mode", "cors")],
        ];
        for case in allowed {
            assert!(cross_site_refusal(&headers(case), origin).is_none(), "{case:?}");
        }
    }
}
