//! The checks every signed JWT this project accepts gets before a key is looked at (RFC 7515, RFC 7519,
//! RFC 8725 and draft-ietf-oauth-rfc8725bis): ID and logout tokens at the gateway, access tokens at userinfo and
//! at the API-side verifier, `id_token_hint`, client assertions and DPoP proofs all call `check_compact` first.
//!
//! A JOSE library verifies the signature; what it lets through and this refuses:
//! - anything but the compact serialisation of a JWS: three non-empty base64url parts, no padding, no other
//!   alphabet (8725bis "JWT Format Confusion"; a JWE has five parts, JSON serialisation is not compact);
//! - a header or claims set that is not a UTF-8 JSON object, or has a member twice at any depth (RFC 7515 §5.2,
//!   RFC 8725 §2.6 parser differentials: two libraries would read two different values);
//! - a `crit` header: no JWS extension is understood here, so RFC 7515 §4.1.11 says reject; and `b64`
//!   (RFC 7797 unencoded payloads, which must be listed in `crit`);
//! - `exp`, `nbf` and `iat` that are not integer NumericDates in seconds (RFC 7519 §2): strings, fractions,
//!   negatives, and values past the year 9999, which are milliseconds (8725bis "Carefully Evaluate Received
//!   Claims").

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

use crate::b64;

/// Largest NumericDate accepted: 9999-12-31T23:59:59Z. Anything later is a date in milliseconds.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// Why a token was refused before any key was involved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("not a compact JWS (three non-empty base64url parts)")]
    NotCompact,
    #[error("the header or claims set is not a UTF-8 JSON object")]
    NotJsonObject,
    #[error("a JSON member appears twice")]
    DuplicateMember,
    #[error("a crit or b64 header asks for an extension that is not understood")]
    UnsupportedExtension,
    #[error("exp, nbf or iat is not a NumericDate in seconds")]
    NumericDate,
}

/// Checks a compact JWS as described in the module documentation. Says nothing about the signature.
pub fn check_compact(token: &str) -> Result<(), JoseError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::NotCompact);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() || b64::decode(signature).is_none() {
        return Err(JoseError::NotCompact);
    }
    let header = json_object(header)?;
    // RFC 7515 §4.1.11: an extension we would have to understand; RFC 7797 §6: `b64` only with `crit`.
    if header.contains_key("crit") || header.contains_key("b64") {
        return Err(JoseError::UnsupportedExtension);
    }
    let claims = json_object(payload)?;
    for name in ["exp", "nbf", "iat"] {
        if let Some(value) = claims.get(name)
            && !value.as_i64().is_some_and(|date| (0..=MAX_NUMERIC_DATE).contains(&date))
        {
            return Err(JoseError::NumericDate);
        }
    }
    Ok(())
}

