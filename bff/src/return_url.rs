//! Validation of the `returnUrl` of `/bff/login` (and `/bff/logout`): the open-redirect defence of RFC 9700
//! §4.11.1 and ASVS 5.0 3.7.2, matching Duende BFF's `IReturnUrlValidator` ("return URLs are local").
//!
//! Only a *local path* is accepted: a path-absolute reference (RFC 3986 §4.2) that no browser can read as a
//! network-path (`//host`) or absolute URL, however it is decoded or normalised. The checks cover the payload set
//! of the security catalogue §Z.2 and BFF-RU01/BFF-RU03 (oauth2-proxy CVE-2020-5233 `/\`, GHSA-j7px-6hwj-hpjg
//! whitespace between slashes, GHSA-5m6c-jp6f-2vcv, bitly/oauth2_proxy #478 `//host`).
//!
//! The accepted value is returned exactly as given (query and fragment kept): the gateway redirects to it
//! relative to its own origin.

use percent_encoding::percent_decode;

/// Longest return URL accepted, bytes.
pub const MAX_LEN: usize = 2048;
/// Percent-decoding rounds applied while looking for hidden `//`, `\` or control characters (`%25252F`…);
/// anything still encoded after that is refused.
const MAX_DECODE_ROUNDS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReturnUrlError {
    #[error("returnUrl is longer than {MAX_LEN} bytes")]
    TooLong,
    /// Does not start with `/` (absolute URL, scheme, `\`, leading whitespace, relative path).
    #[error("returnUrl must be a local path starting with '/'")]
    NotLocal,
    /// `//` or `/\` (raw, encoded, or after removing whitespace): a network-path reference to another host.
    #[error("returnUrl must not name another host")]
    NetworkPath,
    #[error("returnUrl must not contain a backslash")]
    Backslash,
    #[error("returnUrl must not contain control characters or raw whitespace")]
    ControlCharacter,
    #[error("returnUrl must not contain dot segments")]
    DotSegment,
    #[error("returnUrl path must not contain '@'")]
    Authority,
    #[error("returnUrl is encoded too many times")]
    Encoding,
}

/// None or empty → "/". Accepts only a local path (see the module doc); returns it (with query and fragment) as
/// given.
pub fn validate(raw: Option<&str>) -> Result<String, ReturnUrlError> {
    let raw = match raw {
        None | Some("") => return Ok("/".to_owned()),
        Some(raw) => raw,
    };
    if raw.len() > MAX_LEN {
        return Err(ReturnUrlError::TooLong);
    }
    // Raw form. WHATWG URL parsing strips tab/CR/LF anywhere and C0/space at the ends, so `/\t/evil` would
    // become `//evil`: any raw control character or whitespace (including Unicode spaces) is refused.
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ReturnUrlError::ControlCharacter);
    }
    // RFC 3986 §4.2: a path-absolute reference starts with exactly one '/'.
    if !raw.starts_with('/') {
        return Err(ReturnUrlError::NotLocal);
    }

    // Decoded forms: every round of percent-decoding, so double-encoded payloads (`%252F`) are seen too.
    let mut current = raw.as_bytes().to_vec();
    for round in 0..=MAX_DECODE_ROUNDS {
        check_decoded(&current)?;
        let next: Vec<u8> = percent_decode(&current).collect();
        if next == current {
            return Ok(raw.to_owned());
        }
        if round == MAX_DECODE_ROUNDS {
            break;
        }
        current = next;
    }
    Err(ReturnUrlError::Encoding)
}