/// Decodes one part into a JSON object, refusing duplicate members at any depth.
fn json_object(part: &str) -> Result<serde_json::Map<String, serde_json::Value>, JoseError> {
    let bytes = b64::decode(part).ok_or(JoseError::NotCompact)?;
    // serde_json refuses invalid UTF-8, a BOM and nesting deeper than 128 levels.
    serde_json::from_slice::<NoDuplicates>(&bytes).map_err(|e| {
        if e.to_string().starts_with(DUPLICATE) { JoseError::DuplicateMember } else { JoseError::NotJsonObject }
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(JoseError::NotJsonObject),
    }
}

const DUPLICATE: &str = "duplicate member";

/// Any JSON value, read only to find an object with a member name twice.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = std::collections::HashSet::new();
        // Names are compared after unescaping: `"alg"` and `"al\u0067"` are the same member.
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name) {
                return Err(A::Error::custom(DUPLICATE));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.{}", b64::encode(header), b64::encode(claims), b64::encode([7u8; 64]))
    }

    const HEADER: &str = r#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#;
    const CLAIMS: &str = r#"{"iss":"https://id.test","exp":1900000300,"iat":1900000000,"aud":["a","b"]}"#;

    #[test]
    fn a_well_formed_token_passes() {
        assert_eq!(check_compact(&token(HEADER, CLAIMS)), Ok(()));
        assert_eq!(check_compact(&token(HEADER, r#"{"sub":"x","nested":{"a":1,"b":[{"a":1}]}}"#)), Ok(()));
    }

    /// Catalogue JWT-11, JWT-12, DPOP-S03: only the compact serialisation of a JWS.
    #[test]
    fn jwt_11_12_other_shapes_are_not_compact() {
        let good = token(HEADER, CLAIMS);
        let (h, rest) = good.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        for bad in [
            String::new(),
            format!("{h}.{p}"),
            format!("{h}.{p}."),
            format!("{h}.{p}.{s}.{s}"),
            format!("{h}.{p}.{s}.{s}.{s}"),
            format!(".{p}.{s}"),
            format!("{h}..{s}"),
            format!("{h}=.{p}.{s}"),
            format!("{h}.{p}.{s}=="),
            format!("{}.{p}.{s}", h.replace('-', "+").replace('_', "/") + "+/"),
            format!("{HEADER}.{p}.{s}"),
            format!(r#"{{"protected":"{h}","payload":"{p}","signature":"{s}"}}"#),
        ] {
            assert_eq!(check_compact(&bad), Err(JoseError::NotCompact), "{bad}");
        }
    }

    /// Catalogue JWT-16 / DPOP-S18: a member twice, in the header, the claims, or nested; also when escaped.
    #[test]
    fn jwt_16_duplicate_members_are_refused() {
        for (header, claims) in [
            (r#"{"alg":"ES256","alg":"none"}"#, CLAIMS),
            (HEADER, r#"{"sub":"alice","sub":"admin"}"#),
            (HEADER, r#"{"cnf":{"jkt":"a","jkt":"b"}}"#),
            (HEADER, r#"{"list":[{"x":1,"x":2}]}"#),
            (r#"{"alg":"ES256","al\u0067":"none"}"#, CLAIMS),
        ] {
            assert_eq!(check_compact(&token(header, claims)), Err(JoseError::DuplicateMember), "{header} {claims}");
        }
    }

    /// Catalogue JWT-17: not UTF-8 JSON, or not an object.
    #[test]
    fn jwt_17_non_utf8_or_non_object_json_is_refused() {
        let utf16: Vec<u8> = HEADER.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(HEADER.as_bytes());
        let overlong = b"{\"alg\":\"ES256\",\"typ\":\"\xC0\xAFJWT\"}".to_vec();
        for header in [utf16, bom, overlong, b"[1,2]".to_vec(), b"\"alg\"".to_vec(), b"{".to_vec()] {
            let bad = format!("{}.{}.{}", b64::encode(&header), b64::encode(CLAIMS), b64::encode([7u8; 64]));
            assert_eq!(check_compact(&bad), Err(JoseError::NotJsonObject), "{header:?}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(check_compact(&token(HEADER, &format!(r#"{{"x":{deep}}}"#))), Err(JoseError::NotJsonObject));
    }

    /// Catalogue JWT-10 / DPOP-S19: `crit` (RFC 7515 §4.1.11) and `b64` (RFC 7797).
    #[test]
    fn jwt_10_crit_and_b64_are_refused() {
        for header in [
            r#"{"alg":"ES256","crit":["exp-x"],"exp-x":1}"#,
            r#"{"alg":"ES256","crit":[]}"#,
            r#"{"alg":"ES256","b64":false,"crit":["b64"]}"#,
            r#"{"alg":"ES256","b64":false}"#,
        ] {
            assert_eq!(check_compact(&token(header, CLAIMS)), Err(JoseError::UnsupportedExtension), "{header}");
        }
    }

    /// Catalogue JWT-20: NumericDates are integers in seconds.
    #[test]
    fn jwt_20_numeric_dates_are_integer_seconds() {
        for claims in [
            r#"{"exp":"1900000300"}"#,
            r#"{"exp":1900000300.5}"#,
            r#"{"nbf":-1}"#,
            r#"{"iat":1900000000000}"#,
            r#"{"exp":null}"#,
            r#"{"exp":1e30}"#,
        ] {
            assert_eq!(check_compact(&token(HEADER, claims)), Err(JoseError::NumericDate), "{claims}");
        }
        assert_eq!(check_compact(&token(HEADER, &format!(r#"{{"exp":{MAX_NUMERIC_DATE}}}"#))), Ok(()));
    }
}