/// Checks one (raw or decoded) form of the return URL.
fn check_decoded(bytes: &[u8]) -> Result<(), ReturnUrlError> {
    let text = String::from_utf8_lossy(bytes);
    // %00-%1F and %7F (and C1 controls): header injection (`%0d%0a`), truncation (`%00`).
    if text.chars().any(char::is_control) {
        return Err(ReturnUrlError::ControlCharacter);
    }
    // Browsers treat '\' as '/' in special URLs (WHATWG URL §4.4 "special authority slashes"): `/\evil.com`.
    if text.contains('\\') {
        return Err(ReturnUrlError::Backslash);
    }
    let path = match text.find(['?', '#']) {
        Some(end) => &text[..end],
        None => &text[..],
    };
    // `//host`, `///host`, `/%2F%2Fhost`, and `/ /host` or `/%20/host` once whitespace is dropped by a lenient
    // parser; also `/https://host` (an empty segment is never needed in a return path).
    let squeezed: String = path.chars().filter(|c| !c.is_whitespace()).collect();
    if squeezed.contains("//") {
        return Err(ReturnUrlError::NetworkPath);
    }
    // RFC 3986 §5.2.4: removing dot segments can turn `/.//evil` into `//evil`; no return path needs them.
    if squeezed.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(ReturnUrlError::DotSegment);
    }
    // Userinfo (`user@host`) only exists in an authority; refused in the path so no reading can see one.
    if path.contains('@') {
        return Err(ReturnUrlError::Authority);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReturnUrlError::*;

    #[test]
    fn missing_or_empty_is_root() {
        assert_eq!(validate(None), Ok("/".to_owned()));
        assert_eq!(validate(Some("")), Ok("/".to_owned()));
    }

    #[test]
    fn local_paths_are_accepted_as_given() {
        for good in [
            "/",
            "/app",
            "/app/",
            "/app?x=1#y",
            "/a/b%20c",
            "/app?next=//evil.example",
            "/app?email=a@b.example",
            "/app#/route/x",
            "/caf%C3%A9",
            "/café",
            "/a-b_c~d.e/f.html",
            "/%25",
            // A path on our origin: U+3002 is only mapped to '.' inside a host name (UTS #46), and after the single
            // '/' no host can follow. (Catalogue BFF-RU03 lists it; here it is harmless, so it is accepted.)
            "/\u{3002}evil.example",
            "/%E3%80%82evil.com",
        ] {
            assert_eq!(validate(Some(good)), Ok(good.to_owned()), "{good:?}");
        }
    }

    #[test]
    fn catalogue_bff_ru01_ru03_open_redirect_payloads_are_refused() {
        // Brief's table and catalogue BFF-RU03.
        let refused: &[(&str, ReturnUrlError)] = &[
            ("http://evil.com", NotLocal),
            ("https://evil.com/", NotLocal),
            ("//evil.com", NetworkPath),
            ("///evil.com", NetworkPath),
            ("/\\evil.com", Backslash),
            ("\\\\evil.com", NotLocal),
            ("/%2F/evil.com", NetworkPath),
            ("%2F%2Fevil.com", NotLocal),
            ("/%5Cevil.com", Backslash),
            ("/%5cevil.com", Backslash),
            ("javascript:alert(1)", NotLocal),
            (" /x", ControlCharacter),
            ("/x\r\nSet-Cookie:a", ControlCharacter),
            ("/%0d%0aX", ControlCharacter),
            ("/%00", ControlCharacter),
            ("https:evil.com", NotLocal),
            // Dot segments: `/.//evil` normalises (RFC 3986 §5.2.4) to the network path `//evil`.
            ("/.//evil", NetworkPath),
            ("/./evil", DotSegment),
            ("/a/../../evil", DotSegment),
            ("/%2e%2e/evil", DotSegment),
            ("/\t/evil.com", ControlCharacter),
            ("/%09/evil.com", ControlCharacter),
            ("/./\\evil.com", Backslash),
            ("/%2F%2Fevil.com", NetworkPath),
            ("\\/\\/evil.com", NotLocal),
            ("//evil%00.com", NetworkPath),
            ("/evil%00.com", ControlCharacter),
            // Double and triple encoding.
            ("/%252F%252Fevil.com", NetworkPath),
            ("/%25252F%25252Fevil.com", NetworkPath),
            ("/%255Cevil.com", Backslash),
            ("/%250d%250aX", ControlCharacter),
            ("/%2525252525252F", Encoding),
            // Authority tricks.
            ("/@evil.com", Authority),
            ("/x@evil.com/", Authority),
            ("/%40evil.com", Authority),
            // Raw whitespace, Unicode whitespace and controls.
            ("/x ", ControlCharacter),
            ("/\u{a0}/evil.com", ControlCharacter),
            ("/\u{2028}x", ControlCharacter),
            ("/\u{85}x", ControlCharacter),
            ("/%C2%85/evil.com", ControlCharacter),
            ("/%7F", ControlCharacter),
            ("/%1F", ControlCharacter),
            ("/%20/evil.com", NetworkPath),
        ];
        for (payload, expected) in refused {
            assert_eq!(validate(Some(payload)), Err(*expected), "{payload:?}");
        }
    }

    include!("../tests/support/z2_payloads.rs");

    /// Catalogue §Z.2, every entry raw and percent-encoded (`\t`, `\n`, `\r`, `\v` stand for the raw controls).
    #[test]
    fn catalogue_z2_payload_set_is_refused_raw_and_encoded() {
        for payload in Z2_PAYLOADS {
            assert!(validate(Some(payload)).is_err(), "raw {payload:?}");
            let encoded: String =
                percent_encoding::utf8_percent_encode(payload, percent_encoding::NON_ALPHANUMERIC).to_string();
            assert!(validate(Some(&encoded)).is_err(), "encoded {encoded:?}");
            // Everything after the leading '/' encoded, so only the decoded form shows the payload.
            let Some(tail) = payload.strip_prefix('/') else { continue };
            let encoded_tail =
                format!("/{}", percent_encoding::utf8_percent_encode(tail, percent_encoding::NON_ALPHANUMERIC));
            assert!(validate(Some(&encoded_tail)).is_err(), "encoded tail {encoded_tail:?}");
        }
    }

    #[test]
    fn length_limit() {
        let longest = format!("/{}", "a".repeat(MAX_LEN - 1));
        assert_eq!(validate(Some(&longest)), Ok(longest.clone()));
        let too_long = format!("/{}", "a".repeat(MAX_LEN));
        assert_eq!(validate(Some(&too_long)), Err(TooLong));
    }
}
